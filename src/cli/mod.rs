//! One module per command; `anyhow` lives here and nowhere else.

pub mod k3s;
pub mod keys;
pub mod tun;
pub mod up;

/// Logs go to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
