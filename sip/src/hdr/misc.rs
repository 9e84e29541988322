//! Small header grammars: CSeq, numbers, Call-ID, token lists, media
//! types, Event, Date. Replaces `parser/parse_cseq.c`, `parse_expires.c`,
//! `parse_content.c`, `parse_event.c`, `parse_supported.c` ….

use crate::error::ParseError;
use crate::hdr::addr::is_word_char;
use crate::limits::Limits;
use crate::method::Method;
use crate::param::{parse_params, Param};
use crate::scan::{parse_u32, Cur};
use crate::span::Span;

/// CSeq: sequence number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (< 2^31 per RFC 3261, up to 2^32-1 accepted).
    pub number: u32,
    /// The method, recognised.
    pub method: Method,
    /// The method as written.
    pub method_span: Span,
}

/// A media type with parameters (Content-Type, Accept entries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    /// The type (`application`, `*`).
    pub mtype: Span,
    /// The subtype (`sdp`, `*`).
    pub subtype: Span,
    /// Parameters.
    pub params: Vec<Param>,
}

/// An Event header value (RFC 6665).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event package (with template suffixes, e.g. `presence.winfo`).
    pub package: Span,
    /// `id=` value.
    pub id: Option<Span>,
    /// Parameters.
    pub params: Vec<Param>,
}

pub(crate) fn parse_cseq(cur: &mut Cur<'_>) -> Result<CSeq, ParseError> {
    cur.skip_lws();
    let n = cur.take_while(|c| c.is_ascii_digit());
    let number = parse_u32(n.of(cur.b), u32::MAX).ok_or_else(|| cur.err("bad sequence number"))?;
    if !cur.skip_lws() {
        return Err(cur.err("missing method"));
    }
    let method_span = cur.token();
    if method_span.is_empty() {
        return Err(cur.err("missing method"));
    }
    cur.expect_end()?;
    Ok(CSeq {
        number,
        method: Method::from_bytes(method_span.of(cur.b)),
        method_span,
    })
}

/// A bare decimal number of at most `max`.
pub(crate) fn parse_number(cur: &mut Cur<'_>, max: u32) -> Result<u32, ParseError> {
    cur.skip_lws();
    let n = cur.take_while(|c| c.is_ascii_digit());
    let v = parse_u32(n.of(cur.b), max).ok_or_else(|| cur.err("bad number"))?;
    cur.expect_end()?;
    Ok(v)
}

/// `callid = word [ "@" word ]`.
pub(crate) fn parse_call_id(cur: &mut Cur<'_>) -> Result<Span, ParseError> {
    cur.skip_lws();
    let s = cur.take_while(|c| is_word_char(c) || c == b'@');
    if s.is_empty() {
        return Err(cur.err("empty Call-ID"));
    }
    cur.expect_end()?;
    Ok(s)
}

/// A comma-separated list of tokens, each possibly with parameters (which
/// are skipped); an empty list is allowed.
pub(crate) fn parse_tokens(cur: &mut Cur<'_>, limits: &Limits) -> Result<Vec<Span>, ParseError> {
    let mut out = Vec::new();
    cur.skip_lws();
    if cur.at_end() {
        return Ok(out);
    }
    loop {
        cur.skip_lws();
        let t = cur.token();
        if t.is_empty() {
            return Err(cur.err("expected token"));
        }
        parse_params(cur, limits.max_params)?;
        if out.len() >= limits.max_params {
            return Err(ParseError::TooManyParams {
                name: cur.name,
                at: t.start,
                max: limits.max_params,
            });
        }
        out.push(t);
        if !cur.eat_sep(b',') {
            cur.expect_end()?;
            return Ok(out);
        }
    }
}

fn media_type(cur: &mut Cur<'_>, limits: &Limits) -> Result<MediaType, ParseError> {
    cur.skip_lws();
    let mtype = cur.token();
    if mtype.is_empty() || !cur.eat_sep(b'/') {
        return Err(cur.err("bad media type"));
    }
    cur.skip_lws();
    let subtype = cur.token();
    if subtype.is_empty() {
        return Err(cur.err("bad media subtype"));
    }
    let params = parse_params(cur, limits.max_params)?;
    Ok(MediaType {
        mtype,
        subtype,
        params,
    })
}

pub(crate) fn parse_content_type(
    cur: &mut Cur<'_>,
    limits: &Limits,
) -> Result<MediaType, ParseError> {
    let m = media_type(cur, limits)?;
    cur.expect_end()?;
    Ok(m)
}

/// Accept: a possibly empty list of media ranges.
pub(crate) fn parse_accept(
    cur: &mut Cur<'_>,
    limits: &Limits,
) -> Result<Vec<MediaType>, ParseError> {
    let mut out = Vec::new();
    cur.skip_lws();
    if cur.at_end() {
        return Ok(out);
    }
    loop {
        if out.len() >= limits.max_params {
            return Err(ParseError::TooManyParams {
                name: cur.name,
                at: cur.pos as u32,
                max: limits.max_params,
            });
        }
        out.push(media_type(cur, limits)?);
        if !cur.eat_sep(b',') {
            cur.expect_end()?;
            return Ok(out);
        }
    }
}

pub(crate) fn parse_event(cur: &mut Cur<'_>, limits: &Limits) -> Result<Event, ParseError> {
    cur.skip_lws();
    let package = cur.token();
    if package.is_empty() {
        return Err(cur.err("missing event package"));
    }
    let params = parse_params(cur, limits.max_params)?;
    cur.expect_end()?;
    let id = crate::param::find_param(cur.b, &params, b"id").and_then(|p| p.value);
    Ok(Event {
        package,
        id,
        params,
    })
}

/// `rfc1123-date = wkday "," SP date1 SP time SP "GMT"`.
pub(crate) fn parse_date(cur: &mut Cur<'_>) -> Result<Span, ParseError> {
    cur.skip_lws();
    let start = cur.pos;
    let s = Span::new(start, cur.end);
    let mut end = s.end();
    while end > start && crate::scan::is_lws(cur.b[end - 1]) {
        end -= 1;
    }
    let v = &cur.b[start..end];
    let ok = v.len() == 29
        && [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"]
            .iter()
            .any(|d| &v[..3] == *d)
        && &v[3..5] == b", "
        && v[5..7].iter().all(u8::is_ascii_digit)
        && v[7] == b' '
        && [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ]
        .iter()
        .any(|m| &v[8..11] == *m)
        && v[11] == b' '
        && v[12..16].iter().all(u8::is_ascii_digit)
        && v[16] == b' '
        && v[17..19].iter().all(u8::is_ascii_digit)
        && v[19] == b':'
        && v[20..22].iter().all(u8::is_ascii_digit)
        && v[22] == b':'
        && v[23..25].iter().all(u8::is_ascii_digit)
        && &v[25..] == b" GMT";
    if !ok {
        return Err(cur.err("not an RFC 1123 date in GMT"));
    }
    Ok(Span::new(start, end))
}

/// Free text: the trimmed body, which must not contain control
/// characters other than folding white space.
pub(crate) fn parse_text(cur: &mut Cur<'_>) -> Result<Span, ParseError> {
    cur.skip_lws();
    let start = cur.pos;
    let mut end = cur.end;
    while end > start && crate::scan::is_lws(cur.b[end - 1]) {
        end -= 1;
    }
    Ok(Span::new(start, end))
}
