//! Which routes wg-quick would add for a configuration, decided before anything changes.

use std::net::IpAddr;

use crate::config::{Config, Table};
use crate::route::IpNet;

/// A route to add: `ip route add NET dev IFACE [table T]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRoute {
    pub net: IpNet,
    /// `None` = the main table.
    pub table: Option<u32>,
}

/// wg-quick's rule: every peer's AllowedIPs, most specific first, unless `Table = off`;
/// prefixes that the interface's own addresses already route (the connected route of
/// `Address = 10.8.0.1/24` covers `AllowedIPs = 10.8.0.0/24`) are skipped.
///
/// A default route (`0.0.0.0/0`, `::/0`) with `Table = auto` needs wg-quick's fwmark policy
/// routing, which edgewire does not do: that is refused with advice instead of half-done.
pub fn plan(config: &Config) -> Result<Vec<PlannedRoute>, String> {
    let table = match config.interface.routing_table() {
        Table::Off => return Ok(Vec::new()),
        Table::Auto => None,
        Table::Id(n) => Some(n),
        Table::Name(name) => Some(table_id(&name)?),
    };
    let connected: Vec<IpNet> = config
        .interface
        .addresses
        .iter()
        .map(|a| a.network())
        .collect();
    let mut nets: Vec<IpNet> = config
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().map(|n| n.network()))
        .collect();
    nets.sort_by(|a, b| b.prefix().cmp(&a.prefix()).then(a.cmp(b)));
    nets.dedup();
    let mut out = Vec::new();
    for net in nets {
        if net.prefix() == 0 && table.is_none() {
            return Err(format!(
                "AllowedIPs {net} with Table = auto needs wg-quick's fwmark policy routing, which edgewire \
                 does not set up; use Table = off (and route yourself) or Table = <number>"
            ));
        }
        if table.is_none() && connected.contains(&net) {
            continue;
        }
        out.push(PlannedRoute { net, table });
    }
    Ok(out)
}

/// A table name from /etc/iproute2/rt_tables (plus the built-in ones).
fn table_id(name: &str) -> Result<u32, String> {
    match name {
        "main" => return Ok(254),
        "local" => return Ok(255),
        "default" => return Ok(253),
        _ => {}
    }
    for path in ["/etc/iproute2/rt_tables", "/usr/share/iproute2/rt_tables"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                if let (Some(id), Some(n)) = (parts.next(), parts.next()) {
                    if n == name && !id.starts_with('#') {
                        return id
                            .parse()
                            .map_err(|_| format!("table {name}: bad id {id} in {path}"));
                    }
                }
            }
        }
    }
    Err(format!(
        "Table = {name}: no such routing table in /etc/iproute2/rt_tables"
    ))
}

/// The endpoint addresses wg-quick's MTU rule looks at.
pub fn endpoint_ips(config: &Config) -> Vec<IpAddr> {
    config
        .peers
        .iter()
        .filter_map(|p| match &p.endpoint {
            Some(crate::config::Endpoint::Addr(a)) => Some(a.ip()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        crate::config::parse(text, Path::new("t.conf")).unwrap()
    }

    const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PEER: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    #[test]
    fn guide_shape_adds_no_extra_route() {
        let c = cfg(&format!(
            "[Interface]\nPrivateKey = {KEY}\nAddress = 10.8.0.1/24\n[Peer]\nPublicKey = {PEER}\nAllowedIPs = 10.8.0.0/24\n"
        ));
        assert_eq!(plan(&c).unwrap(), vec![]);
    }

    #[test]
    fn most_specific_first_and_tables() {
        let c = cfg(&format!(
            "[Interface]\nPrivateKey = {KEY}\nAddress = 10.8.0.1/24\nTable = 1234\n[Peer]\nPublicKey = {PEER}\nAllowedIPs = 10.0.0.0/8, 10.9.0.1/32, fd00::/64\n"
        ));
        let p = plan(&c).unwrap();
        assert_eq!(
            p.iter().map(|r| r.net.to_string()).collect::<Vec<_>>(),
            ["fd00::/64", "10.9.0.1/32", "10.0.0.0/8"]
        );
        assert!(p.iter().all(|r| r.table == Some(1234)));
    }

    #[test]
    fn default_route_with_auto_is_refused() {
        let c = cfg(&format!(
            "[Interface]\nPrivateKey = {KEY}\n[Peer]\nPublicKey = {PEER}\nAllowedIPs = 0.0.0.0/0\n"
        ));
        assert!(plan(&c).unwrap_err().contains("Table = off"));
        let c = cfg(&format!("[Interface]\nPrivateKey = {KEY}\nTable = off\n[Peer]\nPublicKey = {PEER}\nAllowedIPs = 0.0.0.0/0\n"));
        assert_eq!(plan(&c).unwrap(), vec![]);
    }
}
