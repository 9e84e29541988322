//! Parse errors: what went wrong and where.

use crate::hname::HeaderName;

/// Why a message (or one of its parts) could not be parsed. Offsets are
/// byte offsets into the message buffer (or into the URI given to
/// [`crate::uri::parse_uri`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message is larger than [`crate::Limits::max_msg_len`].
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ended inside the first line or a header field.
    #[error("message truncated at byte {at}")]
    Truncated {
        /// Where the input ended.
        at: u32,
    },
    /// The request or status line is malformed.
    #[error("bad first line at byte {at}: {what}")]
    BadFirstLine {
        /// Offset of the offending byte.
        at: u32,
        /// What was wrong.
        what: &'static str,
    },
    /// The SIP version is not SIP/2.0 (answered with 505).
    #[error("unsupported SIP version at byte {at}")]
    UnsupportedVersion {
        /// Offset of the version token.
        at: u32,
    },
    /// A header line has no valid name or no colon.
    #[error("bad header line at byte {at}: {what}")]
    BadHeaderLine {
        /// Offset of the line.
        at: u32,
        /// What was wrong.
        what: &'static str,
    },
    /// More header fields than [`crate::Limits::max_headers`].
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A header field longer than [`crate::Limits::max_header_len`].
    #[error("header field at byte {at} longer than {max} bytes")]
    HeaderTooLong {
        /// Offset of the header field.
        at: u32,
        /// The limit.
        max: usize,
    },
    /// More Via values than [`crate::Limits::max_vias`].
    #[error("more than {max} Via values")]
    TooManyVias {
        /// The limit.
        max: usize,
    },
    /// More list entries or parameters than [`crate::Limits::max_params`].
    #[error("more than {max} parameters or list entries in {name} at byte {at}")]
    TooManyParams {
        /// The header field (or `Other` for a URI).
        name: HeaderName,
        /// Offset of the value.
        at: u32,
        /// The limit.
        max: usize,
    },
    /// A URI longer than [`crate::Limits::max_uri_len`].
    #[error("URI at byte {at} longer than {max} bytes")]
    UriTooLong {
        /// Offset of the URI.
        at: u32,
        /// The limit.
        max: usize,
    },
    /// A malformed URI.
    #[error("bad URI at byte {at}: {what}")]
    BadUri {
        /// Offset of the offending byte.
        at: u32,
        /// What was wrong.
        what: &'static str,
    },
    /// A header body that does not match its grammar.
    #[error("bad {name} header at byte {at}: {what}")]
    BadHeader {
        /// The header field.
        name: HeaderName,
        /// Offset of the offending byte.
        at: u32,
        /// What was wrong.
        what: &'static str,
    },
    /// A header every message (or every request) must carry is missing.
    #[error("missing {name} header")]
    MissingHeader {
        /// The header field.
        name: HeaderName,
    },
    /// A header that must occur once occurs more often.
    #[error("{name} header repeated at byte {at}")]
    DuplicateHeader {
        /// The header field.
        name: HeaderName,
        /// Offset of the repetition.
        at: u32,
    },
    /// Content-Length promises more bytes than the datagram holds.
    #[error("body truncated: Content-Length {expected}, {available} bytes present")]
    BodyTruncated {
        /// The declared length.
        expected: u32,
        /// The bytes present after the header section.
        available: u32,
    },
    /// The CSeq method differs from the request method.
    #[error("CSeq method at byte {at} differs from the request method")]
    CSeqMethodMismatch {
        /// Offset of the CSeq method.
        at: u32,
    },
    /// A request or reply lacks what the operation needs (e.g. building a
    /// reply to a reply).
    #[error("not applicable: {what}")]
    NotApplicable {
        /// What was wrong.
        what: &'static str,
    },
}

impl ParseError {
    /// The status code a server answers a request failing with this
    /// error: 505 for a bad version, 413 for size limits, 414 for a long
    /// URI, else 400.
    pub fn reply_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion { .. } => 505,
            ParseError::TooLarge { .. } => 413,
            ParseError::UriTooLong { .. } => 414,
            _ => 400,
        }
    }

    /// The reason phrase matching [`ParseError::reply_code`].
    pub fn reply_reason(&self) -> &'static str {
        match self.reply_code() {
            505 => "Version Not Supported",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            _ => "Bad Request",
        }
    }
}
