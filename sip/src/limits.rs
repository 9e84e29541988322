//! Resource caps applied while parsing untrusted input.

/// Caps that bound the work and memory spent on one message. Every parser
/// entry point checks them, so no input can cause unbounded allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message (SER's `BUF_SIZE`).
    pub max_msg_len: usize,
    /// Most header fields in one message.
    pub max_headers: usize,
    /// Longest header field (name, colon and body, folding included).
    pub max_header_len: usize,
    /// Most Via values (across all Via header fields).
    pub max_vias: usize,
    /// Longest URI (SER's `MAX_URI_SIZE`).
    pub max_uri_len: usize,
    /// Most parameters on one URI or header value, and most values in one
    /// comma-separated header list.
    pub max_params: usize,
}

impl Limits {
    /// SER's historical sizes.
    pub const DEFAULT: Limits = Limits {
        max_msg_len: 65535,
        max_headers: 256,
        max_header_len: 16384,
        max_vias: 70,
        max_uri_len: 1024,
        max_params: 64,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}
