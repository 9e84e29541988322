//! Typed header values and the dispatcher that parses a header body on
//! demand. One file per grammar family.

pub mod addr;
pub mod auth;
pub mod misc;
pub mod via;

use crate::error::ParseError;
use crate::hname::HeaderName;
use crate::limits::Limits;
use crate::scan::Cur;
use crate::span::Span;

use self::addr::{Contacts, NameAddr};
use self::auth::Auth;
use self::misc::{CSeq, Event, MediaType};
use self::via::Via;

/// The typed parse of one header field body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderValue {
    /// Via: one or more via-parms.
    Via(Vec<Via>),
    /// From, To, Refer-To, Referred-By, Reply-To: one name-addr.
    NameAddr(Box<NameAddr>),
    /// Route, Record-Route, Path, P-Asserted-/P-Preferred-Identity,
    /// Diversion, Remote-Party-ID: a list of name-addrs.
    NameAddrList(Vec<NameAddr>),
    /// Contact.
    Contact(Contacts),
    /// Call-ID.
    CallId(Span),
    /// CSeq.
    CSeq(CSeq),
    /// Content-Length, Expires, Min-Expires, Max-Forwards, Min-SE, RSeq.
    Number(u32),
    /// Content-Type.
    MediaType(Box<MediaType>),
    /// Accept.
    MediaList(Vec<MediaType>),
    /// Authorization, Proxy-Authorization, WWW-Authenticate,
    /// Proxy-Authenticate.
    Auth(Box<Auth>),
    /// Supported, Require, Proxy-Require, Unsupported, Allow,
    /// Allow-Events, Content-Encoding, Accept-Encoding, Accept-Language:
    /// a token list.
    Tokens(Vec<Span>),
    /// Event.
    Event(Box<Event>),
    /// Date (checked to be an RFC 1123 GMT date).
    Date(Span),
    /// Everything else (User-Agent, Server, Subject, unknown headers):
    /// the trimmed body.
    Text(Span),
}

/// Parses `body` of `buf` as the grammar of header `name`.
pub fn parse_value(
    buf: &[u8],
    name: HeaderName,
    body: Span,
    limits: &Limits,
) -> Result<HeaderValue, ParseError> {
    use HeaderName as H;
    let cur = &mut Cur::new(buf, body, name);
    Ok(match name {
        H::Via => HeaderValue::Via(via::parse_via_list(cur, limits)?),
        H::From | H::To | H::ReferTo | H::ReferredBy | H::ReplyTo => {
            HeaderValue::NameAddr(Box::new(addr::parse_single(cur, limits)?))
        }
        H::Route
        | H::RecordRoute
        | H::Path
        | H::PAssertedIdentity
        | H::PPreferredIdentity
        | H::Diversion
        | H::RemotePartyId => HeaderValue::NameAddrList(addr::parse_list(cur, limits)?),
        H::Contact => HeaderValue::Contact(addr::parse_contacts(cur, limits)?),
        H::CallId => HeaderValue::CallId(misc::parse_call_id(cur)?),
        H::CSeq => HeaderValue::CSeq(misc::parse_cseq(cur)?),
        H::MaxForwards => HeaderValue::Number(misc::parse_number(cur, 255)?),
        H::ContentLength | H::Expires | H::MinExpires | H::MinSe | H::RSeq => {
            HeaderValue::Number(misc::parse_number(cur, u32::MAX)?)
        }
        H::ContentType => HeaderValue::MediaType(Box::new(misc::parse_content_type(cur, limits)?)),
        H::Accept => HeaderValue::MediaList(misc::parse_accept(cur, limits)?),
        H::Authorization | H::ProxyAuthorization | H::WwwAuthenticate | H::ProxyAuthenticate => {
            HeaderValue::Auth(Box::new(auth::parse_auth(cur, limits)?))
        }
        H::Supported
        | H::Require
        | H::ProxyRequire
        | H::Unsupported
        | H::Allow
        | H::AllowEvents
        | H::ContentEncoding
        | H::AcceptEncoding
        | H::AcceptLanguage => HeaderValue::Tokens(misc::parse_tokens(cur, limits)?),
        H::Event => HeaderValue::Event(Box::new(misc::parse_event(cur, limits)?)),
        H::Date => HeaderValue::Date(misc::parse_date(cur)?),
        _ => HeaderValue::Text(misc::parse_text(cur)?),
    })
}
