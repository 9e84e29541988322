//! Via (RFC 3261 §20.42, RFC 3581 rport). Replaces `parser/parse_via.c`.

use crate::error::ParseError;
use crate::limits::Limits;
use crate::param::{parse_params, Param};
use crate::scan::{is_token, parse_u32, Cur};
use crate::span::Span;
use crate::uri::{host_kind as classify_host, HostKind};

/// One via-parm. A Via header field may hold several, comma separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// The whole value, from the protocol name to the end of the params.
    pub span: Span,
    /// Protocol name (`SIP`).
    pub protocol: Span,
    /// Protocol version (`2.0`).
    pub version: Span,
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, … any token).
    pub transport: Span,
    /// The sent-by host (IPv6 with brackets).
    pub host: Span,
    /// The sent-by host's kind.
    pub host_kind: HostKind,
    /// The sent-by port.
    pub port: Option<u16>,
    /// All parameters, in order.
    pub params: Vec<Param>,
    /// Offset just after the last parameter (or the sent-by): where new
    /// parameters are inserted.
    pub params_end: u32,
    /// `branch=` value.
    pub branch: Option<Span>,
    /// `received=` value (with brackets if written with them).
    pub received: Option<Span>,
    /// `rport` parameter: `Some(None)` without value, `Some(Some(p))` with.
    pub rport: Option<Option<u16>>,
    /// The span of the `rport` parameter (name and value), if present.
    pub rport_span: Option<Span>,
    /// `maddr=` value.
    pub maddr: Option<Span>,
    /// `ttl=` value.
    pub ttl: Option<u8>,
}

fn is_host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
}

/// Parses every via-parm of one Via header body.
pub(crate) fn parse_via_list(cur: &mut Cur<'_>, limits: &Limits) -> Result<Vec<Via>, ParseError> {
    let mut out = Vec::new();
    loop {
        if out.len() >= limits.max_vias {
            return Err(ParseError::TooManyVias {
                max: limits.max_vias,
            });
        }
        out.push(parse_one(cur, limits)?);
        // A via-parm may be followed by a comment, which we skip.
        cur.skip_lws();
        if cur.peek() == Some(b'(') {
            skip_comment(cur)?;
        }
        if !cur.eat_sep(b',') {
            cur.expect_end()?;
            return Ok(out);
        }
    }
}

fn skip_comment(cur: &mut Cur<'_>) -> Result<(), ParseError> {
    let mut depth = 0u32;
    while let Some(c) = cur.peek() {
        cur.bump();
        match c {
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(());
                }
            }
            b'\\' => cur.bump(),
            _ => {}
        }
    }
    Err(cur.err("unterminated comment"))
}

fn parse_one(cur: &mut Cur<'_>, limits: &Limits) -> Result<Via, ParseError> {
    cur.skip_lws();
    let start = cur.pos;
    let protocol = cur.token();
    if protocol.is_empty() || !cur.eat_sep(b'/') {
        return Err(cur.err("bad sent-protocol"));
    }
    cur.skip_lws();
    let version = cur.token();
    if version.is_empty() || !cur.eat_sep(b'/') {
        return Err(cur.err("bad sent-protocol version"));
    }
    cur.skip_lws();
    let transport = cur.token();
    if transport.is_empty() {
        return Err(cur.err("missing transport"));
    }
    if !cur.skip_lws() {
        return Err(cur.err("missing space before sent-by"));
    }
    let host = if cur.peek() == Some(b'[') {
        let hs = cur.pos;
        cur.take_while(|c| c != b']' && c != b',' && c != b';');
        if !cur.eat(b']') {
            return Err(cur.err("unterminated IPv6 reference"));
        }
        Span::new(hs, cur.pos)
    } else {
        cur.take_while(is_host_char)
    };
    let host_kind = classify_host(host.of(cur.b)).ok_or_else(|| cur.err("bad sent-by host"))?;
    let mut port = None;
    if cur.eat_sep(b':') {
        cur.skip_lws();
        let p = cur.take_while(|c| c.is_ascii_digit());
        port =
            Some(parse_u32(p.of(cur.b), 65535).ok_or_else(|| cur.err("bad sent-by port"))? as u16);
    }
    let params = parse_params(cur, limits.max_params)?;
    let mut via = Via {
        span: Span::new(start, cur.pos),
        protocol,
        version,
        transport,
        host,
        host_kind,
        port,
        params_end: cur.pos as u32,
        params,
        branch: None,
        received: None,
        rport: None,
        rport_span: None,
        maddr: None,
        ttl: None,
    };
    for p in &via.params {
        let n = p.name.of(cur.b);
        let v = p.value.map(|v| v.of(cur.b));
        let at = p.name.start;
        let bad = |what| ParseError::BadHeader {
            name: cur.name,
            at,
            what,
        };
        if n.eq_ignore_ascii_case(b"branch") {
            let v = v
                .filter(|v| v.iter().all(|c| is_token(*c)))
                .ok_or_else(|| bad("bad branch"))?;
            let _ = v;
            via.branch = p.value;
        } else if n.eq_ignore_ascii_case(b"received") {
            let v = v.ok_or_else(|| bad("received without value"))?;
            let ok = matches!(classify_host(v), Some(HostKind::Ipv4 | HostKind::Ipv6))
                || matches!(
                    classify_host(&[b"[", v, b"]"].concat()),
                    Some(HostKind::Ipv6)
                );
            if !ok {
                return Err(bad("received is not an IP address"));
            }
            via.received = p.value;
        } else if n.eq_ignore_ascii_case(b"rport") {
            via.rport = Some(match v {
                None => None,
                Some(v) => Some(parse_u32(v, 65535).ok_or_else(|| bad("bad rport"))? as u16),
            });
            via.rport_span = Some(Span::new(
                p.name.begin(),
                p.value.map_or(p.name.end(), |v| v.end()),
            ));
        } else if n.eq_ignore_ascii_case(b"maddr") {
            let v = v.ok_or_else(|| bad("maddr without value"))?;
            classify_host(v).ok_or_else(|| bad("bad maddr"))?;
            via.maddr = p.value;
        } else if n.eq_ignore_ascii_case(b"ttl") {
            via.ttl = Some(
                v.and_then(|v| parse_u32(v, 255))
                    .ok_or_else(|| bad("bad ttl"))? as u8,
            );
        }
    }
    Ok(via)
}
