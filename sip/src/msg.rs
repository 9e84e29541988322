//! The received message: first line, header index, body, lazy typed
//! access. Replaces `parser/msg_parser.c`, `parse_fline.c`, `parse_hname2.c`
//! and `parse_hostport.c`'s callers.

use std::cell::OnceCell;

use crate::error::ParseError;
use crate::hdr::addr::{Contacts, NameAddr};
use crate::hdr::auth::Auth;
use crate::hdr::misc::{CSeq, Event, MediaType};
use crate::hdr::via::Via;
use crate::hdr::{parse_value, HeaderValue};
use crate::hname::HeaderName;
use crate::limits::Limits;
use crate::method::Method;
use crate::scan::{find_byte, is_lws, is_token, parse_u32};
use crate::span::Span;
use crate::uri::{parse_uri_at, Uri};

/// The request or status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstLine {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// The method, recognised.
        method: Method,
        /// The method as written.
        method_span: Span,
        /// The Request-URI as written.
        uri: Span,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Reply {
        /// Status code, 100..=699.
        status: u16,
        /// The reason phrase (any bytes up to the line end).
        reason: Span,
    },
}

/// One header field of the index: its name, where it is, and its typed
/// value once somebody asked for it.
#[derive(Clone, Debug)]
pub struct Header {
    /// The recognised name.
    pub name: HeaderName,
    /// The name as written.
    pub name_span: Span,
    /// The body, trimmed of surrounding white space (may contain folds).
    pub body_span: Span,
    /// The whole field including its line end(s).
    pub span: Span,
    parsed: OnceCell<Result<HeaderValue, ParseError>>,
}

/// A SIP message: the received bytes plus an index of spans into them.
/// Typed header values are parsed on first access and cached.
#[derive(Clone, Debug)]
pub struct SipMsg {
    buf: Vec<u8>,
    limits: Limits,
    first: FirstLine,
    first_line: Span,
    headers: Vec<Header>,
    /// Offset of the empty line ending the header section (or of the end
    /// of input when there is none).
    hdr_end: u32,
    /// Whether the header section is closed by an empty line.
    has_empty_line: bool,
    body: Span,
    content_length: Option<u32>,
    /// Content-Length promised more than the datagram holds.
    truncated: Option<u32>,
    /// An HTTP/1.x request that arrived on a stream (XML-RPC on the SIP
    /// TCP port, as SER 3.0 serves it).
    http: bool,
    ruri: OnceCell<Result<Uri, ParseError>>,
}

impl SipMsg {
    /// Parses a datagram-framed message with [`Limits::DEFAULT`].
    pub fn parse(buf: Vec<u8>) -> Result<SipMsg, ParseError> {
        SipMsg::parse_with(buf, &Limits::DEFAULT)
    }

    /// Parses first line, header index and body span. Header bodies are
    /// not parsed except Content-Length, which frames the body. Without
    /// Content-Length the body is the rest of the datagram; bytes after
    /// `Content-Length` octets of body are ignored.
    pub fn parse_with(buf: Vec<u8>, limits: &Limits) -> Result<SipMsg, ParseError> {
        SipMsg::parse_impl(buf, limits, false)
    }

    /// Parses a message framed on a stream (TCP, TLS) with
    /// [`Limits::DEFAULT`]. Besides SIP, an HTTP/1.0 or HTTP/1.1 request line
    /// is accepted ([`SipMsg::is_http`]): SER 3.0 serves XML-RPC on the SIP
    /// TCP port.
    pub fn parse_stream(buf: Vec<u8>) -> Result<SipMsg, ParseError> {
        SipMsg::parse_impl(buf, &Limits::DEFAULT, true)
    }

    fn parse_impl(buf: Vec<u8>, limits: &Limits, allow_http: bool) -> Result<SipMsg, ParseError> {
        if buf.len() > limits.max_msg_len || buf.len() > u32::MAX as usize {
            return Err(ParseError::TooLarge {
                len: buf.len(),
                max: limits.max_msg_len,
            });
        }
        let (first, first_line, mut p) = parse_first_line(&buf, allow_http)?;
        let http = allow_http && is_http_request_line(&buf, first_line);
        let mut headers: Vec<Header> = Vec::with_capacity(16);
        let mut content_length = None;
        let len = buf.len();
        let (hdr_end, has_empty_line, body_start) = loop {
            if p >= len {
                break (len, false, len);
            }
            if buf[p] == b'\n' {
                break (p, true, p + 1);
            }
            if buf[p] == b'\r' && buf.get(p + 1) == Some(&b'\n') {
                break (p, true, p + 2);
            }
            let h = index_header(&buf, p, limits)?;
            if headers.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders {
                    max: limits.max_headers,
                });
            }
            if h.name == HeaderName::ContentLength && content_length.is_none() {
                let v = parse_value(&buf, h.name, h.body_span, limits)?;
                if let HeaderValue::Number(n) = v {
                    content_length = Some(n);
                }
                let _ = h.parsed.set(Ok(v));
            }
            p = h.span.end();
            headers.push(h);
        };
        let avail = len - body_start;
        let (body, truncated) = match content_length {
            Some(cl) if (cl as usize) <= avail => {
                (Span::new(body_start, body_start + cl as usize), None)
            }
            Some(cl) => (Span::new(body_start, len), Some(cl)),
            None => (Span::new(body_start, len), None),
        };
        Ok(SipMsg {
            buf,
            limits: limits.clone(),
            first,
            first_line,
            headers,
            hdr_end: hdr_end as u32,
            has_empty_line,
            body,
            content_length,
            truncated,
            http,
            ruri: OnceCell::new(),
        })
    }

    /// True for an HTTP request received on a stream (see
    /// [`SipMsg::parse_stream`]): its Request-URI is a path, and it has no
    /// Via, From, To, Call-ID or CSeq to check.
    pub fn is_http(&self) -> bool {
        self.http
    }

    /// The received bytes (including any trailing octets past the body).
    pub fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// Gives the received buffer back.
    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes of `span`.
    pub fn s(&self, span: Span) -> &[u8] {
        span.of(&self.buf)
    }

    /// The limits this message was parsed with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The parsed first line.
    pub fn first_line(&self) -> &FirstLine {
        &self.first
    }

    /// The first line without its line end.
    pub fn first_line_span(&self) -> Span {
        self.first_line
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.first, FirstLine::Request { .. })
    }

    /// The request method (`None` for replies).
    pub fn method(&self) -> Option<Method> {
        match self.first {
            FirstLine::Request { method, .. } => Some(method),
            FirstLine::Reply { .. } => None,
        }
    }

    /// The request method as written (empty for replies).
    pub fn method_bytes(&self) -> &[u8] {
        match self.first {
            FirstLine::Request { method_span, .. } => self.s(method_span),
            FirstLine::Reply { .. } => &[],
        }
    }

    /// The Request-URI as written.
    pub fn ruri(&self) -> Option<&[u8]> {
        match self.first {
            FirstLine::Request { uri, .. } => Some(self.s(uri)),
            FirstLine::Reply { .. } => None,
        }
    }

    /// The Request-URI span.
    pub fn ruri_span(&self) -> Option<Span> {
        match self.first {
            FirstLine::Request { uri, .. } => Some(uri),
            FirstLine::Reply { .. } => None,
        }
    }

    /// The parsed Request-URI (cached).
    pub fn parsed_ruri(&self) -> Result<&Uri, ParseError> {
        let FirstLine::Request { uri, .. } = self.first else {
            return Err(ParseError::NotApplicable {
                what: "a reply has no Request-URI",
            });
        };
        self.ruri
            .get_or_init(|| parse_uri_at(&self.buf, uri, &self.limits))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The reply status code.
    pub fn status(&self) -> Option<u16> {
        match self.first {
            FirstLine::Reply { status, .. } => Some(status),
            FirstLine::Request { .. } => None,
        }
    }

    /// The reply reason phrase.
    pub fn reason(&self) -> Option<&[u8]> {
        match self.first {
            FirstLine::Reply { reason, .. } => Some(self.s(reason)),
            FirstLine::Request { .. } => None,
        }
    }

    /// All header fields in message order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The body bytes of a header field.
    pub fn header_body(&self, h: &Header) -> &[u8] {
        self.s(h.body_span)
    }

    /// The name bytes of a header field as written.
    pub fn header_name(&self, h: &Header) -> &[u8] {
        self.s(h.name_span)
    }

    /// The first header field called `name`.
    pub fn find(&self, name: HeaderName) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// Every header field called `name`, in order.
    pub fn find_all(&self, name: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// Every header field whose name matches `name` case-insensitively;
    /// known names also match their compact form (`v` finds `Via`).
    pub fn find_by_name<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a Header> + 'a {
        let known = HeaderName::from_bytes(name);
        self.headers.iter().filter(move |h| {
            if known != HeaderName::Other {
                h.name == known
            } else {
                h.name == HeaderName::Other && self.s(h.name_span).eq_ignore_ascii_case(name)
            }
        })
    }

    /// The typed value of a header field (parsed once, then cached).
    pub fn parsed<'a>(&'a self, h: &'a Header) -> Result<&'a HeaderValue, ParseError> {
        h.parsed
            .get_or_init(|| parse_value(&self.buf, h.name, h.body_span, &self.limits))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn first_of(&self, name: HeaderName) -> Result<&HeaderValue, ParseError> {
        let h = self.find(name).ok_or(ParseError::MissingHeader { name })?;
        self.parsed(h)
    }

    /// The via-parms of one Via header field.
    pub fn vias_of<'a>(&'a self, h: &'a Header) -> Result<&'a [Via], ParseError> {
        match self.parsed(h)? {
            HeaderValue::Via(v) => Ok(v),
            _ => Err(ParseError::NotApplicable {
                what: "not a Via header",
            }),
        }
    }

    /// Every via-parm of the message in order, across Via header fields.
    pub fn vias(&self) -> impl Iterator<Item = Result<&Via, ParseError>> + '_ {
        self.find_all(HeaderName::Via).flat_map(|h| {
            let v: Box<dyn Iterator<Item = Result<&Via, ParseError>>> = match self.vias_of(h) {
                Ok(v) => Box::new(v.iter().map(Ok)),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            v
        })
    }

    /// The topmost via-parm.
    pub fn via1(&self) -> Result<&Via, ParseError> {
        let h = self
            .find(HeaderName::Via)
            .ok_or(ParseError::MissingHeader {
                name: HeaderName::Via,
            })?;
        // A parsed Via field holds at least one via-parm.
        self.vias_of(h)?.first().ok_or(ParseError::MissingHeader {
            name: HeaderName::Via,
        })
    }

    /// The second via-parm (possibly in the same header field as the
    /// first); `Ok(None)` when there is only one.
    pub fn via2(&self) -> Result<Option<&Via>, ParseError> {
        let mut fields = self.find_all(HeaderName::Via);
        let Some(h) = fields.next() else {
            return Ok(None);
        };
        let first = self.vias_of(h)?;
        if let Some(v) = first.get(1) {
            return Ok(Some(v));
        }
        match fields.next() {
            Some(h) => Ok(self.vias_of(h)?.first()),
            None => Ok(None),
        }
    }

    fn name_addr(&self, name: HeaderName) -> Result<&NameAddr, ParseError> {
        match self.first_of(name)? {
            HeaderValue::NameAddr(n) => Ok(n),
            _ => Err(ParseError::NotApplicable {
                what: "not a name-addr header",
            }),
        }
    }

    /// The From header value.
    pub fn from(&self) -> Result<&NameAddr, ParseError> {
        self.name_addr(HeaderName::From)
    }

    /// The To header value.
    pub fn to(&self) -> Result<&NameAddr, ParseError> {
        self.name_addr(HeaderName::To)
    }

    /// The Call-ID (trimmed body of the first Call-ID header field).
    pub fn call_id(&self) -> Option<&[u8]> {
        self.find(HeaderName::CallId).map(|h| self.header_body(h))
    }

    /// The CSeq value.
    pub fn cseq(&self) -> Result<&CSeq, ParseError> {
        match self.first_of(HeaderName::CSeq)? {
            HeaderValue::CSeq(c) => Ok(c),
            _ => Err(ParseError::NotApplicable {
                what: "not a CSeq header",
            }),
        }
    }

    /// The first Content-Length value (parsed while indexing).
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    fn number(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        match self.find(name) {
            None => Ok(None),
            Some(h) => match self.parsed(h)? {
                HeaderValue::Number(n) => Ok(Some(*n)),
                _ => Err(ParseError::NotApplicable {
                    what: "not a numeric header",
                }),
            },
        }
    }

    /// Max-Forwards (0..=255), if present.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        Ok(self
            .number(HeaderName::MaxForwards)?
            .map(|n| n.min(255) as u8))
    }

    /// Expires header value, if present.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::Expires)
    }

    /// The contacts of one Contact header field.
    pub fn contacts_of<'a>(&'a self, h: &'a Header) -> Result<&'a Contacts, ParseError> {
        match self.parsed(h)? {
            HeaderValue::Contact(c) => Ok(c),
            _ => Err(ParseError::NotApplicable {
                what: "not a Contact header",
            }),
        }
    }

    /// The name-addr list of one Route / Record-Route / Path field.
    pub fn routes_of<'a>(&'a self, h: &'a Header) -> Result<&'a [NameAddr], ParseError> {
        match self.parsed(h)? {
            HeaderValue::NameAddrList(l) => Ok(l),
            _ => Err(ParseError::NotApplicable {
                what: "not a route header",
            }),
        }
    }

    /// The credentials or challenge of one Authorization,
    /// Proxy-Authorization, WWW-Authenticate or Proxy-Authenticate field.
    pub fn auth_of<'a>(&'a self, h: &'a Header) -> Result<&'a Auth, ParseError> {
        match self.parsed(h)? {
            HeaderValue::Auth(a) => Ok(a),
            _ => Err(ParseError::NotApplicable {
                what: "not an auth header",
            }),
        }
    }

    /// The tokens of one Supported / Require / Proxy-Require /
    /// Unsupported / Allow / Allow-Events … field.
    pub fn tokens_of<'a>(&'a self, h: &'a Header) -> Result<&'a [Span], ParseError> {
        match self.parsed(h)? {
            HeaderValue::Tokens(t) => Ok(t),
            _ => Err(ParseError::NotApplicable {
                what: "not a token-list header",
            }),
        }
    }

    /// The Content-Type, if present.
    pub fn content_type(&self) -> Result<Option<&MediaType>, ParseError> {
        match self.find(HeaderName::ContentType) {
            None => Ok(None),
            Some(h) => match self.parsed(h)? {
                HeaderValue::MediaType(m) => Ok(Some(m)),
                _ => Err(ParseError::NotApplicable {
                    what: "not a media type",
                }),
            },
        }
    }

    /// The Event header value, if present.
    pub fn event(&self) -> Result<Option<&Event>, ParseError> {
        match self.find(HeaderName::Event) {
            None => Ok(None),
            Some(h) => match self.parsed(h)? {
                HeaderValue::Event(e) => Ok(Some(e)),
                _ => Err(ParseError::NotApplicable {
                    what: "not an Event header",
                }),
            },
        }
    }

    /// The first Contact header's value, if present.
    pub fn contact(&self) -> Result<Option<&Contacts>, ParseError> {
        self.find(HeaderName::Contact)
            .map(|h| self.contacts_of(h))
            .transpose()
    }

    /// The body (exactly Content-Length octets when that is present and
    /// fits the buffer).
    pub fn body(&self) -> &[u8] {
        self.s(self.body)
    }

    /// The body span.
    pub fn body_span(&self) -> Span {
        self.body
    }

    /// Offset where the header section ends (the empty line); new headers
    /// are inserted here.
    pub fn headers_end(&self) -> usize {
        self.hdr_end as usize
    }

    /// Whether the header section was closed by an empty line.
    pub fn has_empty_line(&self) -> bool {
        self.has_empty_line
    }

    /// When Content-Length promised more octets than the datagram holds,
    /// the promised length.
    pub fn truncated_body(&self) -> Option<u32> {
        self.truncated
    }

    /// Length of the message proper (trailing octets after the body of a
    /// datagram are not part of it).
    pub fn msg_len(&self) -> usize {
        self.body.end()
    }
}

/// Parses the first line, skipping leading empty lines (RFC 3261 §7.5).
/// Returns the line, its span and the offset of the next line.
/// With `allow_http` (a stream), an `HTTP/1.x` request line is accepted too.
pub(crate) fn parse_first_line(
    buf: &[u8],
    allow_http: bool,
) -> Result<(FirstLine, Span, usize), ParseError> {
    let mut s = 0;
    while s < buf.len() && (buf[s] == b'\r' || buf[s] == b'\n') {
        s += 1;
    }
    let nl = find_byte(&buf[s..], b'\n').map(|p| s + p);
    let nl = nl.ok_or(ParseError::Truncated {
        at: buf.len() as u32,
    })?;
    let e = if nl > s && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[s..e];
    let bad = |at: usize, what| ParseError::BadFirstLine {
        at: (s + at) as u32,
        what,
    };
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = line
            .iter()
            .position(|c| *c == b' ')
            .ok_or_else(|| bad(0, "missing status code"))?;
        check_version(&line[..sp]).map_err(|unsupported| {
            if unsupported {
                ParseError::UnsupportedVersion { at: s as u32 }
            } else {
                bad(0, "bad SIP version")
            }
        })?;
        let code = &line[sp + 1..line.len().min(sp + 4)];
        if code.len() != 3 || line.get(sp + 4).is_some_and(|c| *c != b' ') {
            return Err(bad(sp + 1, "status code is not 3 digits"));
        }
        let status = parse_u32(code, 999)
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| bad(sp + 1, "bad status code"))?;
        let rs = (s + sp + 5).min(e);
        if let Some(p) = buf[rs..e].iter().position(|c| *c == b'\r' || *c == 0) {
            return Err(bad(rs - s + p, "control character in reason phrase"));
        }
        let fl = FirstLine::Reply {
            status: status as u16,
            reason: Span::new(rs, e),
        };
        return Ok((fl, Span::new(s, e), nl + 1));
    }
    let sp1 = line
        .iter()
        .position(|c| *c == b' ')
        .ok_or_else(|| bad(0, "missing Request-URI"))?;
    if sp1 == 0 || !line[..sp1].iter().all(|c| is_token(*c)) {
        return Err(bad(0, "bad method"));
    }
    let rest = &line[sp1 + 1..];
    let sp2 = rest
        .iter()
        .position(|c| *c == b' ')
        .ok_or_else(|| bad(sp1 + 1, "missing SIP version"))?;
    if sp2 == 0 {
        return Err(bad(sp1 + 1, "empty Request-URI"));
    }
    if let Some(p) = rest[..sp2].iter().position(|c| *c <= b' ' || *c == 0x7f) {
        return Err(bad(sp1 + 1 + p, "control character in Request-URI"));
    }
    let vs = sp1 + 1 + sp2 + 1;
    let version = &line[vs..];
    check_version(version)
        .or_else(|e| {
            if allow_http && is_http_version(version) {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|unsupported| {
            if unsupported {
                ParseError::UnsupportedVersion {
                    at: (s + vs) as u32,
                }
            } else {
                bad(vs, "bad SIP version")
            }
        })?;
    let method_span = Span::new(s, s + sp1);
    let fl = FirstLine::Request {
        method: Method::from_bytes(&line[..sp1]),
        method_span,
        uri: Span::new(s + sp1 + 1, s + sp1 + 1 + sp2),
    };
    Ok((fl, Span::new(s, e), nl + 1))
}

/// `HTTP/1.0` or `HTTP/1.1` (the version of an XML-RPC request).
fn is_http_version(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"HTTP/1.0") || v.eq_ignore_ascii_case(b"HTTP/1.1")
}

/// Whether a parsed request line ends in an HTTP version.
pub(crate) fn is_http_request_line(buf: &[u8], line: Span) -> bool {
    let line = line.of(buf);
    line.len() > 9 && line[line.len() - 9] == b' ' && is_http_version(&line[line.len() - 8..])
}

/// Ok for `SIP/2.0`; Err(true) for another well-formed version,
/// Err(false) for garbage.
fn check_version(v: &[u8]) -> Result<(), bool> {
    if v.len() < 4 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(false);
    }
    let num = &v[4..];
    if num == b"2.0" {
        return Ok(());
    }
    let dot = num.iter().position(|c| *c == b'.').ok_or(false)?;
    let (maj, min) = (&num[..dot], &num[dot + 1..]);
    let digits = |d: &[u8]| !d.is_empty() && d.len() <= 5 && d.iter().all(u8::is_ascii_digit);
    Err(digits(maj) && digits(min))
}

/// Indexes the header field starting at `p` (not an empty line).
pub(crate) fn index_header(buf: &[u8], p: usize, limits: &Limits) -> Result<Header, ParseError> {
    let len = buf.len();
    let mut q = p;
    while q < len && is_token(buf[q]) {
        q += 1;
    }
    if q == p {
        return Err(ParseError::BadHeaderLine {
            at: p as u32,
            what: "bad header name",
        });
    }
    let name_span = Span::new(p, q);
    while q < len && (buf[q] == b' ' || buf[q] == b'\t') {
        q += 1;
    }
    if q >= len || buf[q] != b':' {
        return Err(ParseError::BadHeaderLine {
            at: p as u32,
            what: "missing colon",
        });
    }
    let colon = q;
    // Find the end of the field: a line end not followed by SP/HT.
    let mut s = colon + 1;
    let (line_end, next) = loop {
        match find_byte(&buf[s..], b'\n') {
            None => break (len, len),
            Some(off) => {
                let nl = s + off;
                if nl + 1 < len && (buf[nl + 1] == b' ' || buf[nl + 1] == b'\t') {
                    s = nl + 1;
                    continue;
                }
                break (nl, nl + 1);
            }
        }
    };
    if next - p > limits.max_header_len {
        return Err(ParseError::HeaderTooLong {
            at: p as u32,
            max: limits.max_header_len,
        });
    }
    let mut bs = colon + 1;
    let mut be = line_end;
    while bs < be && is_lws(buf[bs]) {
        bs += 1;
    }
    while be > bs && is_lws(buf[be - 1]) {
        be -= 1;
    }
    Ok(Header {
        name: HeaderName::from_bytes(name_span.of(buf)),
        name_span,
        body_span: Span::new(bs, be),
        span: Span::new(p, next),
        parsed: OnceCell::new(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_request_lines_only_on_streams() {
        let post = b"POST /RPC2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi".to_vec();
        let m = SipMsg::parse_stream(post.clone()).unwrap();
        assert!(m.is_http() && m.is_request());
        assert_eq!(m.method_bytes(), b"POST");
        assert_eq!(m.ruri(), Some(&b"/RPC2"[..]));
        assert_eq!(m.body(), b"hi");
        m.validate().unwrap();
        // A datagram: not SIP.
        assert!(matches!(
            SipMsg::parse(post),
            Err(ParseError::BadFirstLine { .. })
        ));
        let get = SipMsg::parse_stream(b"GET / HTTP/1.0\r\n\r\n".to_vec()).unwrap();
        assert!(get.is_http());
        get.validate().unwrap();
        // SIP on a stream is still SIP, and still needs its headers.
        let sip = SipMsg::parse_stream(b"OPTIONS sip:a SIP/2.0\r\n\r\n".to_vec()).unwrap();
        assert!(!sip.is_http());
        assert!(sip.validate().is_err());
        for bad in [
            &b"POST /RPC2 HTTP/2\r\n\r\n"[..],
            b"POST /RPC2 HTTP/1.1x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
        ] {
            assert!(SipMsg::parse_stream(bad.to_vec()).is_err(), "{bad:?}");
        }
        let two_cl = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert!(SipMsg::parse_stream(two_cl.to_vec())
            .unwrap()
            .validate()
            .is_err());
    }

    use super::*;

    fn parse(s: &[u8]) -> Result<SipMsg, ParseError> {
        SipMsg::parse(s.to_vec())
    }

    #[test]
    fn compact_forms_folding_and_bare_lf() {
        let m = parse(
            b"\r\nMESSAGE sip:b@example.com SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\nf: <sip:a@example.com>\n ;tag=x\nt: sip:b@example.com\ni: abc\nCSeq: 2\n\tMESSAGE\nc: text/plain\nl: 5\nk: a,b\n\nhelloEXTRA",
        )
        .unwrap();
        assert_eq!(m.method(), Some(Method::Message));
        assert_eq!(m.s(m.from().unwrap().tag.unwrap()), b"x");
        assert_eq!(m.call_id(), Some(&b"abc"[..]));
        assert_eq!(m.cseq().unwrap().method, Method::Message);
        assert_eq!(m.body(), b"hello");
        assert_eq!(m.find_by_name(b"Supported").count(), 1);
        assert_eq!(m.find_by_name(b"k").count(), 1);
        let k = m.find(HeaderName::Supported).unwrap();
        assert_eq!(m.tokens_of(k).unwrap().len(), 2);
        assert_eq!(m.s(m.content_type().unwrap().unwrap().subtype), b"plain");
        m.validate().unwrap();
    }

    #[test]
    fn replies() {
        let m = parse(b"SIP/2.0 404 Not \xd0\x9d\xd0\xb0\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap();
        assert_eq!(m.status(), Some(404));
        assert_eq!(m.reason(), Some(&b"Not \xd0\x9d\xd0\xb0"[..]));
        assert!(!m.is_request());
        assert!(m.parsed_ruri().is_err());
        for bad in [
            &b"SIP/2.0 4040 x\r\n\r\n"[..],
            b"SIP/2.0 099 x\r\n\r\n",
            b"SIP/2.0 2x0 OK\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::BadFirstLine { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse(b"SIP/3.0 200 OK\r\n\r\n"),
            Err(ParseError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let lim = Limits {
            max_headers: 3,
            ..Limits::DEFAULT
        };
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n".to_vec();
        assert_eq!(
            SipMsg::parse_with(msg, &lim).unwrap_err(),
            ParseError::TooManyHeaders { max: 3 }
        );
        let lim = Limits {
            max_header_len: 10,
            ..Limits::DEFAULT
        };
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: 12345678\r\n\r\n".to_vec();
        assert!(matches!(
            SipMsg::parse_with(msg, &lim),
            Err(ParseError::HeaderTooLong { .. })
        ));
        let lim = Limits {
            max_msg_len: 10,
            ..Limits::DEFAULT
        };
        assert!(matches!(
            SipMsg::parse_with(vec![b'a'; 11], &lim),
            Err(ParseError::TooLarge { .. })
        ));
        let lim = Limits {
            max_vias: 2,
            ..Limits::DEFAULT
        };
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b\r\nVia: SIP/2.0/UDP c\r\n\r\n";
        let m = SipMsg::parse_with(msg.to_vec(), &lim).unwrap();
        assert_eq!(
            m.check_headers().unwrap_err(),
            ParseError::TooManyVias { max: 2 }
        );
        let long = format!("OPTIONS sip:{}@b SIP/2.0\r\n\r\n", "a".repeat(1100));
        let m = parse(long.as_bytes()).unwrap();
        assert!(matches!(
            m.parsed_ruri(),
            Err(ParseError::UriTooLong { max: 1024, .. })
        ));
        let many = format!("OPTIONS sip:a@b{} SIP/2.0\r\n\r\n", ";p".repeat(100));
        let m = parse(many.as_bytes()).unwrap();
        assert!(matches!(
            m.parsed_ruri(),
            Err(ParseError::TooManyParams { .. })
        ));
    }

    #[test]
    fn header_lines_errors() {
        assert!(matches!(
            parse(b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n"),
            Err(ParseError::BadHeaderLine { .. })
        ));
        assert!(matches!(
            parse(b"OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n"),
            Err(ParseError::BadHeaderLine { .. })
        ));
        assert!(matches!(
            parse(b"OPTIONS sip:a@b SIP/2.0"),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            parse(b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n"),
            Err(ParseError::BadHeader { .. })
        ));
        // No empty line: datagram tolerated, body empty.
        let m = parse(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: x").unwrap();
        assert_eq!(m.header_body(&m.headers()[0]), b"x");
        assert!(!m.has_empty_line());
    }

    #[test]
    fn lazy_cache_is_reused() {
        let m = parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1;received=1.2.3.4;rport=9\r\n\r\n").unwrap();
        let v1 = m.via1().unwrap() as *const Via;
        let v2 = m.via1().unwrap() as *const Via;
        assert_eq!(v1, v2);
        let v = m.via1().unwrap();
        assert_eq!(v.rport, Some(Some(9)));
        assert_eq!(m.s(v.received.unwrap()), b"1.2.3.4");
        assert!(m.via2().unwrap().is_none());
        let m =
            parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b\r\n\r\n").unwrap();
        assert_eq!(m.s(m.via2().unwrap().unwrap().host), b"b");
    }
}
