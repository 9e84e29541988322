//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), other schemes kept
//! opaque; comparison per RFC 3261 §19.1.4. Replaces `parser/parse_uri.c`.

use crate::error::ParseError;
use crate::limits::Limits;
use crate::param::Param;
use crate::scan::unescape;
use crate::span::Span;

/// The URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Any other absolute URI, kept opaque.
    Other,
}

/// What kind of host a URI or Via names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// A domain name (or anything that is not an IP literal).
    Name,
    /// A dotted-quad IPv4 address.
    Ipv4,
    /// A bracketed IPv6 reference; the host span includes the brackets.
    Ipv6,
    /// No host (tel and opaque URIs).
    None,
}

/// A parsed URI: spans into the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// The whole URI.
    pub span: Span,
    /// The scheme.
    pub scheme: Scheme,
    /// The scheme text (without `:`).
    pub scheme_span: Span,
    /// User part (still %-escaped); the subscriber number for tel URIs.
    pub user: Option<Span>,
    /// Password (after `user:`).
    pub password: Option<Span>,
    /// Host (IPv6 with brackets); empty for tel and opaque URIs.
    pub host: Span,
    /// The host's kind.
    pub host_kind: HostKind,
    /// Explicit port.
    pub port: Option<u16>,
    /// Parameters after the host (or the tel number).
    pub params: Vec<Param>,
    /// Everything from the first `;` of the parameters up to `?`/end.
    pub params_span: Span,
    /// The header part after `?` (without `?`).
    pub headers: Option<Span>,
    /// For `Scheme::Other`: everything after `scheme:`.
    pub opaque: Span,
    /// `transport=` value.
    pub transport: Option<Span>,
    /// `user=` value.
    pub user_param: Option<Span>,
    /// `method=` value.
    pub method: Option<Span>,
    /// `ttl=` value.
    pub ttl: Option<Span>,
    /// `maddr=` value.
    pub maddr: Option<Span>,
    /// `lr` present.
    pub lr: bool,
}

impl Uri {
    /// The user part with %-escapes decoded (RFC 3261 §19.1.2).
    pub fn user_unescaped(&self, buf: &[u8]) -> Option<Vec<u8>> {
        self.user.map(|u| unescape(u.of(buf)))
    }

    /// The first parameter called `name` (case-insensitive).
    pub fn param<'p>(&'p self, buf: &[u8], name: &[u8]) -> Option<&'p Param> {
        crate::param::find_param(buf, &self.params, name)
    }
}

/// Parses a stand-alone URI (spans relative to `b`) with default limits.
pub fn parse_uri(b: &[u8]) -> Result<Uri, ParseError> {
    parse_uri_at(b, Span::new(0, b.len()), &Limits::DEFAULT)
}

fn bad(at: usize, what: &'static str) -> ParseError {
    ParseError::BadUri {
        at: at as u32,
        what,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c)
}

fn is_user_char(c: u8) -> bool {
    is_unreserved(c) || b"%&=+$,;?/".contains(&c)
}

fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || b"%&=+$,".contains(&c)
}

fn is_param_char(c: u8) -> bool {
    is_unreserved(c) || b"%[]/:&+$".contains(&c)
}

fn is_header_char(c: u8) -> bool {
    is_unreserved(c) || b"%[]/?:+$=&".contains(&c)
}

fn is_tel_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"+-.()*#%".contains(&c)
}

/// Classifies and checks a host (without port); `None` when malformed.
pub(crate) fn host_kind(h: &[u8]) -> Option<HostKind> {
    if h.is_empty() {
        return None;
    }
    if h[0] == b'[' {
        let inner = h.strip_prefix(b"[")?.strip_suffix(b"]")?;
        let ok = inner.len() >= 2
            && inner.contains(&b':')
            && inner
                .iter()
                .all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.');
        return ok.then_some(HostKind::Ipv6);
    }
    if is_ipv4(h) {
        return Some(HostKind::Ipv4);
    }
    let ok = h
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
        && h[0] != b'.'
        && h[0] != b'-';
    ok.then_some(HostKind::Name)
}

/// Dotted-quad IPv4 with each part 0..=255.
pub(crate) fn is_ipv4(h: &[u8]) -> bool {
    let mut parts = 0;
    for p in h.split(|c| *c == b'.') {
        parts += 1;
        if p.is_empty() || p.len() > 3 || !p.iter().all(u8::is_ascii_digit) {
            return false;
        }
        if crate::scan::parse_u32(p, 255).is_none() {
            return false;
        }
    }
    parts == 4
}

/// Parses the URI occupying `span` of `buf`; spans in the result are
/// offsets into `buf`.
pub fn parse_uri_at(buf: &[u8], span: Span, limits: &Limits) -> Result<Uri, ParseError> {
    let (start, end) = (span.begin(), span.end().min(buf.len()));
    if end.saturating_sub(start) > limits.max_uri_len {
        return Err(ParseError::UriTooLong {
            at: start as u32,
            max: limits.max_uri_len,
        });
    }
    let b = &buf[..end];
    let mut i = start;
    while i < end && (b[i].is_ascii_alphanumeric() || b"+-.".contains(&b[i])) {
        i += 1;
    }
    if i == start || !b[start].is_ascii_alphabetic() || i >= end || b[i] != b':' {
        return Err(bad(start, "missing scheme"));
    }
    let scheme_span = Span::new(start, i);
    let s = scheme_span.of(buf);
    let scheme = if s.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if s.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if s.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other
    };
    let rest = i + 1;
    let mut uri = Uri {
        span: Span::new(start, end),
        scheme,
        scheme_span,
        user: None,
        password: None,
        host: Span::empty(rest),
        host_kind: HostKind::None,
        port: None,
        params: Vec::new(),
        params_span: Span::empty(end),
        headers: None,
        opaque: Span::new(rest, end),
        transport: None,
        user_param: None,
        method: None,
        ttl: None,
        maddr: None,
        lr: false,
    };
    match scheme {
        Scheme::Other => {
            if rest == end
                || b[rest..end]
                    .iter()
                    .any(|c| c.is_ascii_whitespace() || *c < 0x20)
            {
                return Err(bad(rest, "bad opaque URI"));
            }
            Ok(uri)
        }
        Scheme::Tel => {
            let mut j = rest;
            while j < end && is_tel_char(b[j]) {
                j += 1;
            }
            if j == rest {
                return Err(bad(rest, "empty telephone number"));
            }
            uri.user = Some(Span::new(rest, j));
            parse_uri_params(b, j, end, &mut uri, limits)?;
            if uri.headers.is_some() {
                return Err(bad(j, "headers in tel URI"));
            }
            Ok(uri)
        }
        Scheme::Sip | Scheme::Sips => {
            let mut h = rest;
            // userinfo cannot hold an unescaped '@', and neither can what
            // follows the host, so the first '@' ends the userinfo.
            if let Some(at) = b[rest..end].iter().position(|c| *c == b'@') {
                let at = rest + at;
                let ui = &b[rest..at];
                let colon = ui.iter().position(|c| *c == b':').map(|p| rest + p);
                let user_end = colon.unwrap_or(at);
                if user_end == rest {
                    return Err(bad(rest, "empty user part"));
                }
                if let Some(p) = b[rest..user_end].iter().position(|c| !is_user_char(*c)) {
                    return Err(bad(rest + p, "bad character in user part"));
                }
                uri.user = Some(Span::new(rest, user_end));
                if let Some(c) = colon {
                    if let Some(p) = b[c + 1..at].iter().position(|c| !is_password_char(*c)) {
                        return Err(bad(c + 1 + p, "bad character in password"));
                    }
                    uri.password = Some(Span::new(c + 1, at));
                }
                h = at + 1;
            }
            let host_end = if b.get(h) == Some(&b'[') {
                match b[h..end].iter().position(|c| *c == b']') {
                    Some(p) => h + p + 1,
                    None => return Err(bad(h, "unterminated IPv6 reference")),
                }
            } else {
                let mut j = h;
                while j < end && !matches!(b[j], b':' | b';' | b'?') {
                    j += 1;
                }
                j
            };
            uri.host = Span::new(h, host_end);
            uri.host_kind = host_kind(&b[h..host_end]).ok_or_else(|| bad(h, "bad host"))?;
            let mut j = host_end;
            if j < end && b[j] == b':' {
                let ps = j + 1;
                j = ps;
                while j < end && b[j].is_ascii_digit() {
                    j += 1;
                }
                let port =
                    crate::scan::parse_u32(&b[ps..j], 65535).ok_or_else(|| bad(ps, "bad port"))?;
                uri.port = Some(port as u16);
            }
            parse_uri_params(b, j, end, &mut uri, limits)
                .and_then(|()| check_headers(b, &uri))
                .map(|()| uri)
        }
    }
}

/// Parses `*(";" param) ["?" headers]` from `j` to `end`.
fn parse_uri_params(
    b: &[u8],
    mut j: usize,
    end: usize,
    uri: &mut Uri,
    limits: &Limits,
) -> Result<(), ParseError> {
    let ps = j;
    while j < end && b[j] == b';' {
        let ns = j + 1;
        let mut k = ns;
        while k < end && is_param_char(b[k]) {
            k += 1;
        }
        if k == ns {
            return Err(bad(ns, "empty URI parameter"));
        }
        let name = Span::new(ns, k);
        let value = if k < end && b[k] == b'=' {
            let vs = k + 1;
            k = vs;
            while k < end && is_param_char(b[k]) {
                k += 1;
            }
            if k == vs {
                return Err(bad(vs, "empty URI parameter value"));
            }
            Some(Span::new(vs, k))
        } else {
            None
        };
        if uri.params.len() >= limits.max_params {
            return Err(ParseError::TooManyParams {
                name: crate::HeaderName::Other,
                at: ns as u32,
                max: limits.max_params,
            });
        }
        let n = name.of(b);
        if n.eq_ignore_ascii_case(b"transport") {
            uri.transport = value;
        } else if n.eq_ignore_ascii_case(b"user") {
            uri.user_param = value;
        } else if n.eq_ignore_ascii_case(b"method") {
            uri.method = value;
        } else if n.eq_ignore_ascii_case(b"ttl") {
            uri.ttl = value;
        } else if n.eq_ignore_ascii_case(b"maddr") {
            uri.maddr = value;
        } else if n.eq_ignore_ascii_case(b"lr") {
            uri.lr = true;
        }
        uri.params.push(Param { name, value });
        j = k;
    }
    uri.params_span = Span::new(ps, j);
    if j < end && b[j] == b'?' {
        if let Some(p) = b[j + 1..end].iter().position(|c| !is_header_char(*c)) {
            return Err(bad(j + 1 + p, "bad character in URI headers"));
        }
        uri.headers = Some(Span::new(j + 1, end));
        return Ok(());
    }
    if j < end {
        return Err(bad(j, "unexpected character in URI"));
    }
    Ok(())
}

fn check_headers(b: &[u8], uri: &Uri) -> Result<(), ParseError> {
    if let Some(h) = uri.headers {
        for hv in h.of(b).split(|c| *c == b'&') {
            if hv.is_empty() || hv[0] == b'=' {
                return Err(bad(h.begin(), "empty URI header"));
            }
        }
    }
    Ok(())
}

/// Compares two URIs by the rules of RFC 3261 §19.1.4: scheme, user and
/// password (case-sensitive, after unescaping), host (case-insensitive),
/// port (explicit vs. implicit differ), `user`/`ttl`/`method`/`maddr`/
/// `transport` must agree when present in either, other parameters only
/// when present in both, and the header parts must be equal as sets.
pub fn uri_eq(abuf: &[u8], a: &Uri, bbuf: &[u8], b: &Uri) -> bool {
    if a.scheme != b.scheme {
        return false;
    }
    let esc_eq = |x: Option<Span>, y: Option<Span>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => unescape(x.of(abuf)) == unescape(y.of(bbuf)),
        _ => false,
    };
    let ci_eq = |x: Option<Span>, y: Option<Span>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => unescape(x.of(abuf)).eq_ignore_ascii_case(&unescape(y.of(bbuf))),
        _ => false,
    };
    if a.scheme == Scheme::Other {
        return a
            .scheme_span
            .of(abuf)
            .eq_ignore_ascii_case(b.scheme_span.of(bbuf))
            && a.opaque.of(abuf) == b.opaque.of(bbuf);
    }
    if !esc_eq(a.user, b.user) || !esc_eq(a.password, b.password) {
        return false;
    }
    if !a.host.of(abuf).eq_ignore_ascii_case(b.host.of(bbuf)) || a.port != b.port {
        return false;
    }
    for (i, pa) in a.params.iter().enumerate() {
        let name = unescape(pa.name.of(abuf));
        // Only the first occurrence of a repeated parameter counts.
        if a.params[..i]
            .iter()
            .any(|p| unescape(p.name.of(abuf)).eq_ignore_ascii_case(&name))
        {
            continue;
        }
        let pb = b
            .params
            .iter()
            .find(|p| unescape(p.name.of(bbuf)).eq_ignore_ascii_case(&name));
        match pb {
            Some(pb) if !ci_eq(pa.value, pb.value) => return false,
            None if is_sticky_param(&name) => return false,
            _ => {}
        }
    }
    for pb in &b.params {
        let name = unescape(pb.name.of(bbuf));
        if is_sticky_param(&name)
            && !a
                .params
                .iter()
                .any(|p| unescape(p.name.of(abuf)).eq_ignore_ascii_case(&name))
        {
            return false;
        }
    }
    headers_set(abuf, a.headers) == headers_set(bbuf, b.headers)
}

/// Parameters that make URIs differ when present in only one of them.
fn is_sticky_param(name: &[u8]) -> bool {
    [&b"user"[..], b"ttl", b"method", b"maddr", b"transport"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

fn headers_set(buf: &[u8], h: Option<Span>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = match h {
        None => Vec::new(),
        Some(h) => h
            .of(buf)
            .split(|c| *c == b'&')
            .map(|hv| {
                let mut it = hv.splitn(2, |c| *c == b'=');
                let n = unescape(it.next().unwrap_or(&[])).to_ascii_lowercase();
                let v = unescape(it.next().unwrap_or(&[]));
                (n, v)
            })
            .collect(),
    };
    v.sort();
    v
}

/// Parses and compares two URIs given as bytes; unparsable URIs are
/// never equal.
pub fn uri_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    match (parse_uri(a), parse_uri(b)) {
        (Ok(ua), Ok(ub)) => uri_eq(a, &ua, b, &ub),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Uri {
        parse_uri(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn full_sip_uri() {
        let s = "sips:alice:secret@Example.COM:5061;transport=tcp;lr;maddr=239.1.1.1;x=y?subject=hi&priority=urgent";
        let u = p(s);
        let b = s.as_bytes();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user.unwrap().of(b), b"alice");
        assert_eq!(u.password.unwrap().of(b), b"secret");
        assert_eq!(u.host.of(b), b"Example.COM");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport.unwrap().of(b), b"tcp");
        assert!(u.lr);
        assert_eq!(u.maddr.unwrap().of(b), b"239.1.1.1");
        assert_eq!(u.params.len(), 4);
        assert_eq!(u.headers.unwrap().of(b), b"subject=hi&priority=urgent");
    }

    #[test]
    fn hosts() {
        assert_eq!(p("sip:[2001:db8::10]").host_kind, HostKind::Ipv6);
        let u = p("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        assert_eq!(p("sip:[2001:db8::10]:5070").port, Some(5070));
        assert_eq!(p("sip:1.2.3.4").host_kind, HostKind::Ipv4);
        assert_eq!(p("sip:1.2.3.400").host_kind, HostKind::Name);
        assert!(parse_uri(b"sip:2001:db8::10").is_err());
        assert!(parse_uri(b"sip:host:70000").is_err());
        assert!(parse_uri(b"sip:").is_err());
        assert!(parse_uri(b"<sip:a@b>").is_err());
        assert!(parse_uri(b"sip:a@b c").is_err());
    }

    #[test]
    fn user_with_semicolon_and_tel() {
        let s = b"sip:user;par=u%40example.net@example.com";
        let u = parse_uri(s).unwrap();
        assert_eq!(u.user.unwrap().of(s), b"user;par=u%40example.net");
        assert_eq!(u.user_unescaped(s).unwrap(), b"user;par=u@example.net");
        assert!(u.params.is_empty());
        let t = b"tel:+1-201-555-0123;phone-context=example.com";
        let u = parse_uri(t).unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.unwrap().of(t), b"+1-201-555-0123");
        assert_eq!(u.params.len(), 1);
        let o = parse_uri(b"nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(o.scheme, Scheme::Other);
    }

    #[test]
    fn rfc3261_equivalent() {
        for (a, b) in [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:carol@chicago.com;newparam=5",
                "sip:carol@chicago.com;security=on",
            ),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ] {
            assert!(uri_eq_bytes(a.as_bytes(), b.as_bytes()), "{a} == {b}");
        }
    }

    #[test]
    fn rfc3261_not_equivalent() {
        for (a, b) in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com:6000;transport=tcp",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ] {
            assert!(!uri_eq_bytes(a.as_bytes(), b.as_bytes()), "{a} != {b}");
        }
    }
}
