//! `edgewire server|agent|kubeconfig` refusing bad input before anything starts (no root
//! needed: every case fails before the tunnel would come up), and `edgewire kubeconfig`.
//!
//! "Nothing starts" is checked three ways: the stand-in k3s (given with --k3s) records every
//! start and its record file stays absent, the interface named after the config file does
//! not exist, and the run directory is never created.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GUIDE_LABEL: &str =
    "location=International Widgets, Inc., 5601 Speedway Blvd, Tucson, AZ, USA, 85710";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("ew-lcli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway config (10.8.0.2/24, hub peer routing 10.8.0.0/24) in `dir`, named `iface.conf`.
fn gateway_conf(dir: &Dir, iface: &str) -> PathBuf {
    let text = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.8.0.2/24\n\n\
                [Peer]\nPublicKey = HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\nEndpoint = 198.18.0.1:51820\n\
                AllowedIPs = 10.8.0.0/24\nPersistentKeepAlive = 21\n";
    dir.write(&format!("{iface}.conf"), text)
}

fn edgewire(dir: &Dir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgewire"))
        .args(args)
        .env("K3S_STANDIN_RECORD", dir.0.join("record"))
        .env("EDGEWIRE_RUN_DIR", dir.0.join("run"))
        .env("K3S_CONFIG_FILE", dir.0.join("no-config.yaml"))
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap_or_else(|e| panic!("running edgewire: {e}"))
}

fn iface(tag: &str) -> String {
    format!("ewl{tag}{}", std::process::id() % 1_000_000)
}

/// Fails with its stderr; asserts that nothing was started.
fn refused(dir: &Dir, iface: &str, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected a refusal, got success; stderr:\n{stderr}"
    );
    assert!(!dir.0.join("record").exists(), "k3s was started:\n{stderr}");
    assert!(
        !Path::new("/sys/class/net").join(iface).exists(),
        "interface {iface} was created"
    );
    assert!(
        !dir.0.join("run").exists(),
        "run directory created before the checks passed"
    );
    stderr
}

fn standin() -> String {
    k3s_standin::binary().display().to_string()
}

#[test]
fn guide_node_label_is_refused_before_anything_starts() {
    let dir = Dir::new("label");
    let ifc = iface("a");
    let conf = gateway_conf(&dir, &ifc);
    let token = dir.write("token", "K10abc::server:secret\n");
    let k3s = standin();
    let conf_s = conf.display().to_string();
    let token_s = token.display().to_string();
    let base = [
        "agent",
        "--config",
        &conf_s,
        "--server",
        "10.8.0.1",
        "--token-file",
        &token_s,
        "--k3s",
        &k3s,
    ];

    let mut args = base.to_vec();
    args.extend(["--node-label", GUIDE_LABEL]);
    let err = refused(&dir, &ifc, &edgewire(&dir, &args));
    eprintln!("{err}");
    assert!(err.contains("is not a valid Kubernetes label"), "{err}");
    assert!(err.contains("71 characters long, at most 63"), "{err}");
    assert!(err.contains("' ', ','"), "{err}");
    assert!(
        err.contains("annotation") && err.contains("kubectl annotate node"),
        "{err}"
    );
    assert!(
        err.contains(
            "--node-label location=International-Widgets-Inc.-5601-Speedway-Blvd-Tucson-AZ-USA"
        ),
        "{err}"
    );

    // The same through the extra k3s arguments, and the guide's second label.
    let mut args = base.to_vec();
    args.extend([
        "--",
        "--node-label",
        "service=electric car charger controller",
    ]);
    let err = refused(&dir, &ifc, &edgewire(&dir, &args));
    assert!(
        err.contains("extra k3s arguments")
            && err.contains("service=electric-car-charger-controller"),
        "{err}"
    );

    // And from k3s's own config.yaml.
    let cfg = dir.write("config.yaml", "node-label:\n  - \"owner=Jane Doe\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_edgewire"))
        .args(base)
        .env("K3S_STANDIN_RECORD", dir.0.join("record"))
        .env("EDGEWIRE_RUN_DIR", dir.0.join("run"))
        .env("K3S_CONFIG_FILE", &cfg)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = refused(&dir, &ifc, &out);
    assert!(
        err.contains("config.yaml") && err.contains("owner=Jane Doe"),
        "{err}"
    );
}

#[test]
fn missing_k3s_says_how_to_install_it() {
    let dir = Dir::new("nok3s");
    let ifc = iface("b");
    let conf = gateway_conf(&dir, &ifc).display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_edgewire"))
        .args(["server", "--config", &conf])
        .env("PATH", "/nonexistent-bin")
        .env("EDGEWIRE_RUN_DIR", dir.0.join("run"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = refused(&dir, &ifc, &out);
    assert!(
        err.contains("k3s not found in PATH (/nonexistent-bin)"),
        "{err}"
    );
    assert!(
        err.contains("get.k3s.io")
            && err.contains("INSTALL_K3S_SKIP_ENABLE=true")
            && err.contains("--k3s PATH"),
        "{err}"
    );
}

#[test]
fn conflicts_and_secrets_are_refused_with_the_place_named() {
    let dir = Dir::new("conflict");
    let ifc = iface("c");
    let conf = gateway_conf(&dir, &ifc).display().to_string();
    let k3s = standin();

    // The guide's --node-external-ip is passed through; a token on the command line is not.
    let err = refused(
        &dir,
        &ifc,
        &edgewire(
            &dir,
            &[
                "server", "--config", &conf, "--k3s", &k3s, "--", "--token", "hunter2",
            ],
        ),
    );
    assert!(
        err.contains("--token") && err.contains("`ps`") && !err.contains("hunter2"),
        "{err}"
    );

    // config.yaml sets flannel-iface to the LAN NIC (the guide's bug): refused, file named.
    let cfg = dir.write("config.yaml", "flannel-iface: enp0s3\n");
    let out = Command::new(env!("CARGO_BIN_EXE_edgewire"))
        .args(["server", "--config", &conf, "--k3s", &k3s])
        .env("K3S_STANDIN_RECORD", dir.0.join("record"))
        .env("EDGEWIRE_RUN_DIR", dir.0.join("run"))
        .env("K3S_CONFIG_FILE", &cfg)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = refused(&dir, &ifc, &out);
    assert!(
        err.contains(&format!("{} sets --flannel-iface enp0s3", cfg.display())),
        "{err}"
    );
    assert!(err.contains(&format!("--flannel-iface {ifc}")), "{err}");

    // An agent whose hub is not behind any peer.
    let token = dir
        .write("token", "K10abc::server:secret\n")
        .display()
        .to_string();
    let err = refused(
        &dir,
        &ifc,
        &edgewire(
            &dir,
            &[
                "agent",
                "--config",
                &conf,
                "--server",
                "192.168.0.129",
                "--token-file",
                &token,
                "--k3s",
                &k3s,
            ],
        ),
    );
    assert!(
        err.contains("192.168.0.129 is not routed through") && err.contains("AllowedIPs"),
        "{err}"
    );

    // A missing token file.
    let missing = dir.0.join("missing-token").display().to_string();
    let err = refused(
        &dir,
        &ifc,
        &edgewire(
            &dir,
            &[
                "agent",
                "--config",
                &conf,
                "--server",
                "10.8.0.1",
                "--token-file",
                &missing,
                "--k3s",
                &k3s,
            ],
        ),
    );
    assert!(
        err.contains(&format!("--token-file {missing}")) && err.contains("node-token"),
        "{err}"
    );
}

#[test]
fn kubeconfig_points_at_the_hub_tunnel_address() {
    let dir = Dir::new("kubeconfig");
    let hub = dir.write(
        "wg0.conf",
        "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.8.0.1/24\nListenPort = 51820\n",
    );
    let yaml = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: LS0t\n    server: https://127.0.0.1:6443\n  name: default\n";
    let k = dir.write("k3s.yaml", yaml);
    let (hub_s, k_s) = (hub.display().to_string(), k.display().to_string());
    let out = edgewire(
        &dir,
        &["kubeconfig", "--config", &hub_s, "--kubeconfig", &k_s],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        yaml.replace("127.0.0.1", "10.8.0.1")
    );

    let out = edgewire(
        &dir,
        &["kubeconfig", "--server", "10.9.0.1", "--kubeconfig", &k_s],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("server: https://10.9.0.1:6443"));

    // K3S_KUBECONFIG_OUTPUT is where k3s wrote it.
    let out = Command::new(env!("CARGO_BIN_EXE_edgewire"))
        .args(["kubeconfig", "--config", &hub_s])
        .env("K3S_KUBECONFIG_OUTPUT", &k)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("server: https://10.8.0.1:6443"));

    let out = edgewire(
        &dir,
        &[
            "kubeconfig",
            "--server",
            "10.9.0.1",
            "--kubeconfig",
            "/nonexistent/k3s.yaml",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("reading kubeconfig /nonexistent/k3s.yaml"),
        "{err}"
    );
}
