//! The binrpc wire format of Kamailio's ctl module, as a pure codec (no I/O).
//!
//! A packet is a header ([`header`]) followed by a body of records ([`record`]); requests,
//! replies and faults are built and read in [`message`]. The format is described in
//! `shared/notes/binrpc.md`; in short:
//!
//! ```text
//! A1 | type<<4 | (LL-1)<<2 | (CL-1) | body length (LL bytes, BE) | cookie (CL bytes, BE) | body
//! ```
//!
//! Every decoder here is bounded: lengths are checked against the bytes at hand before any
//! allocation, nesting is limited to [`MAX_DEPTH`], and malformed input yields a
//! [`BinRpcError`], never a panic. Stream reassembly uses [`Decoded::NeedMore`].

pub mod header;
pub mod message;
pub mod record;

use std::fmt;

pub use header::{decode_header, encode_header, Header, PacketType, MAX_HDR_SIZE, MIN_HDR_SIZE};
pub use message::{
    decode_body, decode_fault, decode_request, encode_fault, encode_reply, encode_request,
    split_frame, Frame,
};
pub use record::{Record, RecordKind, RecordReader};

/// Magic (high nibble `0xA`) and version (low nibble `1`): the first byte of every packet.
pub const MAGIC_VERSION: u8 = 0xA1;

/// Deepest struct/array nesting a decoder accepts.
pub const MAX_DEPTH: usize = 16;

/// Record type codes (low nibble of a record's tag byte).
pub mod tag {
    /// Signed 32-bit integer.
    pub const INT: u8 = 0;
    /// NUL-terminated string.
    pub const STR: u8 = 1;
    /// Fixed-point double (value × 1000 as a signed 64-bit integer).
    pub const DOUBLE: u8 = 2;
    /// Struct start/end.
    pub const STRUCT: u8 = 3;
    /// Array start/end.
    pub const ARRAY: u8 = 4;
    /// Struct member: name, then the value record.
    pub const AVP: u8 = 5;
    /// Raw bytes.
    pub const BYTES: u8 = 6;
}

/// The result of decoding from a buffer that may hold only part of a packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<T> {
    /// Decoded; the `usize` is how many bytes of the input were used.
    Complete(T, usize),
    /// At least this many more bytes are needed before decoding can go on.
    NeedMore(usize),
}

/// Why a binrpc packet or record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BinRpcError {
    /// The first byte is not `0xA1`.
    BadMagic {
        /// The byte found.
        found: u8,
    },
    /// The packet type nibble is not request (0), reply (1) or fault (3).
    BadPacketType {
        /// The nibble found.
        found: u8,
    },
    /// The header announces a body larger than the receiver accepts.
    BodyTooLarge {
        /// Announced body length.
        len: u64,
        /// The receiver's limit.
        max: usize,
    },
    /// A record runs past the end of the body.
    Truncated {
        /// Offset of the record in the body.
        offset: usize,
    },
    /// A record's tag or length field makes no sense (e.g. a 5-byte int).
    BadRecord {
        /// Offset of the record in the body.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Structs/arrays nest deeper than [`MAX_DEPTH`].
    TooDeep {
        /// Offset of the record that went too deep.
        offset: usize,
    },
    /// The body ended inside a struct or array.
    Unterminated,
    /// The body is well-formed but not what the message kind requires
    /// (e.g. a request whose first record is not a string).
    BadMessage(&'static str),
    /// An encoded body would not fit the 4-byte length field.
    Oversized,
}

impl fmt::Display for BinRpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinRpcError::BadMagic { found } => write!(f, "bad magic/version byte 0x{found:02x}"),
            BinRpcError::BadPacketType { found } => write!(f, "bad packet type {found}"),
            BinRpcError::BodyTooLarge { len, max } => {
                write!(f, "body of {len} bytes exceeds the {max} bytes limit")
            }
            BinRpcError::Truncated { offset } => write!(f, "record at offset {offset} truncated"),
            BinRpcError::BadRecord { offset, reason } => {
                write!(f, "bad record at offset {offset}: {reason}")
            }
            BinRpcError::TooDeep { offset } => {
                write!(f, "nesting deeper than {MAX_DEPTH} at offset {offset}")
            }
            BinRpcError::Unterminated => f.write_str("unterminated struct or array"),
            BinRpcError::BadMessage(m) => f.write_str(m),
            BinRpcError::Oversized => f.write_str("packet too big to encode"),
        }
    }
}

impl std::error::Error for BinRpcError {}
