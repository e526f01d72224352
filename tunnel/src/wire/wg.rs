//! WireGuard message view: type and exact sizes checked before any crypto sees the bytes.

use super::WireError;

pub const HANDSHAKE_INIT_LEN: usize = 148;
pub const HANDSHAKE_RESP_LEN: usize = 92;
pub const COOKIE_REPLY_LEN: usize = 64;
/// Header (16) + Poly1305 tag (16): an empty data message is a keepalive.
pub const DATA_OVERHEAD: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    HandshakeInit,
    HandshakeResponse,
    CookieReply,
    Data,
}

/// A datagram whose type byte, reserved bytes and length agree with the WireGuard spec.
#[derive(Debug, Clone, Copy)]
pub struct WgView<T: AsRef<[u8]>> {
    buf: T,
    kind: MessageType,
}

impl<T: AsRef<[u8]>> WgView<T> {
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < 4 {
            return Err(WireError::Truncated);
        }
        // Type is a little-endian u32 whose upper three bytes are reserved zeros.
        if b[1..4] != [0, 0, 0] {
            return Err(WireError::UnknownType);
        }
        let kind = match b[0] {
            1 => MessageType::HandshakeInit,
            2 => MessageType::HandshakeResponse,
            3 => MessageType::CookieReply,
            4 => MessageType::Data,
            _ => return Err(WireError::UnknownType),
        };
        let ok = match kind {
            MessageType::HandshakeInit => b.len() == HANDSHAKE_INIT_LEN,
            MessageType::HandshakeResponse => b.len() == HANDSHAKE_RESP_LEN,
            MessageType::CookieReply => b.len() == COOKIE_REPLY_LEN,
            MessageType::Data => b.len() >= DATA_OVERHEAD,
        };
        if !ok {
            return Err(WireError::BadLength);
        }
        Ok(Self { buf, kind })
    }

    pub fn kind(&self) -> MessageType {
        self.kind
    }

    /// The receiver index (our index) of responses, cookie replies and data; `None` for
    /// initiations, which name the sender only.
    pub fn receiver_index(&self) -> Option<u32> {
        let b = self.buf.as_ref();
        let at = match self.kind {
            MessageType::HandshakeInit => return None,
            MessageType::HandshakeResponse => 8,
            MessageType::CookieReply | MessageType::Data => 4,
        };
        Some(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_type_and_exact_length() {
        let mut init = [0u8; 148];
        init[0] = 1;
        assert_eq!(
            WgView::new_checked(&init[..]).unwrap().kind(),
            MessageType::HandshakeInit
        );
        assert_eq!(
            WgView::new_checked(&init[..]).unwrap().receiver_index(),
            None
        );
        let mut resp = [0u8; 92];
        resp[0] = 2;
        resp[8..12].copy_from_slice(&0x0001_2300u32.to_le_bytes());
        assert_eq!(
            WgView::new_checked(&resp[..]).unwrap().receiver_index(),
            Some(0x0001_2300)
        );
        let mut data = [0u8; 32];
        data[0] = 4;
        data[4] = 7;
        assert_eq!(
            WgView::new_checked(&data[..]).unwrap().receiver_index(),
            Some(7)
        );
    }

    #[test]
    fn truncated_and_garbage() {
        assert_eq!(
            WgView::new_checked(&[4u8, 0, 0][..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            WgView::new_checked(&[1u8; 148][..]).unwrap_err(),
            WireError::UnknownType
        );
        let mut init = [0u8; 147];
        init[0] = 1;
        assert_eq!(
            WgView::new_checked(&init[..]).unwrap_err(),
            WireError::BadLength
        );
        let mut data = [0u8; 31];
        data[0] = 4;
        assert_eq!(
            WgView::new_checked(&data[..]).unwrap_err(),
            WireError::BadLength
        );
        assert_eq!(
            WgView::new_checked(&[9u8, 0, 0, 0, 0][..]).unwrap_err(),
            WireError::UnknownType
        );
    }
}
