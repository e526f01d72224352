//! `edgewire`: one binary for a userspace WireGuard interface, the k3s launcher and the fleet
//! tools. This file only parses the command line; each command lives in `cli/`.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edgewire",
    version,
    about = "Userspace WireGuard + k3s for edge gateways"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new private key (like `wg genkey`).
    Genkey,
    /// Print a new preshared key (like `wg genpsk`).
    Genpsk,
    /// Read a private key on stdin, print its public key (like `wg pubkey`).
    Pubkey,
    /// Bring up an interface from a wg-quick config and run it in the foreground.
    Up(cli::up::UpArgs),
    /// Stop an interface started by `edgewire up` or `edgewire tun`.
    Down(cli::up::DownArgs),
    /// Bare wireguard-go-compatible mode: TUN + UAPI socket, configured with `wg`.
    Tun(cli::tun::TunArgs),
    /// Run the hub: tunnel up, then `k3s server` bound to the tunnel address.
    Server(cli::k3s::ServerArgs),
    /// Run a gateway: tunnel up, wait for the hub, then `k3s agent`.
    Agent(cli::k3s::AgentArgs),
    /// Print k3s's kubeconfig with `server:` pointing at the hub's tunnel address.
    Kubeconfig(cli::k3s::KubeconfigArgs),
    /// Measure the tunnel between two namespaces (and other implementations side by side).
    Bench(cli::bench::BenchArgs),
    /// Show it working: a cloud and a gateway namespace, tunnel, ping, throughput, k3s.
    Demo(cli::demo::DemoArgs),
    /// One end of `bench`'s RTT floor (started by `bench` itself).
    #[command(hide = true)]
    RelayFloor(cli::floor::RelayFloorArgs),
}

/// Invoked through a link named `edgewire-go` (or `wireguard-go`), edgewire is a drop-in
/// wireguard-go: `WG_QUICK_USERSPACE_IMPLEMENTATION=edgewire-go wg-quick up wg0` works.
fn args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if matches!(invoked_as.as_str(), "edgewire-go" | "wireguard-go") {
        args.insert(1, "tun".into());
    }
    args
}

fn main() -> std::process::ExitCode {
    cli::init_logging();
    let cli = Cli::parse_from(args());
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The whole cause chain on one line, never a backtrace: this is for people.
            eprintln!("Error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Genkey => cli::keys::genkey(),
        Command::Genpsk => cli::keys::genpsk(),
        Command::Pubkey => cli::keys::pubkey(),
        Command::Up(args) => cli::up::up(args),
        Command::Down(args) => cli::up::down(args),
        Command::Tun(args) => cli::tun::tun(args),
        Command::Server(args) => cli::k3s::server(args),
        Command::Agent(args) => cli::k3s::agent(args),
        Command::Kubeconfig(args) => cli::k3s::kubeconfig(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Demo(args) => cli::demo::demo(args),
        Command::RelayFloor(args) => cli::floor::relay_floor(args),
    }
}
