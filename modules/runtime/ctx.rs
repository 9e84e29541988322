//! The per-message context every script function works on (SER `struct
//! sip_msg` plus the script state around it): the parsed message, pending
//! edits, new R-URI / dst-uri, branches, flags, AVPs, `$var`s and `$?`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ser_sip::{HeaderName, Lumps, SipMsg};

use crate::runtime::avp::AvpStore;
use crate::runtime::cfg::{CfgStore, StaticCfg};
use crate::runtime::flags::Flags;
use crate::runtime::transport::{Listen, Myself, Proto, Transport};
use crate::runtime::value::Value;

/// What every message of a process shares: how to send, who we are, cfg values.
pub struct Env {
    /// Sends buffers.
    pub transport: Arc<dyn Transport>,
    /// `myself`.
    pub myself: Myself,
    /// Listening sockets.
    pub listen: Vec<Listen>,
    /// Custom cfg parameters.
    pub cfg: Arc<dyn CfgStore>,
    /// Server header in our replies (`server_header`).
    pub server_header: String,
}

impl Env {
    /// An env with no cfg params and the default Server header.
    pub fn new(transport: Arc<dyn Transport>, myself: Myself, listen: Vec<Listen>) -> Env {
        Env {
            transport,
            myself,
            listen,
            cfg: Arc::new(StaticCfg::default()),
            server_header: "Server: ser (3.0.0-rs)".to_owned(),
        }
    }
}

/// An additional branch (`append_branch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// Request URI of the branch.
    pub uri: String,
    /// Destination URI, if any.
    pub dst_uri: Option<String>,
    /// Branch flags.
    pub bflags: Flags,
}

/// The last error while processing, for `sl_reply_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingError {
    /// Reply code that describes it.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
}

/// Per-message state.
pub struct MsgCtx<'e> {
    /// The received message.
    pub msg: SipMsg,
    /// Process-wide environment.
    pub env: &'e Env,
    /// Source of the message.
    pub src: SocketAddr,
    /// Our socket it arrived on.
    pub local: SocketAddr,
    /// Transport it arrived over.
    pub proto: Proto,
    /// New R-URI (`rewrite*`, `$ru = ...`), if changed.
    pub new_uri: Option<String>,
    /// Destination URI (`$du`, `setdsturi`).
    pub dst_uri: Option<String>,
    /// Additional branches.
    pub branches: Vec<Branch>,
    /// The R-URI and dst-uri that `append_branch()` without arguments made a
    /// branch of: while they are unchanged, relaying does not send them a
    /// second time as the R-URI's own branch (Kamailio's "ruri consumed").
    pub ruri_consumed: Option<(String, Option<String>)>,
    /// Message flags.
    pub flags: Flags,
    /// Branch flags of branch 0.
    pub bflags: Flags,
    /// AVPs.
    pub avps: AvpStore,
    /// `$var(x)`.
    pub vars: HashMap<String, Value>,
    /// `$?` / `$rc` / `retcode`.
    pub retcode: i32,
    /// Pending edits to the message (lumps), applied when it is forwarded.
    pub lumps: Lumps,
    /// Headers to add to a locally generated reply (`append_to_reply`).
    pub reply_headers: Vec<String>,
    /// `force_send_socket`.
    pub send_socket: Option<SocketAddr>,
    /// `force_rport`: reply to the source port.
    pub force_rport: bool,
    /// `add_local_rport`: add `;rport` to our Via.
    pub local_rport: bool,
    /// `set_advertised_address` / `set_advertised_port`.
    pub advertised: (Option<String>, Option<u16>),
    /// Last processing error (for `sl_reply_error`).
    pub last_error: Option<ProcessingError>,
    /// Code of the reply we sent statelessly, if any.
    pub replied: Option<u16>,
    /// A Max-Forwards header was added by a lump (maxfwd), so forwarding must
    /// not add the RFC 3261 default one.
    pub max_forwards_added: bool,
    /// Values of module pvars (`$T_reply_code`, `$T_branch_idx`...), set by the
    /// module that owns them (tm, for the failure/onreply/branch contexts it builds).
    pub module_pvs: HashMap<String, Value>,
}

impl<'e> MsgCtx<'e> {
    /// A context for a received message.
    pub fn new(
        msg: SipMsg,
        env: &'e Env,
        src: SocketAddr,
        local: SocketAddr,
        proto: Proto,
    ) -> MsgCtx<'e> {
        MsgCtx {
            msg,
            env,
            src,
            local,
            proto,
            new_uri: None,
            dst_uri: None,
            branches: Vec::new(),
            ruri_consumed: None,
            flags: Flags::default(),
            bflags: Flags::default(),
            avps: AvpStore::default(),
            vars: HashMap::new(),
            retcode: 1,
            lumps: Lumps::new(),
            reply_headers: Vec::new(),
            send_socket: None,
            force_rport: false,
            local_rport: false,
            advertised: (None, None),
            last_error: None,
            replied: None,
            max_forwards_added: false,
            module_pvs: HashMap::new(),
        }
    }

    /// Whether the message is a request.
    pub fn is_request(&self) -> bool {
        self.msg.is_request()
    }

    /// Method of a request, or the CSeq method of a reply.
    pub fn method(&self) -> &str {
        if self.msg.is_request() {
            std::str::from_utf8(self.msg.method_bytes()).unwrap_or("")
        } else {
            match self.msg.cseq() {
                Ok(c) => std::str::from_utf8(self.msg.s(c.method_span)).unwrap_or(""),
                Err(_) => "",
            }
        }
    }

    /// Reply status.
    pub fn status(&self) -> Option<u16> {
        self.msg.status()
    }

    /// The current R-URI (rewritten or original).
    pub fn ruri(&self) -> Option<String> {
        match &self.new_uri {
            Some(u) => Some(u.clone()),
            None => self
                .msg
                .ruri()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        }
    }

    /// The original R-URI.
    pub fn orig_ruri(&self) -> Option<String> {
        self.msg
            .ruri()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// URI of the From header.
    pub fn from_uri(&self) -> Option<String> {
        self.msg.from().ok().map(|n| self.text(n.uri.span))
    }

    /// URI of the To header.
    pub fn to_uri(&self) -> Option<String> {
        self.msg.to().ok().map(|n| self.text(n.uri.span))
    }

    /// Length of the received message.
    pub fn msg_len(&self) -> usize {
        self.msg.buf().len()
    }

    /// Text of a span of the message.
    pub fn text(&self, span: ser_sip::Span) -> String {
        String::from_utf8_lossy(self.msg.s(span)).into_owned()
    }

    /// Body of the first header with this name (case-insensitive, compact forms known to ser-sip).
    pub fn header(&self, name: &str) -> Option<String> {
        self.msg
            .find_by_name(name.as_bytes())
            .next()
            .map(|h| String::from_utf8_lossy(self.msg.header_body(h)).into_owned())
    }

    /// Body of the first header of a well-known type.
    pub fn header_of(&self, name: HeaderName) -> Option<String> {
        self.msg
            .find(name)
            .map(|h| String::from_utf8_lossy(self.msg.header_body(h)).into_owned())
    }

    /// Queue header line(s) appended after the last header (CRLF added if missing).
    pub fn append_header(&mut self, lines: &str) {
        self.lumps.add_header_lines(&self.msg, lines.as_bytes());
    }
}
