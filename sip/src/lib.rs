//! `ser-sip`: the SIP message parser and rewriter of SER.
//!
//! The model is SER's: one received buffer; a first pass locates the first
//! line and every header field (name and body span); each header body is
//! parsed only when somebody asks for it, and the result is cached; the
//! message is rewritten through *lumps*, edits against offsets of the
//! original buffer that are applied once when the outgoing buffer is built.
//! Every parsed value is a [`Span`] (offsets) into the buffer, never a
//! pointer, so a parsed message is plain data plus one byte buffer.
//!
//! Replaces these Kamailio/SER files:
//! - `parser/msg_parser.c`, `parse_fline.c`, `parse_hname2.c`, `hf.c` → [`msg`], [`hname`]
//! - `parser/parse_via.c` → [`hdr::via`]
//! - `parser/parse_uri.c`, `parse_hostport.c`, `strutils.c` (`cmp_uri`) → [`uri`]
//! - `parser/parse_to.c`, `parse_from.c`, `parse_rr.c`, `contact/` → [`hdr::addr`]
//! - `parser/parse_cseq.c`, `parse_expires.c`, `parse_content.c`,
//!   `parse_event.c`, `parse_supported.c`, `parse_param.c` → [`hdr::misc`], [`param`]
//! - `parser/digest/` → [`hdr::auth`]
//! - `data_lump.c`, `msg_translator.c` (`build_req_buf_from_sip_req`,
//!   `build_res_buf_from_sip_req`) → [`lump`], [`reply`]
//! - `tcp_read.c` (message framing) → [`framing`]
//!
//! Every entry point is bounded by [`Limits`] and returns a typed
//! [`ParseError`]; no input makes it panic.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dump;
pub mod error;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod hdr;
pub mod hname;
pub mod limits;
pub mod lump;
pub mod method;
pub mod msg;
pub mod param;
pub mod reply;
pub mod scan;
pub mod span;
pub mod uri;
pub mod validate;

pub use error::ParseError;
pub use framing::{frame_stream, frame_stream_with, Framing};
pub use hdr::addr::{Contact, Contacts, NameAddr};
pub use hdr::auth::Auth;
pub use hdr::misc::{CSeq, Event, MediaType};
pub use hdr::via::Via;
pub use hdr::HeaderValue;
pub use hname::HeaderName;
pub use limits::Limits;
pub use lump::{apply, via_value, LumpError, Lumps};
pub use method::Method;
pub use msg::{FirstLine, Header, SipMsg};
pub use param::Param;
pub use reply::{bad_message_reaction, build_reply, Reaction};
pub use span::Span;
pub use uri::{parse_uri, uri_eq, HostKind, Scheme, Uri};
