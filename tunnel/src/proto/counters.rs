//! Why packets were dropped, counted without locks (relaxed atomics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live drop counters of one device.
        #[derive(Debug, Default)]
        pub struct Counters { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A copy of [`Counters`] at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct CountersSnapshot { $(pub $name: u64,)* }

        impl Counters {
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }

        /// `name=count` pairs, e.g. for the shutdown log line.
        impl std::fmt::Display for CountersSnapshot {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut sep = "";
                $(
                    write!(f, "{sep}{}={}", stringify!($name), self.$name)?;
                    sep = " ";
                )*
                Ok(())
            }
        }
    };
}

counters! {
    /// A packet from the TUN with no peer owning its destination.
    tx_no_route,
    /// A packet routed to a peer that has no endpoint yet.
    tx_no_endpoint,
    /// A packet from the TUN that is not IPv4/IPv6.
    tx_invalid,
    /// A datagram that is not a well-formed WireGuard message (wrong type, size, garbage).
    rx_invalid,
    /// A message for an index or public key we do not know.
    rx_unknown_peer,
    /// A message that failed authentication, replay or handshake checks.
    rx_rejected,
    /// A decrypted packet whose source address is outside the sending peer's allowed IPs.
    rx_source_not_allowed,
    /// Handshakes answered with a cookie because we are under load.
    rx_cookie_sent,
}

impl Counters {
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
