//! Checked, zero-copy views of untrusted bytes.
//!
//! Each view validates lengths once in `new_checked`; after that no accessor can panic.
//! Tests at the bottom of each file use real packet bytes, including impossible lengths.

pub mod ip;
pub mod wg;

pub use ip::IpView;
pub use wg::{MessageType, WgView};

/// Why bytes were refused. Only counted and dropped, never echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet too short")]
    Truncated,
    #[error("unknown IP version or message type")]
    UnknownType,
    #[error("length field does not match the packet")]
    BadLength,
}
