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
//!
//! A [`SipMsg`] caches parsed header values in `OnceCell`s, so it is
//! `Send` but not `Sync`: one process (or thread) works on a message at a
//! time, as in SER. The index itself (header names and [`Span`]s) is plain
//! data.
//!
//! ```
//! use ser_sip::{apply, build_reply, via_value, Lumps, SipMsg};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let raw = b"INVITE sip:bob@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
//! Max-Forwards: 70\r\n\
//! To: Bob <sip:bob@example.com>\r\n\
//! From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710@pc33.example.com\r\n\
//! CSeq: 314159 INVITE\r\n\
//! Content-Length: 0\r\n\r\n";
//! let src = "192.0.2.1:6000".parse()?;
//! let msg = SipMsg::parse(raw.to_vec())?;
//! msg.validate()?;
//! assert_eq!(msg.s(msg.via1()?.host), b"192.0.2.1");
//! assert_eq!(msg.cseq()?.number, 314159);
//!
//! // Forward: record the source in the top Via, add our own Via.
//! let mut lumps = Lumps::new();
//! lumps.add_received(&msg, src)?;
//! lumps.insert_via(&msg, &via_value("UDP", "10.0.0.1", Some(5060), "z9hG4bKproxy1", false));
//! let out = apply(&msg, &lumps)?;
//! let fwd = SipMsg::parse(out)?;
//! assert_eq!(fwd.s(fwd.via2()?.unwrap().rport_span.unwrap()), b"rport=6000");
//!
//! // Or answer it statelessly.
//! let reply = build_reply(&msg, 486, b"Busy Here", b"", b"", Some(b"t1"), Some(src))?;
//! assert!(reply.starts_with(b"SIP/2.0 486 Busy Here\r\n"));
//! # Ok(())
//! # }
//! ```
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
