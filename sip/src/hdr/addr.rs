//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route,
//! Path, Refer-To … Replaces `parser/parse_to.c`, `parse_from.c`,
//! `parse_rr.c` and `contact/`.

use crate::error::ParseError;
use crate::limits::Limits;
use crate::param::{find_param, parse_params, Param};
use crate::scan::{is_lws, is_token, parse_u32, Cur};
use crate::span::Span;
use crate::uri::{parse_uri_at, Uri};

/// `[display-name] <URI> *(;param)` or `URI *(;param)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The whole value, display name to last parameter.
    pub span: Span,
    /// Display name as written (quoted string with quotes, or tokens).
    pub display: Option<Span>,
    /// The URI.
    pub uri: Uri,
    /// Whether the URI was enclosed in `<>`.
    pub angle: bool,
    /// Header parameters (after the URI).
    pub params: Vec<Param>,
    /// `tag=` value.
    pub tag: Option<Span>,
}

impl NameAddr {
    /// The display name with quotes and quoted-pairs resolved.
    pub fn display_name(&self, buf: &[u8]) -> Option<Vec<u8>> {
        self.display.map(|d| crate::scan::unquote(d.of(buf)))
    }

    /// The first header parameter called `name` (case-insensitive).
    pub fn param<'p>(&'p self, buf: &[u8], name: &[u8]) -> Option<&'p Param> {
        find_param(buf, &self.params, name)
    }
}

/// One Contact value: a name-addr plus its `q` and `expires` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The address and its parameters.
    pub addr: NameAddr,
    /// `q=` in thousandths (0..=1000).
    pub q: Option<u16>,
    /// `expires=` in seconds.
    pub expires: Option<u32>,
}

/// A Contact header body: `*` or a list of contacts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (REGISTER removal of all bindings).
    Star,
    /// One or more contacts.
    List(Vec<Contact>),
}

/// Parses one name-addr or addr-spec with its parameters.
pub(crate) fn parse_name_addr(cur: &mut Cur<'_>, limits: &Limits) -> Result<NameAddr, ParseError> {
    cur.skip_lws();
    let start = cur.pos;
    let mut display = None;
    if cur.peek() == Some(b'"') {
        display = Some(cur.quoted()?);
        cur.skip_lws();
        if cur.peek() != Some(b'<') {
            return Err(cur.err("expected '<' after display name"));
        }
    } else if cur.peek() != Some(b'<') {
        // A token sequence followed by '<' is a display name; anything
        // else is an addr-spec.
        let save = cur.pos;
        let mut last = cur.pos;
        loop {
            let t = cur.token();
            if t.is_empty() {
                break;
            }
            last = cur.pos;
            cur.skip_lws();
        }
        if last > save && cur.peek() == Some(b'<') {
            display = Some(Span::new(save, last));
        } else {
            cur.pos = save;
        }
    }
    let (uri, angle) = if cur.eat(b'<') {
        let us = cur.pos;
        let ue = cur.b[us..cur.end]
            .iter()
            .position(|c| *c == b'>')
            .map(|p| us + p);
        let ue = ue.ok_or_else(|| cur.err("missing '>'"))?;
        if ue == us || is_lws(cur.b[us]) || is_lws(cur.b[ue - 1]) {
            return Err(cur.err("white space inside '<>'"));
        }
        let uri = parse_uri_at(cur.b, Span::new(us, ue), limits)?;
        cur.pos = ue + 1;
        (uri, true)
    } else {
        let us = cur.pos;
        let uspan = cur.take_while(|c| !is_lws(c) && !matches!(c, b';' | b',' | b'>'));
        if uspan.is_empty() {
            return Err(cur.err("missing URI"));
        }
        let uri = parse_uri_at(cur.b, uspan, limits)?;
        if uri.headers.is_some() || !uri.params.is_empty() {
            return Err(ParseError::BadHeader {
                name: cur.name,
                at: us as u32,
                what: "URI with headers outside '<>'",
            });
        }
        (uri, false)
    };
    let params = parse_params(cur, limits.max_params)?;
    let tag = find_param(cur.b, &params, b"tag").and_then(|p| p.value);
    if find_param(cur.b, &params, b"tag").is_some() && tag.is_none() {
        return Err(cur.err("tag without value"));
    }
    Ok(NameAddr {
        span: Span::new(start, cur.pos),
        display,
        uri,
        angle,
        params,
        tag,
    })
}

/// Parses a header holding exactly one name-addr (From, To, Refer-To …).
pub(crate) fn parse_single(cur: &mut Cur<'_>, limits: &Limits) -> Result<NameAddr, ParseError> {
    let na = parse_name_addr(cur, limits)?;
    cur.expect_end()?;
    Ok(na)
}

/// Parses a comma-separated list of name-addrs (Route, Record-Route …).
pub(crate) fn parse_list(cur: &mut Cur<'_>, limits: &Limits) -> Result<Vec<NameAddr>, ParseError> {
    let mut out = Vec::new();
    loop {
        if out.len() >= limits.max_params {
            return Err(ParseError::TooManyParams {
                name: cur.name,
                at: cur.pos as u32,
                max: limits.max_params,
            });
        }
        out.push(parse_name_addr(cur, limits)?);
        if !cur.eat_sep(b',') {
            cur.expect_end()?;
            return Ok(out);
        }
    }
}

/// Parses a Contact header body.
pub(crate) fn parse_contacts(cur: &mut Cur<'_>, limits: &Limits) -> Result<Contacts, ParseError> {
    cur.skip_lws();
    if cur.peek() == Some(b'*') {
        cur.bump();
        cur.expect_end()?;
        return Ok(Contacts::Star);
    }
    let list = parse_list(cur, limits)?;
    let mut out = Vec::with_capacity(list.len());
    for addr in list {
        let mut c = Contact {
            q: None,
            expires: None,
            addr,
        };
        for p in &c.addr.params {
            let n = p.name.of(cur.b);
            let v = p.value.map(|v| v.of(cur.b));
            let bad = |what| ParseError::BadHeader {
                name: cur.name,
                at: p.name.start,
                what,
            };
            if n.eq_ignore_ascii_case(b"q") {
                c.q = Some(v.and_then(parse_q).ok_or_else(|| bad("bad q value"))?);
            } else if n.eq_ignore_ascii_case(b"expires") {
                c.expires = Some(
                    v.and_then(|v| parse_u32(v, u32::MAX))
                        .ok_or_else(|| bad("bad expires"))?,
                );
            }
        }
        out.push(c);
    }
    Ok(Contacts::List(out))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in
/// thousandths.
pub(crate) fn parse_q(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|c| *c == b'.') {
        Some(p) => (&v[..p], &v[p + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut f = 0u16;
    for i in 0..3 {
        f = f * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(f),
        b"1" if f == 0 => Some(1000),
        _ => None,
    }
}

/// True if `c` may appear in a Call-ID `word`.
pub(crate) fn is_word_char(c: u8) -> bool {
    is_token(c) || b"()<>:\\\"/[]?{}".contains(&c)
}
