//! Known keys and helpers shared by the UAPI tests (hex as `wg` sends it).

use std::net::SocketAddr;

use crate::key::PublicKey;
use crate::route::IpNet;

pub const SK: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub const PK_A: &str = "2222222222222222222222222222222222222222222222222222222222222222";
pub const PK_B: &str = "33333333333333333333333333333333333333333333333333333333333333AA";
pub const PSK: &str = "4444444444444444444444444444444444444444444444444444444444444444";
pub const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn pk_a() -> PublicKey {
    PublicKey([0x22; 32])
}

pub fn pk_b() -> PublicKey {
    let mut k = [0x33; 32];
    k[31] = 0xaa;
    PublicKey(k)
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}
