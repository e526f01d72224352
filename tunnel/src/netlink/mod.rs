//! Interface addresses, routes, MTU and link state over rtnetlink.
//!
//! Raw NETLINK_ROUTE messages (msg.rs), synchronous: every call opens a socket in the
//! calling thread's network namespace, sends one request and waits for the kernel's answer
//! (5 s timeout). The rtnetlink crate was not used: it is async (a runtime per call or a
//! background task), its API changed in every release (0.14 → 0.24), and `ip route get`
//! (needed for wg-quick's MTU rule) is not one of its requests anyway; the handful of
//! messages here are ~150 lines and carry the kernel's errno unchanged.
//!
//! Errors name the interface, the prefix/value and the errno text from the kernel.

mod msg;
#[cfg(test)]
pub(crate) mod testns;

use std::io;
use std::net::IpAddr;

use msg::*;

use crate::route::IpNet;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("interface '{0}' does not exist")]
    NoSuchLink(String),
    #[error("{what} on interface '{ifname}': {source}")]
    Op {
        what: String,
        ifname: String,
        source: io::Error,
    },
}

impl NetlinkError {
    /// The kernel's errno, if the kernel refused (e.g. `libc::EEXIST` for a route that is
    /// already there).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::NoSuchLink(_) => Some(libc::ENODEV),
            NetlinkError::Op { source, .. } => source.raw_os_error(),
        }
    }
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

fn op_err(what: impl Into<String>, ifname: &str) -> impl FnOnce(io::Error) -> NetlinkError + '_ {
    let what = what.into();
    move |source| NetlinkError::Op {
        what,
        ifname: ifname.to_owned(),
        source,
    }
}

fn family(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A link's index and MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    index: u32,
    mtu: u32,
}

fn parse_link(r: &Reply) -> Option<Link> {
    let index = attr_u32(r.payload.get(4..8)?)?;
    let mtu = attrs(r.payload.get(16..)?)
        .find(|(k, _)| *k == IFLA_MTU)
        .and_then(|(_, d)| attr_u32(d))?;
    Some(Link { index, mtu })
}

fn get_link(ifname: &str) -> Result<Link> {
    if ifname.is_empty() || ifname.len() > 15 {
        return Err(NetlinkError::NoSuchLink(ifname.to_owned()));
    }
    let req = Request::new(RTM_GETLINK, 0)
        .ifinfo(0, 0, 0)
        .attr_str(IFLA_IFNAME, ifname);
    match exchange(req) {
        Ok(replies) => replies
            .iter()
            .filter(|r| r.msg_type == RTM_NEWLINK)
            .find_map(parse_link)
            .ok_or_else(|| NetlinkError::NoSuchLink(ifname.to_owned())),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
            Err(NetlinkError::NoSuchLink(ifname.to_owned()))
        }
        Err(e) => Err(op_err("looking up", ifname)(e)),
    }
}

fn get_link_by_index(index: u32) -> io::Result<Link> {
    let replies = exchange(Request::new(RTM_GETLINK, 0).ifinfo(index, 0, 0))?;
    replies
        .iter()
        .find_map(parse_link)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no link in the reply"))
}

/// `ip link show IFNAME` succeeds.
pub fn link_exists(ifname: &str) -> Result<bool> {
    match get_link(ifname) {
        Ok(_) => Ok(true),
        Err(NetlinkError::NoSuchLink(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The interface's current MTU.
pub fn link_mtu(ifname: &str) -> Result<u32> {
    Ok(get_link(ifname)?.mtu)
}

/// `ip address add NET dev IFNAME` (host bits kept: `10.8.0.1/24` is address 10.8.0.1 with
/// the kernel's prefix route 10.8.0.0/24).
pub fn add_address(ifname: &str, net: IpNet) -> Result<()> {
    let link = get_link(ifname)?;
    let ip = net.addr();
    let bytes = ip_bytes(&ip);
    let mut req = Request::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        .ifaddr(family(&ip), net.prefix(), link.index)
        .attr(IFA_LOCAL, &bytes);
    req = req.attr(IFA_ADDRESS, &bytes);
    exchange(req)
        .map(drop)
        .map_err(op_err(format!("adding address {net}"), ifname))
}

/// `ip link set dev IFNAME mtu MTU`.
pub fn set_mtu(ifname: &str, mtu: u32) -> Result<()> {
    let link = get_link(ifname)?;
    let req = Request::new(RTM_NEWLINK, NLM_F_ACK)
        .ifinfo(link.index, 0, 0)
        .attr_u32(IFLA_MTU, mtu);
    exchange(req)
        .map(drop)
        .map_err(op_err(format!("setting MTU {mtu}"), ifname))
}

/// `ip link set dev IFNAME up`.
pub fn set_up(ifname: &str) -> Result<()> {
    set_flags(ifname, libc::IFF_UP as u32, "bringing up")
}

/// `ip link set dev IFNAME down`.
pub fn set_down(ifname: &str) -> Result<()> {
    set_flags(ifname, 0, "bringing down")
}

fn set_flags(ifname: &str, flags: u32, what: &str) -> Result<()> {
    let link = get_link(ifname)?;
    let req = Request::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(link.index, flags, libc::IFF_UP as u32);
    exchange(req).map(drop).map_err(op_err(what, ifname))
}

/// `ip link del IFNAME`.
pub fn delete_link(ifname: &str) -> Result<()> {
    let link = get_link(ifname)?;
    let req = Request::new(RTM_DELLINK, NLM_F_ACK).ifinfo(link.index, 0, 0);
    exchange(req).map(drop).map_err(op_err("deleting", ifname))
}

fn route_request(
    msg_type: u16,
    flags: u16,
    ifname: &str,
    net: IpNet,
    table: Option<u32>,
) -> Result<Request> {
    let link = get_link(ifname)?;
    let dst = net.network();
    let table = table.unwrap_or(RT_TABLE_MAIN);
    let (proto, scope) = if msg_type == RTM_NEWROUTE {
        (RTPROT_BOOT, RT_SCOPE_LINK)
    } else {
        (0, RT_SCOPE_NOWHERE)
    };
    // iproute2: ids above 255 go in RTA_TABLE with rtm_table = RT_TABLE_UNSPEC.
    let rtm_table = u8::try_from(table).unwrap_or(0);
    let mut req = Request::new(msg_type, flags).rtmsg(
        family(&dst.addr()),
        dst.prefix(),
        rtm_table,
        proto,
        scope,
        RTN_UNICAST,
    );
    if dst.prefix() > 0 {
        req = req.attr(RTA_DST, &ip_bytes(&dst.addr()));
    }
    Ok(req.attr_u32(RTA_TABLE, table).attr_u32(RTA_OIF, link.index))
}

fn table_text(table: Option<u32>) -> String {
    table.map_or(String::new(), |t| format!(" table {t}"))
}

/// `ip route add NET dev IFNAME [table T]` (host bits of `net` are cleared). A route that
/// already exists is an error with errno EEXIST ([`NetlinkError::errno`]).
pub fn add_route(ifname: &str, net: IpNet, table: Option<u32>) -> Result<()> {
    let req = route_request(
        RTM_NEWROUTE,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ifname,
        net,
        table,
    )?;
    exchange(req).map(drop).map_err(op_err(
        format!("adding route {}{}", net.network(), table_text(table)),
        ifname,
    ))
}

/// `ip route del NET dev IFNAME [table T]`.
pub fn del_route(ifname: &str, net: IpNet, table: Option<u32>) -> Result<()> {
    let req = route_request(RTM_DELROUTE, NLM_F_ACK, ifname, net, table)?;
    exchange(req).map(drop).map_err(op_err(
        format!("deleting route {}{}", net.network(), table_text(table)),
        ifname,
    ))
}

/// Output interface and route MTU metric of a route message.
fn route_oif_mtu(r: &Reply) -> (Option<u32>, Option<u32>) {
    let (mut oif, mut mtu) = (None, None);
    for (kind, data) in attrs(r.payload.get(12..).unwrap_or(&[])) {
        match kind {
            RTA_OIF => oif = attr_u32(data),
            RTA_METRICS => {
                mtu = attrs(data)
                    .find(|(k, _)| *k == RTAX_MTU)
                    .and_then(|(_, d)| attr_u32(d))
                    .filter(|m| *m > 0);
            }
            // struct rtnexthop { u16 len; u8 flags; u8 hops; i32 ifindex }: the first hop.
            RTA_MULTIPATH if oif.is_none() => oif = data.get(4..8).and_then(attr_u32),
            _ => {}
        }
    }
    (oif, mtu)
}

/// The MTU `ip route get` would show for the route's device (or the route's own mtu).
fn path_mtu(r: &Reply) -> Option<u32> {
    let (oif, mtu) = route_oif_mtu(r);
    mtu.or_else(|| get_link_by_index(oif?).ok().map(|l| l.mtu))
}

fn route_get_mtu(ip: IpAddr) -> Option<u32> {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let req = Request::new(RTM_GETROUTE, 0)
        .rtmsg(family(&ip), bits, 0, 0, 0, 0)
        .attr(RTA_DST, &ip_bytes(&ip));
    let replies = exchange(req).ok()?;
    replies
        .iter()
        .find(|r| r.msg_type == RTM_NEWROUTE)
        .and_then(path_mtu)
}

/// `ip route show default`: the first IPv4 default route of the main table.
fn default_route_mtu() -> Option<u32> {
    let req = Request::new(RTM_GETROUTE, NLM_F_DUMP).rtmsg(libc::AF_INET as u8, 0, 0, 0, 0, 0);
    let replies = exchange(req).ok()?;
    replies
        .iter()
        .filter(|r| r.msg_type == RTM_NEWROUTE)
        .filter(|r| {
            let p = &r.payload;
            let table = attrs(p.get(12..).unwrap_or(&[]))
                .find(|(k, _)| *k == RTA_TABLE)
                .and_then(|(_, d)| attr_u32(d))
                .or_else(|| p.get(4).map(|t| u32::from(*t)));
            p.get(1) == Some(&0) && p.get(7) == Some(&RTN_UNICAST) && table == Some(RT_TABLE_MAIN)
        })
        .find_map(path_mtu)
}

/// wg-quick's MTU rule: the largest MTU of the routes to `endpoints` (route mtu, else the
/// device's), or of the default route when there are none; minus 80; 1420 when nothing
/// is known.
pub fn wg_quick_mtu(endpoints: &[IpAddr]) -> u32 {
    let mut mtu = endpoints
        .iter()
        .filter_map(|ip| route_get_mtu(*ip))
        .max()
        .unwrap_or(0);
    if mtu == 0 {
        mtu = default_route_mtu().unwrap_or(0);
    }
    if mtu <= 80 {
        mtu = 1500;
    }
    mtu - 80
}

#[cfg(test)]
mod tests {
    use super::testns::{in_netns, run};
    use super::*;

    #[test]
    fn addresses_mtu_routes_show_in_ip() {
        in_netns("nl", |tag| {
            let dummy = format!("ewv{tag}");
            run(&format!("ip link add {dummy} type veth peer name {dummy}p"));
            run(&format!("ip link set {dummy}p up"));
            assert!(link_exists(&dummy).unwrap());
            assert!(!link_exists("ewnope0").unwrap());
            assert!(!link_exists("this-name-is-far-too-long").unwrap());

            set_mtu(&dummy, 1380).unwrap();
            assert_eq!(link_mtu(&dummy).unwrap(), 1380);
            add_address(&dummy, "10.8.0.1/24".parse().unwrap()).unwrap();
            add_address(&dummy, "fd00:8::1/64".parse().unwrap()).unwrap();
            set_up(&dummy).unwrap();
            add_route(&dummy, "10.9.0.7/16".parse().unwrap(), None).unwrap();
            add_route(&dummy, "fd00:9::/48".parse().unwrap(), None).unwrap();
            add_route(&dummy, "0.0.0.0/0".parse().unwrap(), Some(51820)).unwrap();

            let addrs = run(&format!("ip addr show dev {dummy}"));
            assert!(addrs.contains("mtu 1380"), "{addrs}");
            assert!(addrs.contains("inet 10.8.0.1/24"), "{addrs}");
            assert!(addrs.contains("inet6 fd00:8::1/64"), "{addrs}");
            assert!(addrs.contains(",UP"), "{addrs}");
            let routes = run(&format!("ip route show dev {dummy}"));
            assert!(routes.contains("10.9.0.0/16"), "{routes}");
            let r6 = run(&format!("ip -6 route show dev {dummy}"));
            assert!(r6.contains("fd00:9::/48"), "{r6}");
            let table = run("ip route show table 51820");
            assert!(table.contains(&format!("default dev {dummy}")), "{table}");

            let err = add_route(&dummy, "10.9.0.0/16".parse().unwrap(), None).unwrap_err();
            assert_eq!(err.errno(), Some(libc::EEXIST));
            let text = err.to_string();
            assert!(
                text.contains("10.9.0.0/16") && text.contains(&dummy) && text.contains("exists"),
                "{text}"
            );
            let err = add_address(&dummy, "10.8.0.1/24".parse().unwrap()).unwrap_err();
            assert!(
                err.to_string().contains("adding address 10.8.0.1/24"),
                "{err}"
            );
            let err = set_mtu("ewnope0", 1400).unwrap_err();
            assert_eq!(err.to_string(), "interface 'ewnope0' does not exist");

            del_route(&dummy, "10.9.0.0/16".parse().unwrap(), None).unwrap();
            del_route(&dummy, "0.0.0.0/0".parse().unwrap(), Some(51820)).unwrap();
            assert!(!run(&format!("ip route show dev {dummy}")).contains("10.9.0.0"));
            assert!(del_route(&dummy, "10.9.0.0/16".parse().unwrap(), None).is_err());

            set_down(&dummy).unwrap();
            delete_link(&dummy).unwrap();
            assert!(!link_exists(&dummy).unwrap());
        });
    }

    #[test]
    fn wg_quick_mtu_follows_the_routes() {
        in_netns("mtu", |tag| {
            // No routes at all: wg-quick falls back to 1500 - 80.
            assert_eq!(wg_quick_mtu(&[]), 1420);
            let a = format!("ewa{tag}");
            let b = format!("ewb{tag}");
            for (dev, mtu) in [(&a, 9000), (&b, 1400)] {
                run(&format!(
                    "ip link add {dev} mtu {mtu} type veth peer name {dev}p"
                ));
                run(&format!("ip link set {dev}p up"));
                run(&format!("ip link set {dev} up"));
            }
            run(&format!("ip addr add 198.18.1.1/24 dev {a}"));
            run(&format!("ip addr add 198.18.2.1/24 dev {b}"));
            run(&format!("ip route add 198.18.3.0/24 dev {b} mtu 1300"));
            run(&format!("ip route add default dev {b}"));
            // Endpoint behind the 1400-byte device; the default route's device without any.
            assert_eq!(wg_quick_mtu(&["198.18.2.9".parse().unwrap()]), 1320);
            assert_eq!(wg_quick_mtu(&[]), 1320);
            // Route mtu beats the device; the maximum over endpoints wins.
            assert_eq!(wg_quick_mtu(&["198.18.3.9".parse().unwrap()]), 1220);
            let both = ["198.18.3.9".parse().unwrap(), "198.18.1.9".parse().unwrap()];
            assert_eq!(wg_quick_mtu(&both), 8920);
            // Unroutable endpoints are skipped, as wg-quick does (then the default route).
            assert_eq!(wg_quick_mtu(&["fd00::1".parse().unwrap()]), 1320);
        });
    }
}
