//! The packet header: magic/version, type, body length and cookie.

use super::{BinRpcError, Decoded, MAGIC_VERSION};

/// Smallest header: 2 fixed bytes, 1 length byte, 1 cookie byte.
pub const MIN_HDR_SIZE: usize = 4;
/// Largest header: 2 fixed bytes, 4 length bytes, 4 cookie bytes.
pub const MAX_HDR_SIZE: usize = 10;

/// What a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// A method call (type 0).
    Request,
    /// A successful answer (type 1).
    Reply,
    /// An error answer (type 3): INT code then STR message.
    Fault,
}

impl PacketType {
    fn code(self) -> u8 {
        match self {
            PacketType::Request => 0,
            PacketType::Reply => 1,
            PacketType::Fault => 3,
        }
    }

    fn from_code(c: u8) -> Result<Self, BinRpcError> {
        match c {
            0 => Ok(PacketType::Request),
            1 => Ok(PacketType::Reply),
            3 => Ok(PacketType::Fault),
            found => Err(BinRpcError::BadPacketType { found }),
        }
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Request, reply or fault.
    pub kind: PacketType,
    /// Length of the body that follows the header (header not included).
    pub body_len: u32,
    /// The client's cookie; a server echoes its value.
    pub cookie: u32,
}

/// Bytes needed to hold `v` big-endian, at least 1.
fn min_bytes(v: u32) -> usize {
    match v {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xff_ffff => 3,
        _ => 4,
    }
}

/// Appends the header for `h`, using the fewest bytes for length and cookie (as Kamailio's
/// writer does).
pub fn encode_header(h: &Header, out: &mut Vec<u8>) {
    let ll = min_bytes(h.body_len);
    let cl = min_bytes(h.cookie);
    out.push(MAGIC_VERSION);
    // ll, cl are 1..=4, so the shifted fields stay within their 2 bits.
    out.push((h.kind.code() << 4) | (((ll - 1) as u8) << 2) | ((cl - 1) as u8));
    out.extend_from_slice(&h.body_len.to_be_bytes()[4 - ll..]);
    out.extend_from_slice(&h.cookie.to_be_bytes()[4 - cl..]);
}

fn read_be(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// Decodes a header from the start of `buf`. Bad magic or type is an error as soon as the
/// byte is seen; a header cut short gives [`Decoded::NeedMore`].
pub fn decode_header(buf: &[u8]) -> Result<Decoded<Header>, BinRpcError> {
    let Some(&first) = buf.first() else {
        return Ok(Decoded::NeedMore(MIN_HDR_SIZE));
    };
    if first != MAGIC_VERSION {
        return Err(BinRpcError::BadMagic { found: first });
    }
    let Some(&flags) = buf.get(1) else {
        return Ok(Decoded::NeedMore(MIN_HDR_SIZE - 1));
    };
    let kind = PacketType::from_code(flags >> 4)?;
    let ll = usize::from((flags >> 2) & 3) + 1;
    let cl = usize::from(flags & 3) + 1;
    let len = 2 + ll + cl;
    if buf.len() < len {
        return Ok(Decoded::NeedMore(len - buf.len()));
    }
    let body_len = read_be(&buf[2..2 + ll]);
    let cookie = read_be(&buf[2 + ll..len]);
    Ok(Decoded::Complete(
        Header {
            kind,
            body_len,
            cookie,
        },
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(kind: PacketType, body_len: u32, cookie: u32) -> Vec<u8> {
        let mut v = Vec::new();
        encode_header(
            &Header {
                kind,
                body_len,
                cookie,
            },
            &mut v,
        );
        v
    }

    #[test]
    fn worked_examples_from_binrpc_md() {
        // `kamcmd core.uptime` with cookie 0x1234ABCD: LL=0, CL=3.
        assert_eq!(
            enc(PacketType::Request, 14, 0x1234_abcd),
            [0xa1, 0x03, 0x0e, 0x12, 0x34, 0xab, 0xcd]
        );
        // Fault, cookie 7, body 0x1f.
        assert_eq!(enc(PacketType::Fault, 0x1f, 7), [0xa1, 0x30, 0x1f, 0x07]);
        // Reply with a 2-byte length.
        assert_eq!(
            enc(PacketType::Reply, 0x1234, 1),
            [0xa1, 0x14, 0x12, 0x34, 0x01]
        );
    }

    #[test]
    fn round_trip_all_sizes() {
        for &len in &[
            0u32,
            1,
            0xff,
            0x100,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u32::MAX,
        ] {
            for &cookie in &[0u32, 0x80, 0x1234, 0xab_cdef, 0xdead_beef] {
                let b = enc(PacketType::Reply, len, cookie);
                assert!(b.len() >= MIN_HDR_SIZE && b.len() <= MAX_HDR_SIZE);
                let h = Header {
                    kind: PacketType::Reply,
                    body_len: len,
                    cookie,
                };
                assert_eq!(decode_header(&b), Ok(Decoded::Complete(h, b.len())));
                // Every strict prefix asks for more.
                for cut in 0..b.len() {
                    assert!(matches!(decode_header(&b[..cut]), Ok(Decoded::NeedMore(n)) if n > 0));
                }
            }
        }
    }

    #[test]
    fn rejects_bad_magic_and_type() {
        assert_eq!(
            decode_header(b"GET /"),
            Err(BinRpcError::BadMagic { found: b'G' })
        );
        assert_eq!(
            decode_header(&[0xa2]),
            Err(BinRpcError::BadMagic { found: 0xa2 })
        );
        assert_eq!(
            decode_header(&[0xa1, 0x20]),
            Err(BinRpcError::BadPacketType { found: 2 })
        );
        assert_eq!(
            decode_header(&[0xa1, 0xf0]),
            Err(BinRpcError::BadPacketType { found: 15 })
        );
    }
}
