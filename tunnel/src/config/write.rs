//! [`Config`] → wg-quick text, and atomic file replacement (SaveConfig, fleet tools).
//!
//! The text round-trips through [`super::parse`] for every configuration the parser can
//! produce. Hook commands are written as stored: one containing `#` or a line break (which
//! the parser never yields) would not read back the same.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::model::Config;

/// Mode of configuration files: they hold the private key.
pub const CONFIG_MODE: u32 = 0o600;

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Config {
    /// The file as wg-quick would save it: wg's keys first, then wg-quick's, then peers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.interface;
        writeln!(f, "[Interface]")?;
        if let Some(k) = &i.private_key {
            writeln!(f, "PrivateKey = {}", k.to_base64())?;
        }
        if let Some(p) = i.listen_port {
            writeln!(f, "ListenPort = {p}")?;
        }
        if let Some(m) = i.fwmark {
            writeln!(f, "FwMark = {m:#x}")?;
        }
        if !i.addresses.is_empty() {
            writeln!(f, "Address = {}", join(&i.addresses))?;
        }
        if !i.dns.is_empty() || !i.dns_search.is_empty() {
            let mut entries: Vec<String> = i.dns.iter().map(ToString::to_string).collect();
            entries.extend(i.dns_search.iter().cloned());
            writeln!(f, "DNS = {}", entries.join(", "))?;
        }
        if let Some(m) = i.mtu {
            writeln!(f, "MTU = {m}")?;
        }
        if let Some(t) = &i.table {
            writeln!(f, "Table = {t}")?;
        }
        for (key, hooks) in [
            ("PreUp", &i.pre_up),
            ("PostUp", &i.post_up),
            ("PreDown", &i.pre_down),
            ("PostDown", &i.post_down),
        ] {
            for h in hooks {
                writeln!(f, "{key} = {h}")?;
            }
        }
        if i.save_config {
            writeln!(f, "SaveConfig = true")?;
        }
        for p in &self.peers {
            writeln!(f)?;
            writeln!(f, "[Peer]")?;
            writeln!(f, "PublicKey = {}", p.public_key.to_base64())?;
            if let Some(k) = &p.preshared_key {
                writeln!(f, "PresharedKey = {}", k.to_base64())?;
            }
            if !p.allowed_ips.is_empty() {
                writeln!(f, "AllowedIPs = {}", join(&p.allowed_ips))?;
            }
            if let Some(e) = &p.endpoint {
                writeln!(f, "Endpoint = {e}")?;
            }
            if let Some(k) = p.persistent_keepalive {
                writeln!(f, "PersistentKeepalive = {k}")?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// The wg-quick text of this configuration (same as `to_string()`).
    pub fn to_conf_string(&self) -> String {
        self.to_string()
    }

    /// Writes the configuration to `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        write_atomic(path, self.to_string().as_bytes(), CONFIG_MODE)
    }
}

fn named(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Replaces `path` with `contents` so that readers see the old file or the new one, never
/// a mix, even across a crash: a temporary file in the same directory gets `mode` before
/// any byte is written, is filled and fsynced, renamed over `path`, and the directory is
/// fsynced. A symlink at `path` is replaced, not followed.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.{}.{n}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        // Created 0600 (never wider than the umask allows), then set to exactly `mode`.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1_000_000 => continue,
            Err(e) => return Err(named("cannot create", &tmp, e)),
        }
    };
    let filled = file
        .set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .map_err(|e| named("cannot write", &tmp, e))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path).map_err(|e| named("cannot rename over", path, e))
        });
    if let Err(e) = filled {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| named("cannot sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("edgewire-write-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create scratch dir");
        d
    }

    #[test]
    fn write_atomic_sets_mode_and_leaves_no_temp_file() {
        let dir = scratch_dir("mode");
        let path = dir.join("wg0.conf");
        fs::write(&path, b"old contents\n").expect("seed");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");

        write_atomic(&path, b"[Interface]\n", 0o600).expect("write_atomic");
        assert_eq!(fs::read(&path).expect("read back"), b"[Interface]\n");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        write_atomic(&path, b"second\n", 0o640).expect("write_atomic again");
        assert_eq!(
            fs::metadata(&path).expect("stat").permissions().mode() & 0o7777,
            0o640
        );

        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("wg0.conf")],
            "temporary file left behind"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn write_atomic_into_missing_dir_fails_cleanly() {
        let dir = scratch_dir("missing");
        let path = dir.join("no-such-dir").join("wg0.conf");
        let err = write_atomic(&path, b"x", 0o600).expect_err("must fail");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
