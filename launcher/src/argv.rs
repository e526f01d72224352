//! The k3s command line and environment, and the checks that keep it consistent with what
//! the user wrote elsewhere (extra arguments, k3s's config.yaml).
//!
//! edgewire sets, from the tunnel:
//! - server: `--node-ip A --advertise-address A --tls-san A --flannel-iface IFACE`;
//! - agent: `--node-ip A --flannel-iface IFACE`, `K3S_URL` and `K3S_TOKEN_FILE` in the
//!   environment (the token itself is never on the command line, where `ps` shows it).
//!
//! When the user's extra arguments or config.yaml set one of these to the same value,
//! edgewire leaves its own copy out; to a different value, it stops with an error naming
//! the place, because k3s would otherwise quietly merge or override them.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::k3s_config::{canonical_flag, K3sFileConfig};
use crate::labels::{self, LabelError};

/// Environment variables that belong to edgewire's own service manager contract and must not
/// leak into k3s (it gets its own `NOTIFY_SOCKET` from the supervisor).
pub const ENV_REMOVE: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Flags whose value is looked at in the extra arguments (after alias → long name).
const SCANNED: &[&str] = &[
    "node-ip",
    "advertise-address",
    "flannel-iface",
    "tls-san",
    "node-external-ip",
    "node-label",
    "token",
    "token-file",
    "agent-token",
    "server",
    "config",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Server,
    /// `url` is normalized (`https://HOST:PORT`).
    Agent {
        url: String,
        token_file: PathBuf,
    },
}

impl Role {
    pub fn subcommand(&self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent { .. } => "agent",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArgvError {
    #[error(
        "{place} sets --{flag} {theirs}, but edgewire sets --{flag} {ours} ({why}); \
         remove {flag} from {place} or set it to {ours}"
    )]
    Conflict {
        flag: &'static str,
        ours: String,
        theirs: String,
        place: String,
        why: &'static str,
    },
    #[error("{place} must not contain --{flag}: {why}")]
    Forbidden {
        flag: String,
        place: String,
        why: &'static str,
    },
    #[error(transparent)]
    Label(#[from] LabelError),
}

/// What k3s will be run with (the program path is added by the supervisor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sCommand {
    pub args: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
    pub env_remove: Vec<&'static str>,
}

#[derive(Debug)]
pub struct ArgvInput<'a> {
    pub role: &'a Role,
    /// The tunnel interface (flannel's interface).
    pub iface: &'a str,
    /// The tunnel address k3s is bound to.
    pub node_ip: IpAddr,
    /// edgewire's own `--node-label` values.
    pub labels: &'a [String],
    /// Arguments after `--`, passed to k3s unchanged.
    pub extra: &'a [OsString],
    pub file_config: &'a K3sFileConfig,
}

/// A flag found in the extra arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFlag {
    pub name: String,
    pub value: String,
}

/// The flags of interest in `extra`: `--flag V`, `--flag=V`, `-flag V` (Go's flag syntax) and
/// the one-letter aliases.
pub fn scan_extra(extra: &[OsString]) -> Vec<ExtraFlag> {
    let mut out = Vec::new();
    let mut it = extra.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let name = canonical_flag(name);
        if !SCANNED.contains(&name) {
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().unwrap_or_default(),
        };
        out.push(ExtraFlag {
            name: name.to_string(),
            value,
        });
    }
    out
}

/// Validates labels and conflicts, then builds the command. Nothing is started.
pub fn build(input: &ArgvInput<'_>) -> Result<K3sCommand, ArgvError> {
    let extra = scan_extra(input.extra);
    let extra_place = "the extra k3s arguments (after --)".to_string();
    validate_labels(input, &extra)?;
    forbid_secrets_in_argv(input.role, &extra, &extra_place)?;

    let ip = input.node_ip.to_string();
    let mut args: Vec<OsString> = vec![input.role.subcommand().into()];
    let why_ip = "k3s must be bound to the tunnel address so that nodes on other sites reach it";
    if want("node-ip", &ip, why_ip, input, &extra, &extra_place)? {
        args.extend(["--node-ip".into(), ip.clone().into()]);
    }
    if *input.role == Role::Server {
        if want(
            "advertise-address",
            &ip,
            why_ip,
            input,
            &extra,
            &extra_place,
        )? {
            args.extend(["--advertise-address".into(), ip.clone().into()]);
        }
        // A list flag: k3s appends ours to the file's list, so only a duplicate is skipped.
        let present = extra.iter().any(|f| f.name == "tls-san" && f.value == ip)
            || input
                .file_config
                .get("tls-san")
                .is_some_and(|s| s.values.contains(&ip));
        if !present {
            args.extend(["--tls-san".into(), ip.clone().into()]);
        }
    }
    let why_iface =
        "flannel must use the tunnel; otherwise it picks the default-route interface and pods \
                     on different sites cannot reach each other";
    if want(
        "flannel-iface",
        input.iface,
        why_iface,
        input,
        &extra,
        &extra_place,
    )? {
        args.extend(["--flannel-iface".into(), input.iface.into()]);
    }
    for l in input.labels {
        args.extend(["--node-label".into(), l.into()]);
    }
    args.extend(input.extra.iter().cloned());

    let mut env = Vec::new();
    let mut env_remove = ENV_REMOVE.to_vec();
    if let Role::Agent { url, token_file } = input.role {
        check_agent_file_config(input.file_config, url, token_file)?;
        env.push(("K3S_URL".to_string(), OsString::from(url)));
        env.push((
            "K3S_TOKEN_FILE".to_string(),
            token_file.clone().into_os_string(),
        ));
        // A K3S_TOKEN inherited from the environment would compete with the file.
        env_remove.push("K3S_TOKEN");
    }
    Ok(K3sCommand {
        args,
        env,
        env_remove,
    })
}

/// Whether edgewire should pass `--flag ours` itself: no when the user already set the same
/// value; an error when they set a different one.
fn want(
    flag: &'static str,
    ours: &str,
    why: &'static str,
    input: &ArgvInput<'_>,
    extra: &[ExtraFlag],
    extra_place: &str,
) -> Result<bool, ArgvError> {
    let mut same = false;
    let theirs: Vec<&str> = extra
        .iter()
        .filter(|f| f.name == flag)
        .map(|f| f.value.as_str())
        .collect();
    if !theirs.is_empty() {
        if theirs.iter().any(|v| *v != ours) {
            return Err(conflict(flag, ours, &theirs.join(" "), extra_place, why));
        }
        same = true;
    }
    if let Some(setting) = input.file_config.get(flag) {
        if setting.values.iter().any(|v| v != ours) {
            let place = format!("k3s config {}", setting.file.display());
            return Err(conflict(flag, ours, &setting.values.join(","), &place, why));
        }
        tracing::info!(file = %setting.file.display(), "k3s config already sets {flag} {ours}");
        same = true;
    }
    Ok(!same)
}

fn conflict(
    flag: &'static str,
    ours: &str,
    theirs: &str,
    place: &str,
    why: &'static str,
) -> ArgvError {
    ArgvError::Conflict {
        flag,
        ours: ours.to_string(),
        theirs: theirs.to_string(),
        place: place.to_string(),
        why,
    }
}

fn validate_labels(input: &ArgvInput<'_>, extra: &[ExtraFlag]) -> Result<(), LabelError> {
    for l in input.labels {
        labels::validate(l, "--node-label")?;
    }
    for f in extra.iter().filter(|f| f.name == "node-label") {
        labels::validate(&f.value, "the extra k3s arguments")?;
    }
    if let Some(s) = input.file_config.get("node-label") {
        for v in &s.values {
            labels::validate(v, &format!("k3s config {}", s.file.display()))?;
        }
    }
    Ok(())
}

fn forbid_secrets_in_argv(role: &Role, extra: &[ExtraFlag], place: &str) -> Result<(), ArgvError> {
    for f in extra {
        let why = match (f.name.as_str(), role) {
            ("token" | "agent-token", Role::Server) => {
                "a token on the command line is visible to every user in `ps`; put it in a file and \
                 pass --token-file / --agent-token-file, or set it in k3s's config.yaml"
            }
            ("token" | "agent-token", Role::Agent { .. }) => {
                "a token on the command line is visible to every user in `ps`; give the token file to \
                 edgewire's own --token-file"
            }
            ("token-file", Role::Agent { .. }) => "edgewire passes the token file given to its own --token-file",
            ("server", Role::Agent { .. }) => "edgewire passes K3S_URL from its own --server",
            _ => continue,
        };
        return Err(ArgvError::Forbidden {
            flag: f.name.clone(),
            place: place.to_string(),
            why,
        });
    }
    Ok(())
}

fn check_agent_file_config(
    cfg: &K3sFileConfig,
    url: &str,
    token_file: &std::path::Path,
) -> Result<(), ArgvError> {
    let token_file = token_file.display().to_string();
    let checks: [(&'static str, &str, &'static str); 3] = [
        (
            "server",
            url,
            "the agent joins the hub given to edgewire's --server, through the tunnel",
        ),
        (
            "token-file",
            &token_file,
            "the agent uses the token file given to edgewire's --token-file",
        ),
        (
            "token",
            "(none)",
            "the agent uses the token file given to edgewire's --token-file",
        ),
    ];
    for (flag, ours, why) in checks {
        if let Some(s) = cfg.get(flag) {
            if s.values.iter().any(|v| v != ours) {
                let theirs = if flag == "token" {
                    "<redacted>".to_string()
                } else {
                    s.values.join(",")
                };
                return Err(conflict(
                    flag,
                    ours,
                    &theirs,
                    &format!("k3s config {}", s.file.display()),
                    why,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn strs(c: &K3sCommand) -> Vec<String> {
        c.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn input<'a>(
        role: &'a Role,
        extra: &'a [OsString],
        cfg: &'a K3sFileConfig,
        labels: &'a [String],
    ) -> ArgvInput<'a> {
        ArgvInput {
            role,
            iface: "wg0",
            node_ip: "10.8.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            labels,
            extra,
            file_config: cfg,
        }
    }

    fn file_config(yaml: &str) -> K3sFileConfig {
        let d = std::env::temp_dir().join(format!("ew-argv-{}-{}", std::process::id(), yaml.len()));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        let f = d.join("config.yaml");
        std::fs::write(&f, yaml).unwrap_or_else(|e| panic!("{e}"));
        let c = crate::k3s_config::load(&f).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&d);
        c
    }

    #[test]
    fn server_flags_bind_everything_to_the_tunnel() {
        let extra = os(&["--disable", "traefik"]);
        let cfg = K3sFileConfig::default();
        let c = build(&input(&Role::Server, &extra, &cfg, &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            strs(&c),
            [
                "server",
                "--node-ip",
                "10.8.0.1",
                "--advertise-address",
                "10.8.0.1",
                "--tls-san",
                "10.8.0.1",
                "--flannel-iface",
                "wg0",
                "--disable",
                "traefik"
            ]
        );
        assert!(!strs(&c).iter().any(|a| a.contains("external")));
        assert!(c.env.is_empty());
        assert!(c.env_remove.contains(&"NOTIFY_SOCKET") && c.env_remove.contains(&"WATCHDOG_USEC"));
    }

    #[test]
    fn agent_gets_url_and_token_file_in_env_only() {
        let role = Role::Agent {
            url: "https://10.8.0.1:6443".into(),
            token_file: "/etc/edgewire/token".into(),
        };
        let labels = vec!["site=tucson".to_string()];
        let extra = os(&["--node-external-ip=203.0.113.7"]);
        let cfg = K3sFileConfig::default();
        let mut i = input(&role, &extra, &cfg, &labels);
        i.node_ip = "10.8.0.2".parse().unwrap_or(i.node_ip);
        let c = build(&i).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            strs(&c),
            [
                "agent",
                "--node-ip",
                "10.8.0.2",
                "--flannel-iface",
                "wg0",
                "--node-label",
                "site=tucson",
                "--node-external-ip=203.0.113.7"
            ]
        );
        assert!(c
            .env
            .contains(&("K3S_URL".into(), "https://10.8.0.1:6443".into())));
        assert!(c
            .env
            .contains(&("K3S_TOKEN_FILE".into(), "/etc/edgewire/token".into())));
        assert!(c.env_remove.contains(&"K3S_TOKEN"));
    }

    #[test]
    fn same_value_elsewhere_is_not_passed_twice_and_different_is_an_error() {
        let cfg = file_config("node-ip: 10.8.0.1\ntls-san: [10.8.0.1, hub.example]\n");
        let extra = os(&["--flannel-iface=wg0"]);
        let c = build(&input(&Role::Server, &extra, &cfg, &[])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            strs(&c),
            [
                "server",
                "--advertise-address",
                "10.8.0.1",
                "--flannel-iface=wg0"
            ]
        );

        let cfg = file_config("node-ip: 192.168.0.129\n");
        let e = build(&input(&Role::Server, &[], &cfg, &[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.yaml sets --node-ip 192.168.0.129") && e.contains("10.8.0.1"),
            "{e}"
        );

        let extra = os(&["-flannel-iface", "eth0"]);
        let e = build(&input(
            &Role::Server,
            &extra,
            &K3sFileConfig::default(),
            &[],
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("extra k3s arguments")
                && e.contains("--flannel-iface eth0")
                && e.contains("flannel must use the tunnel"),
            "{e}"
        );
    }

    #[test]
    fn tokens_on_the_command_line_are_refused() {
        let extra = os(&["--token", "s3cret"]);
        let e = build(&input(
            &Role::Server,
            &extra,
            &K3sFileConfig::default(),
            &[],
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--token") && e.contains("ps") && !e.contains("s3cret"),
            "{e}"
        );
        let role = Role::Agent {
            url: "https://10.8.0.1:6443".into(),
            token_file: "/t".into(),
        };
        for bad in [
            &["-t", "x"][..],
            &["--server=https://1.2.3.4:6443"],
            &["--token-file", "/x"],
        ] {
            assert!(
                matches!(
                    build(&input(&role, &os(bad), &K3sFileConfig::default(), &[])),
                    Err(ArgvError::Forbidden { .. })
                ),
                "{bad:?}"
            );
        }
        let cfg = file_config("token: s3cret\n");
        let e = build(&input(&role, &[], &cfg, &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token") && !e.contains("s3cret"), "{e}");
        let cfg = file_config("server: https://192.168.0.1:6443\n");
        assert!(build(&input(&role, &[], &cfg, &[]))
            .unwrap_err()
            .to_string()
            .contains("192.168.0.1"));
    }

    #[test]
    fn labels_from_every_source_are_validated() {
        let bad = vec!["location=International Widgets, Inc.".to_string()];
        assert!(matches!(
            build(&input(&Role::Server, &[], &K3sFileConfig::default(), &bad)),
            Err(ArgvError::Label(_))
        ));
        let extra = os(&["--node-label", "service=electric car charger controller"]);
        let e = build(&input(
            &Role::Server,
            &extra,
            &K3sFileConfig::default(),
            &[],
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("extra k3s arguments"), "{e}");
        let cfg = file_config("node-label:\n  - \"a=b c\"\n");
        assert!(build(&input(&Role::Server, &[], &cfg, &[]))
            .unwrap_err()
            .to_string()
            .contains("config.yaml"));
    }
}
