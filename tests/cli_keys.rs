//! `edgewire genkey | genpsk | pubkey` against the real `wg` from wireguard-tools.
//!
//! Without `wg` on PATH the cross-checks are skipped locally but fail under CI=true.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const EDGEWIRE: &str = env!("CARGO_BIN_EXE_edgewire");

fn run(program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // A writer thread, so a child that exits early cannot deadlock us on a full pipe.
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    writer.join().expect("stdin writer");
    out
}

/// Runs and requires success; returns stdout as text.
fn ok(program: &str, args: &[&str], stdin: &[u8]) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn assert_key_line(s: &str) {
    assert_eq!(
        s.len(),
        45,
        "one 44-character base64 key and a newline: {s:?}"
    );
    assert!(s.ends_with("=\n"), "{s:?}");
    assert!(
        s[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
        "{s:?}"
    );
}

/// Path of `wg`, or `None` (skip) outside CI; under CI=true a missing `wg` fails the test.
fn wg() -> Option<&'static str> {
    let found = Command::new("wg")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return Some("wg");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("`wg` (wireguard-tools) is not installed, and CI=true requires the cross-check");
    }
    eprintln!("skipping: `wg` (wireguard-tools) is not installed");
    None
}

#[test]
fn genkey_and_genpsk_print_one_key_each() {
    let a = ok(EDGEWIRE, &["genkey"], b"");
    let b = ok(EDGEWIRE, &["genkey"], b"");
    assert_key_line(&a);
    assert_key_line(&b);
    assert_ne!(a, b);
    let psk = ok(EDGEWIRE, &["genpsk"], b"");
    assert_key_line(&psk);
}

#[test]
fn edgewire_genkey_pubkey_matches_wg_pubkey() {
    let Some(wg) = wg() else { return };
    for _ in 0..5 {
        let private = ok(EDGEWIRE, &["genkey"], b"");
        let ours = ok(EDGEWIRE, &["pubkey"], private.as_bytes());
        let theirs = ok(wg, &["pubkey"], private.as_bytes());
        assert_key_line(&ours);
        assert_eq!(ours, theirs);
    }
}

#[test]
fn wg_genkey_is_read_by_edgewire_pubkey() {
    let Some(wg) = wg() else { return };
    for _ in 0..5 {
        let private = ok(wg, &["genkey"], b"");
        assert_eq!(
            ok(EDGEWIRE, &["pubkey"], private.as_bytes()),
            ok(wg, &["pubkey"], private.as_bytes())
        );
        // `wg genpsk` output is 32 random bytes, not clamped: the curve clamps on use.
        let unclamped = ok(wg, &["genpsk"], b"");
        assert_eq!(
            ok(EDGEWIRE, &["pubkey"], unclamped.as_bytes()),
            ok(wg, &["pubkey"], unclamped.as_bytes())
        );
    }
}

#[test]
fn pubkey_trims_whitespace() {
    // Vector: `echo KDwmQRhwJ7MmR8BnatE6wLaT85ZUVX8gp7uBoCqC5nM= | wg pubkey`.
    let want = "uU3bw+plGp56BMmPbPgJAPCk/KHeiuKDfjSanYHMcT0=\n";
    for input in [
        "KDwmQRhwJ7MmR8BnatE6wLaT85ZUVX8gp7uBoCqC5nM=",
        "KDwmQRhwJ7MmR8BnatE6wLaT85ZUVX8gp7uBoCqC5nM=\n",
        "  KDwmQRhwJ7MmR8BnatE6wLaT85ZUVX8gp7uBoCqC5nM=\r\n\n",
    ] {
        assert_eq!(
            ok(EDGEWIRE, &["pubkey"], input.as_bytes()),
            want,
            "{input:?}"
        );
    }
}

#[test]
fn pubkey_rejects_bad_input() {
    let key = "KDwmQRhwJ7MmR8BnatE6wLaT85ZUVX8gp7uBoCqC5nM=";
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\n".to_vec(),
        b"not a key\n".to_vec(),
        key.as_bytes()[..43].to_vec(),
        format!("{key}{key}\n").into_bytes(),
        format!("{key} trailing\n").into_bytes(),
        "A".repeat(42)
            .into_bytes()
            .into_iter()
            .chain(*b"==")
            .collect(),
        b"\xff\xfe\x00garbage".to_vec(),
        vec![b'A'; 1 << 20],
    ];
    for input in bad {
        let out = run(EDGEWIRE, &["pubkey"], &input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = String::from_utf8_lossy(&input[..input.len().min(60)]).into_owned();
        assert_eq!(out.status.code(), Some(1), "{shown:?}: {stderr}");
        assert!(
            stderr.contains("Key is not the correct length or format"),
            "{shown:?}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{shown:?}: printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            !stderr.contains(&key[..20]),
            "key material in the error: {stderr}"
        );
    }
    if let Some(wg) = wg() {
        let out = run(wg, &["pubkey"], b"not a key\n");
        assert_ne!(out.status.code(), Some(0), "wg accepts what we reject?");
    }
}
