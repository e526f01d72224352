//! `edgewire server`, `edgewire agent`, `edgewire kubeconfig`: the k3s launcher.
//! Everything but argument parsing lives in `edgewire_launcher`.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use edgewire_launcher::launch::{self, LaunchSpec, RoleSpec, DEFAULT_RUN_DIR};
use edgewire_launcher::supervise::{Options, Outcome};
use edgewire_launcher::{kubeconfig, probe};

const DEFAULT_WG_CONFIG: &str = "/etc/wireguard/wg0.conf";

/// Flags shared by `server` and `agent`.
#[derive(clap::Args)]
pub struct LaunchArgs {
    /// wg-quick configuration of the tunnel; the interface is named after the file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_WG_CONFIG)]
    config: PathBuf,
    /// The k3s executable (default: `k3s` in PATH).
    #[arg(long, value_name = "PATH")]
    k3s: Option<PathBuf>,
    /// A node label KEY=VALUE, checked against Kubernetes' rules before anything starts
    /// (repeatable; labels in the extra k3s arguments and config.yaml are checked too).
    #[arg(long = "node-label", value_name = "KEY=VALUE")]
    node_labels: Vec<String>,
    /// Seconds k3s gets to exit after SIGTERM before it is killed.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    stop_timeout: u64,
    /// First restart delay in milliseconds (doubles up to 60 × this); for tests.
    #[arg(
        long,
        hide = true,
        env = "EDGEWIRE_K3S_BACKOFF_BASE_MS",
        default_value_t = 1000
    )]
    backoff_base_ms: u64,
    /// Directory for k3s's PID file and notify socket.
    #[arg(long, hide = true, env = "EDGEWIRE_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Extra arguments for k3s, after `--`, passed unchanged.
    #[arg(last = true, value_name = "K3S ARGS")]
    extra: Vec<OsString>,
}

#[derive(clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    launch: LaunchArgs,
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The hub: its tunnel address (10.8.0.1, [fd00::1]:6443) or https://HOST:PORT.
    #[arg(long, value_name = "ADDR|URL")]
    server: String,
    /// File holding the hub's node token (/var/lib/rancher/k3s/server/node-token on the hub).
    /// k3s reads it itself; the token never appears on a command line.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    #[command(flatten)]
    launch: LaunchArgs,
}

#[derive(clap::Args)]
pub struct KubeconfigArgs {
    /// wg-quick configuration of the hub's tunnel (for its address).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_WG_CONFIG)]
    config: PathBuf,
    /// The address to put in `server:` instead of the tunnel address from --config.
    #[arg(long, value_name = "ADDR")]
    server: Option<IpAddr>,
    /// k3s's kubeconfig (default: $K3S_KUBECONFIG_OUTPUT or /etc/rancher/k3s/k3s.yaml).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
}

pub fn server(args: ServerArgs) -> anyhow::Result<()> {
    run(RoleSpec::Server, args.launch)
}

pub fn agent(args: AgentArgs) -> anyhow::Result<()> {
    // Fail on a malformed --server before anything else, with its own message.
    probe::ServerUrl::parse(&args.server)?;
    run(
        RoleSpec::Agent {
            server: args.server,
            token_file: args.token_file,
        },
        args.launch,
    )
}

fn run(role: RoleSpec, a: LaunchArgs) -> anyhow::Result<()> {
    let spec = LaunchSpec {
        role,
        wg_config: a.config,
        k3s: a.k3s,
        node_labels: a.node_labels,
        extra: a.extra,
        // k3s reads its config file from this variable, inherited from edgewire.
        k3s_config_file: std::env::var_os("K3S_CONFIG_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        run_dir: a.run_dir,
        options: Options {
            backoff_base: Duration::from_millis(a.backoff_base_ms),
            stop_timeout: Duration::from_secs(a.stop_timeout),
            ..Options::default()
        },
    };
    let prepared = launch::prepare(&spec)?;
    match launch::run(&prepared, &spec)? {
        Outcome::Stopped => Ok(()),
        Outcome::TunnelExited(reason) => anyhow::bail!(
            "tunnel {} ended ({reason:?}); k3s was stopped; exiting with an error so that the service \
             manager restarts the tunnel and k3s together",
            prepared.iface
        ),
    }
}

pub fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<()> {
    let host = match args.server {
        Some(ip) => ip,
        None => {
            let config = edgewire_tunnel::config::load(&args.config)?;
            launch::tunnel_address(&config)
                .with_context(|| format!("{}: [Interface] has no Address", args.config.display()))?
        }
    };
    let path = args.kubeconfig.unwrap_or_else(|| {
        kubeconfig::default_path(std::env::var("K3S_KUBECONFIG_OUTPUT").ok().as_deref())
    });
    let text = kubeconfig::rewrite_file(&path, host)?;
    print!("{text}");
    Ok(())
}
