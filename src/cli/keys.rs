//! `genkey`, `genpsk`, `pubkey`: the same text formats as `wg` (one base64 line each).

use std::io::{Read, Write};

use anyhow::Context as _;
use edgewire_tunnel::key::{PresharedKey, PrivateKey};

/// `wg pubkey`'s message for anything that is not one base64 key.
const BAD_KEY: &str = "Key is not the correct length or format";

pub fn genkey() -> anyhow::Result<()> {
    print_secret(&PrivateKey::generate().to_base64())
}

pub fn genpsk() -> anyhow::Result<()> {
    print_secret(&PresharedKey::generate().to_base64())
}

/// Reads a private key on stdin (surrounding whitespace ignored) and prints its public key.
pub fn pubkey() -> anyhow::Result<()> {
    let mut input = Vec::new();
    // A key is 44 bytes; anything much longer is not a key, and need not be read whole.
    std::io::stdin()
        .lock()
        .take(4096)
        .read_to_end(&mut input)
        .context("cannot read stdin")?;
    let text = std::str::from_utf8(&input).map_err(|_| anyhow::anyhow!(BAD_KEY))?;
    let key = PrivateKey::from_base64(text.trim()).map_err(|_| anyhow::anyhow!(BAD_KEY))?;
    print_line(&key.public_key().to_base64())
}

/// Like `wg genkey`: warn (but still print) when stdout is a file others can read.
fn print_secret(line: &str) -> anyhow::Result<()> {
    if let Some(mode) = stdout_file_mode() {
        if mode & 0o007 != 0 {
            eprintln!("Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.");
        }
    }
    print_line(line)
}

fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Permission bits of stdout when it is a regular file.
fn stdout_file_mode() -> Option<u32> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    meta.is_file().then(|| meta.permissions().mode())
}
