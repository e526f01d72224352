//! The stand-in's record file: one event per line, appended with a single `write` so that
//! several processes (server, agent, restarts) can share one file.
//!
//! Line format: `UNIX_MS \t PID \t KIND \t VALUE`, VALUE escaped (`\\`, `\t`, `\n`).
//! Kinds written by the stand-in:
//! - `start` (value `server`/`agent`), then one `arg` per argv element (argv[0] first) and one
//!   `env` per environment entry (`KEY=VALUE`);
//! - `ready` once it has sent `READY=1` (server: listening; agent: joined);
//! - `join-failed` (value: reason) for every failed join attempt of an agent;
//! - `shim` (value: PID of the shim child);
//! - `sigterm` (value `iface=NAME present|absent|unknown`: whether the `--flannel-iface`
//!   interface existed in the stand-in's network namespace when SIGTERM arrived);
//! - `exit` (value: exit status) when it leaves on its own terms.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ms: u128,
    pub pid: u32,
    pub kind: String,
    pub value: String,
}

/// Milliseconds since the UNIX epoch, the time base of [`Record::ms`].
pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Appends one record; errors are ignored (a stand-in must not fail because of its log).
pub fn append(path: &Path, kind: &str, value: &str) {
    let line = format!(
        "{}\t{}\t{}\t{}\n",
        now_ms(),
        std::process::id(),
        kind,
        escape(value)
    );
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// All records in the file, in file order; unparsable lines are skipped.
pub fn read(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Record> {
    let mut it = line.splitn(4, '\t');
    let ms = it.next()?.parse().ok()?;
    let pid = it.next()?.parse().ok()?;
    let kind = it.next()?.to_string();
    let value = unescape(it.next().unwrap_or(""));
    Some(Record {
        ms,
        pid,
        kind,
        value,
    })
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// One run of the stand-in (one process), assembled from its records.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub pid: u32,
    pub role: String,
    pub started_ms: u128,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Every record of this process after the argv/env block, in order.
    pub events: Vec<Record>,
}

impl Run {
    /// The first event of `kind`.
    pub fn event(&self, kind: &str) -> Option<&Record> {
        self.events.iter().find(|r| r.kind == kind)
    }

    /// The value following `flag` in argv (`--flag VALUE` or `--flag=VALUE`), all occurrences.
    pub fn flag_values(&self, flag: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.argv.iter().skip(1);
        while let Some(a) = it.next() {
            if a == flag {
                if let Some(v) = it.next() {
                    out.push(v.clone());
                }
            } else if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                out.push(v.to_string());
            }
        }
        out
    }
}

/// The runs recorded in `path`, ordered by start time.
pub fn runs(path: &Path) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for r in read(path) {
        if r.kind == "start" {
            runs.push(Run {
                pid: r.pid,
                role: r.value,
                started_ms: r.ms,
                ..Run::default()
            });
            continue;
        }
        // Attach to the latest run of this PID (PIDs are not reused within one test).
        let Some(run) = runs.iter_mut().rev().find(|run| run.pid == r.pid) else {
            continue;
        };
        match r.kind.as_str() {
            "arg" => run.argv.push(r.value),
            "env" => {
                let (k, v) = r.value.split_once('=').unwrap_or((&r.value, ""));
                run.env.insert(k.to_string(), v.to_string());
            }
            _ => run.events.push(r),
        }
    }
    runs.sort_by_key(|r| r.started_ms);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trip() {
        for s in ["plain", "tab\there", "nl\nx", "back\\slash\\t", ""] {
            assert_eq!(unescape(&escape(s)), s);
        }
    }

    #[test]
    fn runs_group_by_pid() {
        let text =
            "10\t7\tstart\tagent\n11\t7\targ\tk3s\n12\t7\targ\t--node-ip\n13\t7\targ\t10.8.0.2\n\
                    14\t7\tenv\tK3S_URL=https://10.8.0.1:6443\n15\t8\tstart\tserver\n\
                    16\t7\tready\t\ngarbage\n17\t8\texit\t1\n";
        let dir = std::env::temp_dir().join(format!("standin-record-{}", std::process::id()));
        std::fs::write(&dir, text).unwrap_or_else(|e| panic!("{e}"));
        let runs = runs(&dir);
        let _ = std::fs::remove_file(&dir);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].role, "agent");
        assert_eq!(runs[0].flag_values("--node-ip"), vec!["10.8.0.2"]);
        assert_eq!(
            runs[0].env.get("K3S_URL").map(String::as_str),
            Some("https://10.8.0.1:6443")
        );
        assert!(runs[0].event("ready").is_some());
        assert_eq!(runs[1].event("exit").map(|r| r.value.as_str()), Some("1"));
    }
}
