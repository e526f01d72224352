//! What a tunnel delivered, counted where it comes out: an nftables counter on the input
//! hook of the receiving namespace, for one UDP destination port.
//!
//! Under overload the receiving application (iperf3 on a busy 2-vCPU machine) can be what
//! drops packets, in its own socket buffer, after the tunnel has delivered them. The
//! counter sees every datagram the tunnel handed to the receiver's IP stack, whether the
//! application then kept up or not, so `bench` reports both figures.
//!
//! A tunnel that writes UDP super-packets to its TUN (USO) delivers one packet that the
//! kernel segments later, in the UDP layer; the input hook sees it once, with its full
//! length. [`datagrams`] turns packets and bytes back into datagrams of a known payload
//! size, which is right for both kinds of delivery.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use super::netns::{on_path, Ns, Session};

const NFT_TIMEOUT: Duration = Duration::from_secs(10);
const TABLE: &str = "edgewire_bench";
const COUNTER: &str = "delivered";

/// An installed counter; [`InboundCounter::remove`] deletes its table (the namespace's
/// removal at cleanup does too).
pub struct InboundCounter<'s> {
    session: &'s Session,
    ns: Ns,
}

impl<'s> InboundCounter<'s> {
    /// Counts UDP packets to `port` arriving in `ns`. `Ok(None)` when `nft` is not
    /// installed; an error when it is but the ruleset is refused (a kernel without
    /// nf_tables).
    pub fn install(
        session: &'s Session,
        ns: &Ns,
        port: u16,
    ) -> anyhow::Result<Option<InboundCounter<'s>>> {
        if on_path("nft").is_none() {
            return Ok(None);
        }
        let ruleset = format!(
            "table inet {TABLE} {{\n  counter {COUNTER} {{\n  }}\n  chain input {{\n    \
             type filter hook input priority -300;\n    \
             udp dport {port} counter name \"{COUNTER}\"\n  }}\n}}\n"
        );
        let path = session.dir().join(format!("{}-count.nft", ns.name));
        std::fs::write(&path, ruleset).with_context(|| format!("writing {}", path.display()))?;
        let file = path.to_string_lossy().into_owned();
        let out = session.run(Some(ns), &["nft", "-f", file.as_str()], NFT_TIMEOUT)?;
        let _ = std::fs::remove_file(&path);
        if !out.success() {
            bail!("nft -f (input counter in {}): {}", ns.name, out.message());
        }
        Ok(Some(InboundCounter {
            session,
            ns: ns.clone(),
        }))
    }

    /// Packets and bytes counted so far.
    pub fn read(&self) -> anyhow::Result<(u64, u64)> {
        let argv = ["nft", "-j", "list", "counter", "inet", TABLE, COUNTER];
        let out = self.session.run(Some(&self.ns), &argv, NFT_TIMEOUT)?;
        if !out.success() {
            bail!("nft list counter in {}: {}", self.ns.name, out.message());
        }
        parse_counter(&out.stdout)
            .with_context(|| format!("reading `nft -j list counter` in {}", self.ns.name))
    }

    pub fn remove(self) {
        let argv = ["nft", "delete", "table", "inet", TABLE];
        let _ = self.session.run(Some(&self.ns), &argv, NFT_TIMEOUT);
    }
}

/// `packets` and `bytes` from `nft -j list counter …`.
fn parse_counter(json: &str) -> anyhow::Result<(u64, u64)> {
    let v: Value = serde_json::from_str(json).context("not JSON")?;
    let counter = v
        .get("nftables")
        .and_then(Value::as_array)
        .and_then(|items| items.iter().find_map(|i| i.get("counter")))
        .context("no counter object")?;
    let field = |k: &str| {
        counter
            .get(k)
            .and_then(Value::as_u64)
            .with_context(|| format!("counter has no `{k}`"))
    };
    Ok((field("packets")?, field("bytes")?))
}

/// Datagrams of `payload` bytes in `packets` IP packets totalling `bytes`, each with
/// `header` bytes of IP + UDP header: a plain packet carries one datagram, a UDP
/// super-packet (one header, many payloads) several.
pub fn datagrams(packets: u64, bytes: u64, header: u64, payload: u64) -> u64 {
    bytes.saturating_sub(packets.saturating_mul(header)) / payload.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.9", "json_schema_version": 1}},
            {"counter": {"family": "inet", "name": "delivered", "table": "edgewire_bench",
             "handle": 1, "packets": 25965, "bytes": 98103344}}]}"#;
        assert_eq!(parse_counter(json).unwrap(), (25965, 98103344));
        assert!(parse_counter(r#"{"nftables": [{"metainfo": {}}]}"#).is_err());
        assert!(parse_counter(r#"{"nftables": [{"counter": {"packets": -1}}]}"#).is_err());
        assert!(parse_counter("Error: No such file or directory").is_err());
    }

    #[test]
    fn super_packets_and_plain_packets_count_the_same_datagrams() {
        // 369,138 plain 92-byte packets (64 B payload + 28 B IPv4/UDP headers).
        assert_eq!(datagrams(369_138, 369_138 * 92, 28, 64), 369_138);
        // The same as 60-datagram super-packets: one header each.
        let supers = 369_138 / 60;
        let bytes = supers * (28 + 60 * 64);
        assert_eq!(datagrams(supers, bytes, 28, 64), supers * 60);
        // Figures seen in a run: 25,965 packets, 98,103,344 bytes = iperf3's received
        // 892,898 + its socket's 628,607 drops.
        assert_eq!(datagrams(25_965, 98_103_344, 28, 64), 1_521_505);
        assert_eq!(datagrams(10, 5, 28, 64), 0);
        assert_eq!(datagrams(1, 100, 28, 0), 72);
    }
}
