//! wg-quick text → [`Config`], stopping at the first error with its `file:line`.
//!
//! The grammar is what `wg-quick` and `wg setconf` accept together:
//! - `[Interface]` (exactly one) and `[Peer]` (any number) sections, names in any case;
//! - `Key = Value` lines, keys in any case, whitespace around both ignored;
//! - `#` starts a comment anywhere on a line (as in wg-quick, also inside hook commands);
//! - blank lines; LF or CRLF line ends;
//! - `Address`, `DNS`, `AllowedIPs` take comma-separated lists and accumulate when repeated;
//!   hooks accumulate in order; every other key may appear once per section.
//!
//! Nothing here touches the host: host names are checked for form, not resolved.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::error::{ConfigError, ConfigErrorKind, Section};
use super::model::{Config, PeerConfig};
use super::value::{self, DnsEntry};
use crate::key::{KeyError, PresharedKey, PrivateKey, PublicKey};

/// Configuration files larger than this are refused unread.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Reads and parses a wg-quick file (at most [`MAX_FILE_SIZE`] bytes).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let whole = |kind| ConfigError {
        file: path.to_owned(),
        line: 0,
        kind,
    };
    let file = std::fs::File::open(path).map_err(|e| whole(ConfigErrorKind::Io(e)))?;
    let meta = file.metadata().map_err(|e| whole(ConfigErrorKind::Io(e)))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(whole(ConfigErrorKind::TooLarge(meta.len())));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o007 != 0 {
            tracing::warn!(file = %path.display(), "configuration file is world accessible");
        }
    }
    // `take` also bounds files that grow while being read and special files.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(ConfigErrorKind::Io(e)))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(whole(ConfigErrorKind::TooLarge(bytes.len() as u64)));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let bytes = e.as_bytes();
            let line = 1 + bytes[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            return Err(ConfigError {
                file: path.to_owned(),
                line,
                kind: ConfigErrorKind::NotUtf8,
            });
        }
    };
    parse(&text, path)
}

/// Parses wg-quick text; `file` only names the source in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let mut p = Parser::default();
    p.run(text).map_err(|(line, kind)| ConfigError {
        file: file.to_owned(),
        line,
        kind,
    })?;
    Ok(p.config)
}

/// An error and the line it belongs to (0: the whole file).
type Located = (usize, ConfigErrorKind);

/// Every key (field) the format knows: its spelling in messages, its section, and whether it may
/// repeat (lists and hooks accumulate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PrivateKey,
    Address,
    ListenPort,
    Mtu,
    Dns,
    Table,
    FwMark,
    PreUp,
    PostUp,
    PreDown,
    PostDown,
    SaveConfig,
    PublicKey,
    PresharedKey,
    Endpoint,
    AllowedIps,
    PersistentKeepalive,
}

const KEYS: [(Field, &str, Section); 17] = [
    (Field::PrivateKey, "PrivateKey", Section::Interface),
    (Field::Address, "Address", Section::Interface),
    (Field::ListenPort, "ListenPort", Section::Interface),
    (Field::Mtu, "MTU", Section::Interface),
    (Field::Dns, "DNS", Section::Interface),
    (Field::Table, "Table", Section::Interface),
    (Field::FwMark, "FwMark", Section::Interface),
    (Field::PreUp, "PreUp", Section::Interface),
    (Field::PostUp, "PostUp", Section::Interface),
    (Field::PreDown, "PreDown", Section::Interface),
    (Field::PostDown, "PostDown", Section::Interface),
    (Field::SaveConfig, "SaveConfig", Section::Interface),
    (Field::PublicKey, "PublicKey", Section::Peer),
    (Field::PresharedKey, "PresharedKey", Section::Peer),
    (Field::Endpoint, "Endpoint", Section::Peer),
    (Field::AllowedIps, "AllowedIPs", Section::Peer),
    (
        Field::PersistentKeepalive,
        "PersistentKeepalive",
        Section::Peer,
    ),
];

impl Field {
    fn lookup(name: &str) -> Option<(Field, &'static str, Section)> {
        KEYS.iter()
            .copied()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
    }

    fn repeats(self) -> bool {
        matches!(
            self,
            Field::Address
                | Field::Dns
                | Field::AllowedIps
                | Field::PreUp
                | Field::PostUp
                | Field::PreDown
                | Field::PostDown
        )
    }
}

/// A `[Peer]` being read; it becomes a [`PeerConfig`] when its section ends.
struct PeerDraft {
    line: usize,
    public_key: Option<PublicKey>,
    peer: PeerConfig,
}

#[derive(Default)]
struct Parser {
    config: Config,
    section: Option<Section>,
    interface_line: Option<usize>,
    /// Single-valued keys seen in the current section, with their line.
    seen: HashMap<&'static str, usize>,
    peer: Option<PeerDraft>,
    /// Public key → (its `[Peer]` line, its `PublicKey` line).
    peer_lines: HashMap<PublicKey, (usize, usize)>,
    mtu_line: usize,
    first_ipv6_line: Option<usize>,
}

/// A key name as it may appear in a message: letters and digits only, short. Anything
/// else (such as a base64 key pasted on its own line, whose `=` padding looks like a
/// separator) is reported without being echoed.
fn is_key_name(k: &str) -> bool {
    !k.is_empty() && k.len() <= 32 && k.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Comma-separated entries, trimmed; an empty entry is an error.
fn list<'v>(key: &'static str, v: &'v str) -> Result<Vec<&'v str>, ConfigErrorKind> {
    let items: Vec<&str> = v.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(ConfigErrorKind::EmptyListEntry(key));
    }
    Ok(items)
}

fn key_err(key: &'static str) -> impl Fn(KeyError) -> ConfigErrorKind {
    move |reason| ConfigErrorKind::BadKey { key, reason }
}

impl Parser {
    fn run(&mut self, text: &str) -> Result<(), Located> {
        for (index, raw) in text.split('\n').enumerate() {
            let n = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let line = line
                .split_once('#')
                .map_or(line, |(before, _)| before)
                .trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                self.start_section(line, n)?;
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .ok_or((n, ConfigErrorKind::NotKeyValue))?;
            let (name, value) = (name.trim(), value.trim());
            if !is_key_name(name) {
                return Err((n, ConfigErrorKind::NotKeyValue));
            }
            self.key_value(name, value, n).map_err(|kind| (n, kind))?;
        }
        self.finish_peer()?;
        self.finish_file()
    }

    fn start_section(&mut self, header: &str, n: usize) -> Result<(), Located> {
        self.finish_peer()?;
        self.seen.clear();
        let name = header
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map(str::trim);
        match name {
            Some(s) if s.eq_ignore_ascii_case("Interface") => {
                if let Some(first_line) = self.interface_line {
                    return Err((n, ConfigErrorKind::SecondInterface { first_line }));
                }
                self.interface_line = Some(n);
                self.section = Some(Section::Interface);
            }
            Some(s) if s.eq_ignore_ascii_case("Peer") => {
                let peer = PeerConfig::new(PublicKey::default());
                self.peer = Some(PeerDraft {
                    line: n,
                    public_key: None,
                    peer,
                });
                self.section = Some(Section::Peer);
            }
            _ => {
                return Err((
                    n,
                    ConfigErrorKind::UnknownSection(super::error::shown(header)),
                ))
            }
        }
        Ok(())
    }

    fn finish_peer(&mut self) -> Result<(), Located> {
        if let Some(draft) = self.peer.take() {
            let public_key = draft
                .public_key
                .ok_or((draft.line, ConfigErrorKind::MissingPublicKey))?;
            self.config.peers.push(PeerConfig {
                public_key,
                ..draft.peer
            });
        }
        Ok(())
    }

    fn finish_file(&mut self) -> Result<(), Located> {
        let interface_line = self
            .interface_line
            .ok_or((0, ConfigErrorKind::MissingInterface))?;
        if self.config.interface.private_key.is_none() {
            return Err((0, ConfigErrorKind::MissingPrivateKey { interface_line }));
        }
        if let (Some(mtu), Some(v6_line)) = (self.config.interface.mtu, self.first_ipv6_line) {
            if mtu < value::MIN_MTU_IPV6 {
                let reason = format!(
                    "an interface with an IPv6 address (line {v6_line}) needs an MTU of at least {}",
                    value::MIN_MTU_IPV6
                );
                return Err((
                    self.mtu_line,
                    ConfigErrorKind::BadMtu {
                        value: mtu.to_string(),
                        reason,
                    },
                ));
            }
        }
        Ok(())
    }

    fn key_value(&mut self, name: &str, v: &str, n: usize) -> Result<(), ConfigErrorKind> {
        let Some(section) = self.section else {
            return Err(ConfigErrorKind::OutsideSection(name.to_owned()));
        };
        let Some((key, canonical, belongs)) = Field::lookup(name) else {
            return Err(ConfigErrorKind::UnknownKey {
                key: name.to_owned(),
                section,
            });
        };
        if belongs != section {
            return Err(ConfigErrorKind::WrongSection {
                key: canonical,
                section,
                belongs,
            });
        }
        if v.is_empty() && key != Field::AllowedIps {
            return Err(ConfigErrorKind::EmptyValue(canonical));
        }
        if !key.repeats() {
            if let Some(&first_line) = self.seen.get(canonical) {
                return Err(ConfigErrorKind::DuplicateKey {
                    key: canonical,
                    first_line,
                });
            }
            self.seen.insert(canonical, n);
        }
        match section {
            Section::Interface => self.interface_key(key, canonical, v, n),
            Section::Peer => self.peer_key(key, canonical, v, n),
        }
    }

    fn interface_key(
        &mut self,
        key: Field,
        name: &'static str,
        v: &str,
        n: usize,
    ) -> Result<(), ConfigErrorKind> {
        let iface = &mut self.config.interface;
        match key {
            Field::PrivateKey => {
                iface.private_key = Some(PrivateKey::from_base64(v).map_err(key_err(name))?)
            }
            Field::Address => {
                for item in list(name, v)? {
                    let net = value::ip_net(name, item)?;
                    if !net.is_ipv4() && self.first_ipv6_line.is_none() {
                        self.first_ipv6_line = Some(n);
                    }
                    iface.addresses.push(net);
                }
            }
            Field::ListenPort => iface.listen_port = Some(value::listen_port(v)?),
            Field::Mtu => {
                iface.mtu = Some(value::mtu(v)?);
                self.mtu_line = n;
            }
            Field::Dns => {
                for item in list(name, v)? {
                    match value::dns_entry(item)? {
                        DnsEntry::Server(ip) => iface.dns.push(ip),
                        DnsEntry::Search(domain) => iface.dns_search.push(domain),
                    }
                }
            }
            Field::Table => iface.table = Some(value::table(v)?),
            Field::FwMark => iface.fwmark = value::fwmark(v)?,
            Field::PreUp => iface.pre_up.push(v.to_owned()),
            Field::PostUp => iface.post_up.push(v.to_owned()),
            Field::PreDown => iface.pre_down.push(v.to_owned()),
            Field::PostDown => iface.post_down.push(v.to_owned()),
            Field::SaveConfig => iface.save_config = value::boolean(name, v)?,
            _ => unreachable!("peer keys are routed to peer_key"),
        }
        Ok(())
    }

    fn peer_key(
        &mut self,
        key: Field,
        name: &'static str,
        v: &str,
        n: usize,
    ) -> Result<(), ConfigErrorKind> {
        let Some(draft) = self.peer.as_mut() else {
            unreachable!("a [Peer] section always has a draft");
        };
        match key {
            Field::PublicKey => {
                let pk = PublicKey::from_base64(v).map_err(key_err(name))?;
                if let Some(&(first_line, first_key_line)) = self.peer_lines.get(&pk) {
                    return Err(ConfigErrorKind::DuplicatePeer {
                        first_line,
                        first_key_line,
                    });
                }
                self.peer_lines.insert(pk, (draft.line, n));
                draft.public_key = Some(pk);
            }
            Field::PresharedKey => {
                draft.peer.preshared_key =
                    Some(PresharedKey::from_base64(v).map_err(key_err(name))?)
            }
            Field::Endpoint => draft.peer.endpoint = Some(value::endpoint(v)?),
            Field::AllowedIps => {
                if !v.is_empty() {
                    for item in list(name, v)? {
                        draft.peer.allowed_ips.push(value::ip_net(name, item)?);
                    }
                }
            }
            Field::PersistentKeepalive => draft.peer.persistent_keepalive = value::keepalive(v)?,
            _ => unreachable!("interface keys are routed to interface_key"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::*;
    use crate::config::model::Endpoint;

    // Real key pairs from `wg genkey | tee /dev/stderr | wg pubkey` (wireguard-tools).
    const HUB_PRIV: &str = "KDwmQRhwJ7MmR8BnatE6wLaT85ZUVX8gp7uBoCqC5nM=";
    const HUB_PUB: &str = "uU3bw+plGp56BMmPbPgJAPCk/KHeiuKDfjSanYHMcT0=";
    const GW_PRIV: &str = "MHhJn1UZeLmlb0I/7bKUKTr3Gc/kjpRQi8JAqbhhr2k=";
    const GW_PUB: &str = "+Emc+thg4/vW2lIiz0G7A7ZWlLrgsjkPByKrffPC2jk=";
    const GW2_PUB: &str = "LOl9Ba8YThKw9aJLZa59g6scJEjHMglW70BDDy6AA0c=";
    const PSK: &str = "giuAH7vIOJEw9l3VFO053QL+fNT8J3v4pFtbIUi3+Sw=";
    const SECRETS: [&str; 3] = [HUB_PRIV, GW_PRIV, PSK];

    fn ok(text: &str) -> Config {
        parse(text, Path::new("test.conf")).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
    }

    fn net(s: &str) -> crate::route::IpNet {
        s.parse().expect("test prefix")
    }

    fn pubkey(s: &str) -> PublicKey {
        PublicKey::from_base64(s).expect("test key")
    }

    #[test]
    fn test_keys_are_real_pairs() {
        for (private, public) in [(HUB_PRIV, HUB_PUB), (GW_PRIV, GW_PUB)] {
            assert_eq!(
                PrivateKey::from_base64(private)
                    .expect("key")
                    .public_key()
                    .to_base64(),
                public
            );
        }
    }

    fn hub() -> String {
        format!(
            "[Interface]\nPrivateKey = {HUB_PRIV}\nAddress = 10.8.0.1/24\nListenPort = 51820\nSaveConfig = true\n\n\
             [Peer]\nPublicKey = {GW_PUB}\nAllowedIPs = 10.8.0.2/32\n\n\
             [Peer]\nPublicKey = {GW2_PUB}\nAllowedIPs = 10.8.0.3/32\n"
        )
    }

    fn gateway() -> String {
        format!(
            "[Interface]\nPrivateKey = {GW_PRIV}\nAddress = 10.8.0.2/24\n\n\
             [Peer]\nPublicKey = {HUB_PUB}\nEndpoint = 198.18.0.1:51820\nAllowedIPs = 10.8.0.0/24\nPersistentKeepAlive = 21\n"
        )
    }

    fn many_peers(n: u8) -> String {
        let mut s = format!(
            "[Interface]\nPrivateKey = {HUB_PRIV}\nAddress = 10.8.0.1/24\nListenPort = 51820\n"
        );
        for i in 1..=n {
            let key = PublicKey([i; 32]).to_base64();
            s += &format!(
                "\n[Peer]\n# gateway {i}\nPublicKey = {key}\nAllowedIPs = 10.8.0.{}/32\n",
                u16::from(i) + 1
            );
        }
        s
    }

    type Check = fn(&Config);

    fn good_configs() -> Vec<(&'static str, String, Check)> {
        vec![
            ("hub", hub(), |c| {
                let i = &c.interface;
                assert_eq!(i.private_key.map(|k| k.to_base64()).as_deref(), Some(HUB_PRIV));
                assert_eq!(i.addresses, [net("10.8.0.1/24")]);
                assert_eq!(i.listen_port, Some(51820));
                assert!(i.save_config);
                assert_eq!(c.peers.len(), 2);
                assert_eq!(c.peers[0].public_key, pubkey(GW_PUB));
                assert_eq!(c.peers[1].allowed_ips, [net("10.8.0.3/32")]);
            }),
            ("gateway", gateway(), |c| {
                let p = &c.peers[0];
                assert_eq!(p.public_key, pubkey(HUB_PUB));
                assert_eq!(p.endpoint, Some(Endpoint::Addr("198.18.0.1:51820".parse().expect("addr"))));
                assert_eq!(p.allowed_ips, [net("10.8.0.0/24")]);
                assert_eq!(p.persistent_keepalive, Some(21));
                assert_eq!(c.interface.listen_port, None);
                assert!(!c.interface.save_config);
            }),
            ("gateway with hostname", gateway().replace("198.18.0.1:51820", "hub.example.com:51820"), |c| {
                assert_eq!(c.peers[0].endpoint, Some(Endpoint::Host("hub.example.com".into(), 51820)));
            }),
            ("many peers", many_peers(200), |c| {
                assert_eq!(c.peers.len(), 200);
                assert_eq!(c.peers[199].public_key, PublicKey([200; 32]));
                assert_eq!(c.peers[199].allowed_ips, [net("10.8.0.201/32")]);
            }),
            (
                "IPv6",
                format!(
                    "[Interface]\nPrivateKey = {GW_PRIV}\nAddress = 10.8.0.2/24, fd00:8::2/64\nMTU = 1420\n\
                     [Peer]\nPublicKey = {HUB_PUB}\nEndpoint = [fd00::1]:51820\nAllowedIPs = 0.0.0.0/0, ::/0\n"
                ),
                |c| {
                    assert_eq!(c.interface.addresses, [net("10.8.0.2/24"), net("fd00:8::2/64")]);
                    assert_eq!(c.interface.mtu, Some(1420));
                    let want: SocketAddr = "[fd00::1]:51820".parse().expect("addr");
                    assert_eq!(c.peers[0].endpoint, Some(Endpoint::Addr(want)));
                    assert_eq!(c.peers[0].allowed_ips, [net("0.0.0.0/0"), net("::/0")]);
                },
            ),
            (
                "case, whitespace, comments, CRLF",
                format!(
                    "# wg0 on the hub\r\n\r\n  [interface]  # trailing\r\nprivatekey={HUB_PRIV}\r\n\tADDRESS\t=\t10.8.0.1/24 # hub\r\n\
                     listenPORT = 51820\r\n[PEER]\r\npublickey = {GW_PUB}   \r\npresharedKEY = {PSK}\r\nallowedips=10.8.0.2/32\r\n\
                     persistentkeepalive = off\r\n"
                ),
                |c| {
                    assert_eq!(c.interface.addresses, [net("10.8.0.1/24")]);
                    assert_eq!(c.peers[0].preshared_key.map(|k| k.to_base64()).as_deref(), Some(PSK));
                    assert_eq!(c.peers[0].persistent_keepalive, None);
                },
            ),
            (
                "wg-quick keys and accumulation",
                format!(
                    "[Interface]\nPrivateKey = {HUB_PRIV}\nAddress = 10.8.0.1/24\nAddress = fd00:8::1/64,10.9.0.1\n\
                     DNS = 1.1.1.1, 2606:4700::1111, corp.example\nDNS = 9.9.9.9\nTable = OFF\nFwMark = 0x1234\n\
                     PreUp = echo pre\nPostUp = iptables -A FORWARD -i %i -j ACCEPT; sysctl -w net.ipv4.ip_forward=1\n\
                     PostUp = echo second\nPreDown = echo down\nPostDown = echo gone\nSaveConfig = False\n\
                     [Peer]\nPublicKey = {GW_PUB}\nAllowedIPs = 10.8.0.2/32\nAllowedIPs = 192.168.50.0/24\nAllowedIPs =\n"
                ),
                |c| {
                    let i = &c.interface;
                    assert_eq!(i.addresses, [net("10.8.0.1/24"), net("fd00:8::1/64"), net("10.9.0.1/32")]);
                    let dns: Vec<IpAddr> = ["1.1.1.1", "2606:4700::1111", "9.9.9.9"].map(|s| s.parse().expect("ip")).into();
                    assert_eq!(i.dns, dns);
                    assert_eq!(i.dns_search, ["corp.example"]);
                    assert_eq!(i.table.as_deref(), Some("off"));
                    assert_eq!(i.fwmark, Some(0x1234));
                    assert_eq!(i.pre_up, ["echo pre"]);
                    assert_eq!(
                        i.post_up,
                        ["iptables -A FORWARD -i %i -j ACCEPT; sysctl -w net.ipv4.ip_forward=1", "echo second"]
                    );
                    assert_eq!((i.pre_down.len(), i.post_down.len()), (1, 1));
                    assert!(!i.save_config);
                    assert_eq!(c.peers[0].allowed_ips, [net("10.8.0.2/32"), net("192.168.50.0/24")]);
                },
            ),
            (
                "numbers at their limits",
                format!(
                    "[Interface]\nPrivateKey = {HUB_PRIV}\nListenPort = 0\nMTU = 576\nTable = 4294967295\nFwMark = 4294967295\n\
                     [Peer]\nPublicKey = {GW_PUB}\nEndpoint = gw-1.example.:65535\nPersistentKeepalive = 65535\n\
                     [Peer]\nPublicKey = {GW2_PUB}\nEndpoint = localhost:1\nPersistentKeepalive = 0\n"
                ),
                |c| {
                    assert_eq!(c.interface.listen_port, Some(0));
                    assert_eq!(c.interface.mtu, Some(576));
                    assert_eq!(c.interface.table.as_deref(), Some("4294967295"));
                    assert_eq!(c.interface.fwmark, Some(u32::MAX));
                    assert_eq!(c.peers[0].endpoint, Some(Endpoint::Host("gw-1.example.".into(), 65535)));
                    assert_eq!(c.peers[0].persistent_keepalive, Some(65535));
                    assert_eq!(c.peers[1].persistent_keepalive, Some(0));
                },
            ),
            (
                "named table, mark off, no peers",
                format!("[Interface]\nPrivateKey = {HUB_PRIV}\nTable = main\nFwMark = off\nMTU = 65535\n"),
                |c| {
                    assert_eq!(c.interface.table.as_deref(), Some("main"));
                    assert_eq!(c.interface.fwmark, None);
                    assert!(c.peers.is_empty());
                },
            ),
        ]
    }

    #[test]
    fn good_configs_parse() {
        for (name, text, check) in good_configs() {
            eprintln!("case: {name}");
            check(&ok(&text));
        }
    }

    #[test]
    fn writer_round_trips() {
        for (name, text, check) in good_configs() {
            let first = ok(&text);
            let written = first.to_conf_string();
            let second = parse(&written, Path::new("written.conf"))
                .unwrap_or_else(|e| panic!("{name}: {e}\n{written}"));
            assert_eq!(first, second, "{name}\n{written}");
            check(&second);
        }
        // The hub as SaveConfig would write it.
        let expected = format!(
            "[Interface]\nPrivateKey = {HUB_PRIV}\nListenPort = 51820\nAddress = 10.8.0.1/24\nSaveConfig = true\n\n\
             [Peer]\nPublicKey = {GW_PUB}\nAllowedIPs = 10.8.0.2/32\n\n[Peer]\nPublicKey = {GW2_PUB}\nAllowedIPs = 10.8.0.3/32\n"
        );
        assert_eq!(ok(&hub()).to_string(), expected);
    }

    const IFACE: &str = "[Interface]\nPrivateKey = KDwmQRhwJ7MmR8BnatE6wLaT85ZUVX8gp7uBoCqC5nM=\n";
    const PEER: &str = "[Peer]\nPublicKey = +Emc+thg4/vW2lIiz0G7A7ZWlLrgsjkPByKrffPC2jk=\n";

    /// (case, text, line, substring of the message). Lines 1-2 are [`IFACE`], 3-4 [`PEER`].
    #[rustfmt::skip]
    fn bad_configs() -> Vec<(&'static str, String, usize, &'static str)> {
        let i = |rest: &str| format!("{IFACE}{rest}");
        let p = |rest: &str| format!("{IFACE}{PEER}{rest}");
        vec![
            ("unknown key", i("Foo = 1\n"), 3, "unknown key `Foo` in [Interface]"),
            ("unknown peer key", p("PersistentKeepalives = 5\n"), 5, "unknown key `PersistentKeepalives` in [Peer]"),
            ("key in the wrong section", p("ListenPort = 51820\n"), 5, "`ListenPort` belongs in [Interface], not in [Peer]"),
            ("bad base64 private key", "[Interface]\nPrivateKey = notbase64\n".into(), 2, "PrivateKey is not a valid key: key is not valid base64"),
            ("bad base64 public key", format!("{IFACE}[Peer]\nPublicKey = {}\n", "!".repeat(44)), 4, "PublicKey is not a valid key"),
            ("short key", format!("{IFACE}[Peer]\nPublicKey = {}\n", "A".repeat(42) + "=="), 4, "key has 31 bytes, expected 32"),
            ("bad preshared key", p("PresharedKey = abc=\n"), 5, "PresharedKey is not a valid key"),
            ("bad CIDR prefix", p("AllowedIPs = 10.8.0.0/24, 10.9.0.0/33\n"), 5, "AllowedIPs: `10.9.0.0/33` is not a valid IP prefix"),
            ("bad CIDR address", i("Address = 10.8.0.300/24\n"), 3, "Address: `10.8.0.300/24` is not a valid IP prefix: not an IP address"),
            ("bad CIDR v6 prefix", p("AllowedIPs = ::/129\n"), 5, "`::/129` is not a valid IP prefix"),
            ("empty list entry", p("AllowedIPs = 10.8.0.0/24,,\n"), 5, "`AllowedIPs` has an empty entry"),
            ("duplicate peer", format!("{IFACE}{PEER}AllowedIPs = 10.8.0.2/32\n{PEER}"), 7, "duplicate [Peer]: the [Peer] at line 3 already has this PublicKey (line 4)"),
            ("missing PrivateKey", "[Interface]\nAddress = 10.8.0.1/24\n".into(), 0, "the [Interface] section at line 1 has no PrivateKey"),
            ("missing [Interface]", PEER.into(), 0, "there is no [Interface] section"),
            ("second [Interface]", format!("{IFACE}{IFACE}"), 3, "a second [Interface] section (the first is at line 1)"),
            ("missing PublicKey, last peer", p("[Peer]\nAllowedIPs = 10.8.0.3/32\n"), 5, "this [Peer] has no PublicKey"),
            ("missing PublicKey, next section", i("[Peer]\nEndpoint = 198.18.0.1:51820\n[Peer]\n"), 3, "this [Peer] has no PublicKey"),
            ("bad ListenPort", i("ListenPort = 65536\n"), 3, "ListenPort: `65536` is not a valid port (expected 0-65535)"),
            ("signed ListenPort", i("ListenPort = +80\n"), 3, "is not a valid port"),
            ("endpoint port 0", p("Endpoint = 198.18.0.1:0\n"), 5, "Endpoint: `198.18.0.1:0` is not a valid port (expected 1-65535)"),
            ("endpoint port too big", p("Endpoint = [fd00::1]:65536\n"), 5, "is not a valid port (expected 1-65535)"),
            ("endpoint without port", p("Endpoint = 198.18.0.1\n"), 5, "no port"),
            ("endpoint with empty port", p("Endpoint = hub.example:\n"), 5, "is not a valid port"),
            ("unbracketed IPv6 endpoint", p("Endpoint = fd00::1:51820\n"), 5, "must be in brackets"),
            ("bad bracketed endpoint", p("Endpoint = [fd00::zz]:51820\n"), 5, "not an IPv6 address"),
            ("bad host name", p("Endpoint = -hub.example:51820\n"), 5, "cannot start or end with '-'"),
            ("host name with underscore", p("Endpoint = hub_1.example:51820\n"), 5, "only letters, digits"),
            ("mistyped IPv4 endpoint", p("Endpoint = 198.18.0.256:51820\n"), 5, "not a valid IPv4 address"),
            ("MTU too small", i("MTU = 575\n"), 3, "MTU: `575` is invalid: must be between 576 and 65535"),
            ("MTU too big", i("MTU = 65536\n"), 3, "must be between 576 and 65535"),
            ("MTU not a number", i("MTU = auto\n"), 3, "not a number"),
            ("MTU too small for IPv6", i("MTU = 1000\nAddress = 10.8.0.1/24\nAddress = fd00::1/64\n"), 3, "IPv6 address (line 5) needs an MTU of at least 1280"),
            ("key given twice", i("ListenPort = 51820\nMTU = 1420\nListenPort = 51821\n"), 5, "`ListenPort` is given twice in this section (first at line 3)"),
            ("PrivateKey given twice", format!("{IFACE}PrivateKey = {GW_PRIV}\n"), 3, "`PrivateKey` is given twice"),
            ("Endpoint given twice", p("Endpoint = 198.18.0.1:51820\nendpoint = 198.18.0.2:51820\n"), 6, "`Endpoint` is given twice in this section (first at line 5)"),
            ("key outside a section", "ListenPort = 51820\n[Interface]\n".into(), 1, "`ListenPort` appears before any [Interface] or [Peer] section"),
            ("unknown section", i("[Peers]\n"), 3, "unknown section `[Peers]`"),
            ("unclosed section", i("[Peer\n"), 3, "unknown section `[Peer`"),
            ("not key = value", i("just some words\n"), 3, "expected `Key = Value`"),
            ("empty value", p("Endpoint =\n"), 5, "`Endpoint` has no value"),
            ("bad Table zero", i("Table = 0\n"), 3, "Table: `0` is invalid"),
            ("bad Table too big", i("Table = 4294967296\n"), 3, "Table: `4294967296` is invalid"),
            ("bad Table name", i("Table = my table\n"), 3, "Table: `my table` is invalid"),
            ("bad FwMark", i("FwMark = 0x1ffffffff\n"), 3, "FwMark: `0x1ffffffff` is invalid"),
            ("bad FwMark empty hex", i("FwMark = 0x\n"), 3, "FwMark: `0x` is invalid"),
            ("bad SaveConfig", i("SaveConfig = yes\n"), 3, "SaveConfig: `yes` is invalid (expected `true` or `false`)"),
            ("bad keepalive", p("PersistentKeepalive = 65536\n"), 5, "PersistentKeepalive: `65536` is invalid"),
            ("bad DNS address", i("DNS = 1.1.1\n"), 3, "DNS: `1.1.1` is invalid"),
            ("bad DNS v6", i("DNS = 2606:4700::zz\n"), 3, "DNS: `2606:4700::zz` is invalid"),
            ("CRLF keeps line numbers", "[Interface]\r\n\r\nPrivateKey = x\r\n".into(), 3, "PrivateKey is not a valid key"),
        ]
    }

    #[test]
    fn bad_configs_name_file_line_and_problem() {
        for (name, text, line, needle) in bad_configs() {
            let e = match parse(&text, Path::new("/etc/wireguard/wg0.conf")) {
                Ok(_) => panic!("{name}: accepted\n{text}"),
                Err(e) => e,
            };
            let msg = e.to_string();
            eprintln!("{name}: {msg}");
            let prefix = if line == 0 {
                "/etc/wireguard/wg0.conf: ".to_owned()
            } else {
                format!("/etc/wireguard/wg0.conf:{line}: ")
            };
            assert!(
                msg.starts_with(&prefix),
                "{name}: want prefix {prefix:?}, got {msg:?}"
            );
            assert_eq!(e.line, line, "{name}: {msg}");
            assert!(msg.contains(needle), "{name}: want {needle:?} in {msg:?}");
            for secret in SECRETS {
                assert!(
                    !msg.contains(secret) && !msg.contains(&secret[..20]),
                    "{name}: key material in {msg:?}"
                );
            }
        }
    }

    #[test]
    fn key_material_never_reaches_a_message() {
        let cases = [
            format!("[Interface]\n{HUB_PRIV}\n"),
            format!("[Interface]\nPrivateKey = {HUB_PRIV}x\n"),
            format!("[Interface]\nPrivateKey = {HUB_PRIV}\n[Peer]\nPublicKey = {HUB_PUB}\nEndpoint = {PSK}\n"),
            format!("[Interface]\nPrivateKey = {HUB_PRIV}\n[Peer]\nPublicKey = {HUB_PUB}\nAllowedIPs = {GW_PRIV}\n"),
            format!("[Interface]\nPrivateKey = {HUB_PRIV}\nDNS = {PSK}\n"),
            format!("[Interface]\nPrivateKey = {HUB_PRIV}\n[{PSK}]\n"),
            format!("{}\n[Interface]\n", &PSK[..43]),
        ];
        for text in cases {
            let msg = parse(&text, Path::new("k.conf"))
                .expect_err("must be refused")
                .to_string();
            for secret in SECRETS {
                assert!(!msg.contains(&secret[..20]), "key material in {msg:?}");
            }
        }
    }

    #[test]
    fn load_reads_files_and_refuses_bad_ones() {
        let dir = std::env::temp_dir().join(format!("edgewire-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");

        let good = dir.join("wg0.conf");
        std::fs::write(&good, gateway()).expect("write");
        assert_eq!(load(&good).expect("load"), ok(&gateway()));

        let missing = dir.join("nope.conf");
        let e = load(&missing).expect_err("missing file");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read the file", missing.display())),
            "{e}"
        );

        let big = dir.join("big.conf");
        let mut text = IFACE.to_owned();
        text.push_str(&"#".repeat(MAX_FILE_SIZE as usize));
        std::fs::write(&big, text).expect("write");
        let e = load(&big).expect_err("too large");
        assert!(matches!(e.kind, ConfigErrorKind::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("limited to 1 MiB"), "{e}");

        let binary = dir.join("bin.conf");
        std::fs::write(&binary, b"[Interface]\n# caf\xe9\n").expect("write");
        let e = load(&binary).expect_err("not UTF-8");
        assert_eq!(
            (e.line, e.to_string()),
            (
                2,
                format!("{}:2: the line is not valid UTF-8", binary.display())
            )
        );

        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
