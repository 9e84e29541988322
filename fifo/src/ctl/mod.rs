//! The ctl server: binrpc over Unix stream/datagram, TCP and UDP sockets, plus the FIFO,
//! all served by one single-threaded poll loop (the ctl process runs it).

mod addr;
mod listener;
mod server;

use std::fmt;
use std::io;
use std::time::Duration;

pub use addr::{CtlAddr, DEFAULT_CTL_ADDR, DEFAULT_CTL_PORT};
pub use listener::{CtlListener, SocketPerms};
pub use server::{handle_packet, serve, serve_with};

/// Limits and timeouts of the ctl server.
#[derive(Debug, Clone)]
pub struct CtlConfig {
    /// Largest request body accepted (bigger announced lengths get a fault and a close).
    pub max_request: usize,
    /// Largest reply body sent; a method producing more gets a 500 fault instead
    /// (ctl's `binrpc_max_body_size`, raised from 32 KiB so big dumps fit kamcmd's 128 KiB).
    pub max_reply: usize,
    /// A stream connection idle this long is closed.
    pub idle_timeout: Duration,
    /// A request whose bytes trickle in for longer than this is dropped (slow clients).
    pub request_timeout: Duration,
    /// Most simultaneous stream connections; more are accepted and closed at once.
    pub max_connections: usize,
    /// Longest FIFO request line.
    pub max_fifo_line: usize,
    /// How long the FIFO server tries to open a client's reply FIFO.
    pub fifo_reply_timeout: Duration,
    /// Directory reply FIFOs are opened in (ctl's `fifo_dir`, default `/tmp/`).
    pub fifo_reply_dir: std::path::PathBuf,
    /// Directory of JSON-RPC FIFO clients' reply FIFOs (jsonrpcs `fifo_reply_dir`).
    pub json_reply_dir: std::path::PathBuf,
    /// Indent JSON-RPC replies (jsonrpcs `pretty_format`).
    pub json_pretty: bool,
}

impl Default for CtlConfig {
    fn default() -> Self {
        CtlConfig {
            max_request: 64 * 1024,
            max_reply: 120 * 1024,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_fifo_line: 4096,
            fifo_reply_timeout: Duration::from_millis(500),
            fifo_reply_dir: "/tmp".into(),
            json_reply_dir: "/tmp".into(),
            json_pretty: true,
        }
    }
}

/// Errors setting up ctl listeners or running the server.
#[derive(Debug)]
#[non_exhaustive]
pub enum CtlError {
    /// The address does not parse.
    BadAddress {
        /// The address text.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `user`/`group` of a socket does not exist.
    UnknownOwner(String),
    /// A system call failed.
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

impl CtlError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        CtlError::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::BadAddress { addr, reason } => {
                write!(f, "bad ctl address {addr:?}: {reason}")
            }
            CtlError::UnknownOwner(who) => write!(f, "unknown user or group {who:?}"),
            CtlError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for CtlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CtlError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Runs a method, turning a panicking handler into a 500 fault so that one buggy method
/// cannot take the ctl process down.
pub(crate) fn call_guarded(
    registry: &crate::rpc::RpcRegistry,
    method: &str,
    params: Vec<crate::rpc::RpcValue>,
) -> Result<Vec<crate::rpc::RpcValue>, crate::rpc::RpcFault> {
    let call = std::panic::AssertUnwindSafe(|| registry.call(method, params));
    std::panic::catch_unwind(call)
        .unwrap_or_else(|_| Err(crate::rpc::RpcFault::new(500, "internal error")))
}
