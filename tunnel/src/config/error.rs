//! Configuration errors: `FILE:LINE: problem`, never containing key material.

use std::fmt;
use std::path::PathBuf;

/// The two kinds of section in a wg-quick file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Interface,
    Peer,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Interface => "[Interface]",
            Section::Peer => "[Peer]",
        })
    }
}

/// A configuration file was rejected. Displays as `FILE:LINE: problem`, or `FILE: problem`
/// for whole-file problems (`line == 0`).
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", location(file, *line))]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line number; 0 when the problem is not on one line.
    pub line: usize,
    pub kind: ConfigErrorKind,
}

fn location(file: &std::path::Path, line: usize) -> String {
    if line == 0 {
        file.display().to_string()
    } else {
        format!("{}:{line}", file.display())
    }
}

/// What is wrong. Values are quoted only when they cannot be keys (see [`shown`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigErrorKind {
    #[error("cannot read the file: {0}")]
    Io(#[source] std::io::Error),
    #[error("the file is {0} bytes; configuration files are limited to 1 MiB")]
    TooLarge(u64),
    #[error("the line is not valid UTF-8")]
    NotUtf8,
    #[error("expected `Key = Value`, a [Section] header, a comment or a blank line")]
    NotKeyValue,
    #[error("`{0}` appears before any [Interface] or [Peer] section")]
    OutsideSection(String),
    #[error("unknown section `{0}` (expected [Interface] or [Peer])")]
    UnknownSection(String),
    #[error(
        "a second [Interface] section (the first is at line {first_line}); a file has exactly one"
    )]
    SecondInterface { first_line: usize },
    #[error("unknown key `{key}` in {section}")]
    UnknownKey { key: String, section: Section },
    #[error("`{key}` belongs in {belongs}, not in {section}")]
    WrongSection {
        key: &'static str,
        section: Section,
        belongs: Section,
    },
    #[error("`{0}` has an empty entry in its comma-separated list")]
    EmptyListEntry(&'static str),
    #[error(
        "`{key}` is given twice in this section (first at line {first_line}); only one is allowed"
    )]
    DuplicateKey {
        key: &'static str,
        first_line: usize,
    },
    #[error("`{0}` has no value")]
    EmptyValue(&'static str),
    #[error("{key} is not a valid key: {reason}")]
    BadKey {
        key: &'static str,
        reason: crate::key::KeyError,
    },
    #[error("{key}: `{value}` is not a valid IP prefix: {reason}")]
    BadCidr {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{key}: `{value}` is not a valid port (expected {range})")]
    BadPort {
        key: &'static str,
        value: String,
        range: &'static str,
    },
    #[error("Endpoint: `{value}` is invalid: {reason}")]
    BadEndpoint { value: String, reason: String },
    #[error("MTU: `{value}` is invalid: {reason}")]
    BadMtu { value: String, reason: String },
    #[error("{key}: `{value}` is invalid (expected {expected})")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("duplicate [Peer]: the [Peer] at line {first_line} already has this PublicKey (line {first_key_line})")]
    DuplicatePeer {
        first_line: usize,
        first_key_line: usize,
    },
    #[error("there is no [Interface] section")]
    MissingInterface,
    #[error("the [Interface] section at line {interface_line} has no PrivateKey")]
    MissingPrivateKey { interface_line: usize },
    #[error("this [Peer] has no PublicKey")]
    MissingPublicKey,
}

/// A value as it may appear in an error message: cut to a readable length, and hidden if
/// any word of it looks like a base64 key (so a key pasted into the wrong line never lands
/// in a log).
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let looks_like_key = value
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == '[' || c == ']')
        .any(|w| {
            (40..=48).contains(&w.len())
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        });
    if looks_like_key {
        return "<hidden: looks like a key>".to_owned();
    }
    if value.chars().count() > MAX {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_line() {
        let e = ConfigError {
            file: "/etc/wireguard/wg0.conf".into(),
            line: 7,
            kind: ConfigErrorKind::NotKeyValue,
        };
        assert!(e
            .to_string()
            .starts_with("/etc/wireguard/wg0.conf:7: expected"));
        let e = ConfigError {
            file: "wg0.conf".into(),
            line: 0,
            kind: ConfigErrorKind::MissingPrivateKey { interface_line: 3 },
        };
        assert_eq!(
            e.to_string(),
            "wg0.conf: the [Interface] section at line 3 has no PrivateKey"
        );
    }

    #[test]
    fn shown_hides_keys_and_cuts() {
        assert_eq!(shown("10.0.0.0/33"), "10.0.0.0/33");
        assert_eq!(
            shown("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="),
            "<hidden: looks like a key>"
        );
        assert_eq!(
            shown("x yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk"),
            "<hidden: looks like a key>"
        );
        assert_eq!(shown(&"a.".repeat(100)).chars().count(), 65);
    }
}
