//! One k3s process: spawning it in its own process group, forwarding its output with a
//! prefix while watching for fatal errors, and signalling its PID (never its group).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use crate::argv::K3sCommand;

/// Lines longer than this are forwarded in pieces.
const MAX_LINE: u64 = 64 * 1024;

/// k3s errors that no restart can fix: retrying only hammers the hub.
const FATAL: &[(&str, &str)] = &[
    (
        "Node password rejected",
        "the hub already has a node of this name with another password (duplicate hostname, or \
         /etc/rancher/node/password changed); use a unique --node-name or --with-node-id, or delete \
         the old node on the hub",
    ),
    ("token CA hash does not match", "the token does not belong to this hub's cluster CA; copy the hub's node-token again"),
];

/// A line of k3s output that means "do not restart".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    /// k3s's own message (the `msg="…"` part when present).
    pub message: String,
    pub advice: &'static str,
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.advice)
    }
}

/// Whether `line` reports one of the [`FATAL`] errors.
pub fn fatal_in(line: &str) -> Option<Fatal> {
    let &(_, advice) = FATAL.iter().find(|(pat, _)| line.contains(pat))?;
    let message = match line.split_once("msg=\"") {
        Some((_, rest)) => rest.rsplit_once('"').map_or(rest, |(m, _)| m).to_string(),
        None => line.trim().to_string(),
    };
    Some(Fatal { message, advice })
}

/// Starts k3s: own process group (a Ctrl-C on edgewire's terminal does not reach it, and
/// edgewire decides how it stops), stdin closed, output piped to [`forward`].
pub fn spawn(
    program: &Path,
    cmd: &K3sCommand,
    notify_socket: &Path,
) -> std::io::Result<tokio::process::Child> {
    let mut std_cmd = std::process::Command::new(program);
    std_cmd.args(&cmd.args);
    for k in &cmd.env_remove {
        std_cmd.env_remove(k);
    }
    for (k, v) in &cmd.env {
        std_cmd.env(k, v);
    }
    std_cmd
        .env("NOTIFY_SOCKET", notify_socket)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut cmd = tokio::process::Command::from(std_cmd);
    cmd.kill_on_drop(false);
    cmd.spawn()
}

/// Copies `stream` to edgewire's stderr line by line as `k3s[PID]: line`, and reports fatal
/// errors on `fatal`. Ends at EOF (which may come long after k3s exited, if a child of k3s
/// keeps the pipe open; nothing waits for it).
pub fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    pid: u32,
    fatal: UnboundedSender<(u32, Fatal)>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match (&mut reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            {
                use std::io::Write as _;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "k3s[{pid}]: {line}");
            }
            if let Some(f) = fatal_in(line) {
                let _ = fatal.send((pid, f));
            }
        }
    });
}

/// Sends `sig` to k3s's PID only: its containers' shims share its process group and must
/// survive a k3s restart (k3s's own units use `KillMode=process` for the same reason).
pub fn signal(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Err(e) = kill(Pid::from_raw(raw), sig) {
        tracing::debug!(pid, "kill {sig}: {e}");
    }
}

/// "exited with status 1", "was killed by signal 9 (SIGKILL)".
pub fn describe(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => match Signal::try_from(s) {
            Ok(sig) => format!("was killed by signal {s} ({sig})"),
            Err(_) => format!("was killed by signal {s}"),
        },
        (None, None) => "exited".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_lines() {
        let line = "time=\"2024-01-01T00:00:00Z\" level=error msg=\"Failed to retrieve agent configuration: Node password \
                    rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd \
                    entry, try enabling a unique node name with the --with-node-id flag\"";
        let f = fatal_in(line).unwrap_or_else(|| panic!("not fatal"));
        assert!(
            f.message
                .starts_with("Failed to retrieve agent configuration: Node password rejected"),
            "{}",
            f.message
        );
        assert!(f.message.ends_with("--with-node-id flag"), "{}", f.message);
        assert!(f.to_string().contains("unique --node-name"));
        assert_eq!(
            fatal_in("level=info msg=\"Waiting to retrieve agent configuration\""),
            None
        );
        assert!(
            fatal_in("plain: token CA hash does not match the Cluster CA certificate hash")
                .is_some()
        );
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(
            describe(&ExitStatus::from_raw(1 << 8)),
            "exited with status 1"
        );
        assert_eq!(
            describe(&ExitStatus::from_raw(9)),
            "was killed by signal 9 (SIGKILL)"
        );
    }
}
