//! Authorization / Proxy-Authorization credentials and WWW-/Proxy-
//! Authenticate challenges (RFC 3261 §25 digest). Replaces
//! `parser/digest/`.

use crate::error::ParseError;
use crate::limits::Limits;
use crate::param::Param;
use crate::scan::{is_token, Cur};
use crate::span::Span;

/// An auth scheme with its comma-separated parameters; for `Digest` the
/// well-known ones are picked out (quoted values keep their quotes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// The scheme token (`Digest`, …).
    pub scheme: Span,
    /// All parameters in order.
    pub params: Vec<Param>,
    /// `username`
    pub username: Option<Span>,
    /// `realm`
    pub realm: Option<Span>,
    /// `nonce`
    pub nonce: Option<Span>,
    /// `uri`
    pub uri: Option<Span>,
    /// `response`
    pub response: Option<Span>,
    /// `algorithm`
    pub algorithm: Option<Span>,
    /// `cnonce`
    pub cnonce: Option<Span>,
    /// `opaque`
    pub opaque: Option<Span>,
    /// `qop`
    pub qop: Option<Span>,
    /// `nc`
    pub nc: Option<Span>,
    /// `stale`
    pub stale: Option<Span>,
    /// `domain`
    pub domain: Option<Span>,
}

pub(crate) fn parse_auth(cur: &mut Cur<'_>, limits: &Limits) -> Result<Auth, ParseError> {
    cur.skip_lws();
    let scheme = cur.token();
    if scheme.is_empty() {
        return Err(cur.err("missing auth scheme"));
    }
    let mut a = Auth {
        scheme,
        ..Auth::default()
    };
    if !cur.skip_lws() {
        cur.expect_end()?;
        return Ok(a);
    }
    loop {
        cur.skip_lws();
        let name = cur.token();
        if name.is_empty() {
            return Err(cur.err("empty auth parameter"));
        }
        if !cur.eat_sep(b'=') {
            return Err(cur.err("auth parameter without '='"));
        }
        cur.skip_lws();
        let value = if cur.peek() == Some(b'"') {
            cur.quoted()?
        } else {
            // token68 values (base64) may end in '='; '/' is tolerated.
            cur.take_while(|c| is_token(c) || c == b'/' || c == b'=' || c == b':')
        };
        if a.params.len() >= limits.max_params {
            return Err(ParseError::TooManyParams {
                name: cur.name,
                at: name.start,
                max: limits.max_params,
            });
        }
        a.params.push(Param {
            name,
            value: Some(value),
        });
        let n = name.of(cur.b).to_ascii_lowercase();
        let slot = match n.as_slice() {
            b"username" => Some(&mut a.username),
            b"realm" => Some(&mut a.realm),
            b"nonce" => Some(&mut a.nonce),
            b"uri" => Some(&mut a.uri),
            b"response" => Some(&mut a.response),
            b"algorithm" => Some(&mut a.algorithm),
            b"cnonce" => Some(&mut a.cnonce),
            b"opaque" => Some(&mut a.opaque),
            b"qop" => Some(&mut a.qop),
            b"nc" => Some(&mut a.nc),
            b"stale" => Some(&mut a.stale),
            b"domain" => Some(&mut a.domain),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = Some(value);
        }
        if !cur.eat_sep(b',') {
            cur.expect_end()?;
            return Ok(a);
        }
    }
}
