//! Node labels checked as Kubernetes checks them, before anything starts.
//!
//! k3s hands `--node-label` values to the kubelet, which refuses to register a node with an
//! invalid label; the k3s log then shows a kubelet error long after the tunnel came up. The
//! rules (k8s.io/apimachinery `IsQualifiedName`, `IsValidLabelValue`, kubelet's
//! `--node-labels` restriction):
//! - a label is `KEY=VALUE`;
//! - KEY is `[PREFIX/]NAME`: NAME 1–63 characters of `[A-Za-z0-9._-]`, starting and ending
//!   with a letter or digit; PREFIX a DNS subdomain (lowercase, ≤ 253 characters);
//! - VALUE is empty or 1–63 characters with NAME's rules;
//! - the kubelet may only set `kubernetes.io`/`k8s.io` labels from a short allowed list.

use std::fmt;

const MAX_NAME: usize = 63;
const MAX_PREFIX: usize = 253;

/// Labels under `kubernetes.io`/`k8s.io` that the kubelet is allowed to set on its own node.
const KUBELET_ALLOWED: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
/// Label prefixes (and their subdomains) the kubelet may use freely.
const KUBELET_ALLOWED_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// A label that Kubernetes would refuse, with every reason and a way out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LabelError {
    /// The label as given (`KEY=VALUE`).
    pub label: String,
    /// Where it came from: `--node-label`, `extra k3s arguments`, or a config file path.
    pub source_name: String,
    pub problems: Vec<String>,
    /// A corrected label, when one can be derived.
    pub suggestion: Option<String>,
    /// Free text in the value: suggest an annotation.
    pub suggest_annotation: bool,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "node label {:?} (from {}) is not a valid Kubernetes label:",
            self.label, self.source_name
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        write!(
            f,
            "  Kubernetes label keys and values are short identifiers used to select nodes: at most \
             63 characters of letters, digits, '-', '_' and '.', beginning and ending with a letter \
             or digit (k3s would also split the value at every ',')."
        )?;
        if self.suggest_annotation {
            let (key, value) = self.label.split_once('=').unwrap_or((&self.label, ""));
            write!(
                f,
                "\n  Free text such as an address belongs in an annotation, which has no such limits; \
                 after the node has joined: kubectl annotate node NODE {key}='{value}'"
            )?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, "\n  Or use a valid label instead: --node-label {s}")?;
        }
        Ok(())
    }
}

/// Checks one `KEY=VALUE` label; `source_name` says where it was written, for the error.
pub fn validate(label: &str, source_name: &str) -> Result<(), LabelError> {
    let mut problems = Vec::new();
    let (key, value) = match label.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => {
            problems.push("there is no '=': a label is KEY=VALUE".to_string());
            (label, None)
        }
    };
    key_problems(key, &mut problems);
    let mut free_text = false;
    if let Some(v) = value {
        free_text = v.contains(' ') || v.contains(',');
        name_problems("value", v, true, &mut problems);
    }
    if problems.is_empty() {
        return Ok(());
    }
    let suggestion = suggest(key, value.unwrap_or(""));
    Err(LabelError {
        label: label.to_string(),
        source_name: source_name.to_string(),
        problems,
        suggestion: suggestion.filter(|s| s != label),
        suggest_annotation: free_text,
    })
}

fn key_problems(key: &str, problems: &mut Vec<String>) {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > MAX_PREFIX || !is_dns_subdomain(p) {
            problems.push(format!(
                "the key prefix {p:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.', \
                 at most {MAX_PREFIX} characters)"
            ));
        } else if (p == "kubernetes.io"
            || p.ends_with(".kubernetes.io")
            || p == "k8s.io"
            || p.ends_with(".k8s.io"))
            && !KUBELET_ALLOWED.contains(&key)
            && !KUBELET_ALLOWED_NAMESPACES
                .iter()
                .any(|ns| p == *ns || p.ends_with(&format!(".{ns}")))
        {
            problems.push(format!(
                "the kubelet may not set labels in the {p:?} namespace on its own node (allowed: \
                 kubelet.kubernetes.io/*, node.kubernetes.io/*, topology.kubernetes.io/zone|region, …)"
            ));
        }
    }
    name_problems("key", name, false, problems);
}

fn name_problems(what: &str, s: &str, may_be_empty: bool, problems: &mut Vec<String>) {
    if s.is_empty() {
        if !may_be_empty {
            problems.push(format!("the {what} is empty"));
        }
        return;
    }
    let len = s.chars().count();
    if len > MAX_NAME {
        problems.push(format!(
            "the {what} {s:?} is {len} characters long, at most {MAX_NAME} are allowed"
        ));
    }
    let mut bad: Vec<char> = s.chars().filter(|c| !is_name_char(*c)).collect();
    bad.sort_unstable();
    bad.dedup();
    if !bad.is_empty() {
        let list: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
        problems.push(format!(
            "the {what} contains {}, which {} not allowed",
            list.join(", "),
            if bad.len() == 1 { "is" } else { "are" }
        ));
    }
    let first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let last = s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first || !last {
        problems.push(format!(
            "the {what} must begin and end with a letter or digit"
        ));
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|part| {
        !part.is_empty()
            && part.len() <= 63
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    })
}

/// A valid label close to `key=value`: runs of disallowed characters become one '-', the
/// result is cut to 63 characters and trimmed to begin and end with a letter or digit.
fn suggest(key: &str, value: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name = sanitize(name)?;
    let key = match prefix {
        Some(p) if is_dns_subdomain(p) => format!("{p}/{name}"),
        _ => name,
    };
    let value = sanitize(value).unwrap_or_default();
    let candidate = format!("{key}={value}");
    let mut probe = Vec::new();
    key_problems(&key, &mut probe);
    name_problems("value", &value, true, &mut probe);
    probe.is_empty().then_some(candidate)
}

fn sanitize(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        if is_name_char(c) {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut cut: String = out.chars().take(MAX_NAME).collect();
    // Cut at a word boundary rather than in the middle of one.
    if out.chars().count() > MAX_NAME && out.chars().nth(MAX_NAME) != Some('-') {
        if let Some(i) = cut.rfind('-') {
            cut.truncate(i);
        }
    }
    let trimmed = cut.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str =
        "location=International Widgets, Inc., 5601 Speedway Blvd, Tucson, AZ, USA, 85710";

    #[test]
    fn valid_labels_pass() {
        for l in [
            "service=charger",
            "site=tucson-01",
            "example.com/site=a.b_c-d",
            "empty=",
            "node.kubernetes.io/role=gateway",
            "topology.kubernetes.io/zone=us-west",
            &format!("k={}", "a".repeat(63)),
        ] {
            assert_eq!(validate(l, "test"), Ok(()), "{l}");
        }
    }

    #[test]
    fn guide_location_label_is_refused_with_reasons_and_a_way_out() {
        let err = validate(GUIDE, "--node-label").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is 71 characters long, at most 63"), "{text}");
        assert!(text.contains("' '") && text.contains("','"), "{text}");
        assert!(text.contains("annotation"), "{text}");
        assert!(
            text.contains("kubectl annotate node NODE location='International Widgets, Inc.,"),
            "{text}"
        );
        let s = err.suggestion.clone().unwrap_or_default();
        assert_eq!(
            s,
            "location=International-Widgets-Inc.-5601-Speedway-Blvd-Tucson-AZ-USA"
        );
        assert_eq!(validate(&s, "suggestion"), Ok(()));
    }

    #[test]
    fn guide_service_label_gets_a_suggestion() {
        let err = validate("service=electric car charger controller", "x").unwrap_err();
        assert_eq!(
            err.suggestion.as_deref(),
            Some("service=electric-car-charger-controller")
        );
    }

    #[test]
    fn broken_keys() {
        assert!(validate("novalue", "x")
            .unwrap_err()
            .to_string()
            .contains("no '='"));
        assert!(validate("=v", "x")
            .unwrap_err()
            .to_string()
            .contains("key is empty"));
        assert!(validate("-bad=v", "x")
            .unwrap_err()
            .to_string()
            .contains("begin and end"));
        assert!(validate("Example.COM/x=v", "x")
            .unwrap_err()
            .to_string()
            .contains("DNS subdomain"));
        let e = validate("kubernetes.io/role=master", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kubelet may not set"), "{e}");
        assert!(validate(&format!("k={}", "a".repeat(64)), "x").is_err());
    }
}
