//! A stable, human-readable dump of the parsed view of a message, used by
//! the golden-file tests and handy when debugging.

use std::fmt::Write;

use crate::hdr::addr::{Contacts, NameAddr};
use crate::hdr::HeaderValue;
use crate::msg::{FirstLine, SipMsg};
use crate::param::Param;
use crate::span::Span;
use crate::uri::Uri;

/// Quotes bytes: printable ASCII as is, `"` and `\` escaped, everything
/// else as `\xNN`.
pub fn esc(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

struct D<'a> {
    buf: &'a [u8],
    out: String,
}

impl D<'_> {
    fn s(&self, sp: Span) -> String {
        esc(sp.of(self.buf))
    }

    fn o(&self, sp: Option<Span>) -> String {
        sp.map_or_else(|| "-".to_string(), |sp| self.s(sp))
    }

    fn params(&self, ps: &[Param]) -> String {
        let v: Vec<String> = ps
            .iter()
            .map(|p| match p.value {
                Some(v) => format!("{}={}", self.s(p.name), self.s(v)),
                None => self.s(p.name),
            })
            .collect();
        format!("[{}]", v.join(", "))
    }

    fn uri(&self, u: &Uri) -> String {
        format!(
            "{{scheme={:?} user={} password={} host={} host_kind={:?} port={} params={} headers={}{}}}",
            u.scheme,
            self.o(u.user),
            self.o(u.password),
            self.s(u.host),
            u.host_kind,
            u.port.map_or("-".into(), |p| p.to_string()),
            self.params(&u.params),
            self.o(u.headers),
            if u.scheme == crate::uri::Scheme::Other { format!(" opaque={}", self.s(u.opaque)) } else { String::new() },
        )
    }

    fn name_addr(&self, n: &NameAddr) -> String {
        format!(
            "display={} angle={} uri={} tag={} params={}",
            self.o(n.display),
            n.angle,
            self.uri(&n.uri),
            self.o(n.tag),
            self.params(&n.params)
        )
    }

    fn value(&mut self, v: &HeaderValue) {
        let line = match v {
            HeaderValue::Via(vias) => {
                let mut s = String::new();
                for (i, v) in vias.iter().enumerate() {
                    let _ = write!(
                        s,
                        "{}via[{i}] protocol={}/{}/{} host={} host_kind={:?} port={} branch={} received={} rport={} maddr={} ttl={} params={}",
                        if i > 0 { "\n    " } else { "" },
                        self.s(v.protocol),
                        self.s(v.version),
                        self.s(v.transport),
                        self.s(v.host),
                        v.host_kind,
                        v.port.map_or("-".into(), |p| p.to_string()),
                        self.o(v.branch),
                        self.o(v.received),
                        match v.rport {
                            None => "-".to_string(),
                            Some(None) => "(no value)".to_string(),
                            Some(Some(p)) => p.to_string(),
                        },
                        self.o(v.maddr),
                        v.ttl.map_or("-".into(), |t| t.to_string()),
                        self.params(&v.params),
                    );
                }
                s
            }
            HeaderValue::NameAddr(n) => self.name_addr(n),
            HeaderValue::NameAddrList(l) => {
                let v: Vec<String> = l.iter().enumerate().map(|(i, n)| format!("[{i}] {}", self.name_addr(n))).collect();
                v.join("\n    ")
            }
            HeaderValue::Contact(Contacts::Star) => "star".to_string(),
            HeaderValue::Contact(Contacts::List(l)) => {
                let v: Vec<String> = l
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        format!(
                            "[{i}] {} q={} expires={}",
                            self.name_addr(&c.addr),
                            c.q.map_or("-".into(), |q| q.to_string()),
                            c.expires.map_or("-".into(), |e| e.to_string())
                        )
                    })
                    .collect();
                v.join("\n    ")
            }
            HeaderValue::CallId(s) => format!("call-id={}", self.s(*s)),
            HeaderValue::CSeq(c) => format!("number={} method={:?} method_text={}", c.number, c.method, self.s(c.method_span)),
            HeaderValue::Number(n) => format!("number={n}"),
            HeaderValue::MediaType(m) => {
                format!("type={} subtype={} params={}", self.s(m.mtype), self.s(m.subtype), self.params(&m.params))
            }
            HeaderValue::MediaList(l) => {
                let v: Vec<String> = l
                    .iter()
                    .map(|m| format!("{}/{}{}", self.s(m.mtype), self.s(m.subtype), self.params(&m.params)))
                    .collect();
                format!("media=[{}]", v.join(", "))
            }
            HeaderValue::Auth(a) => format!(
                "scheme={} username={} realm={} nonce={} uri={} response={} algorithm={} cnonce={} opaque={} qop={} nc={} params={}",
                self.s(a.scheme),
                self.o(a.username),
                self.o(a.realm),
                self.o(a.nonce),
                self.o(a.uri),
                self.o(a.response),
                self.o(a.algorithm),
                self.o(a.cnonce),
                self.o(a.opaque),
                self.o(a.qop),
                self.o(a.nc),
                self.params(&a.params)
            ),
            HeaderValue::Tokens(t) => {
                let v: Vec<String> = t.iter().map(|t| self.s(*t)).collect();
                format!("tokens=[{}]", v.join(", "))
            }
            HeaderValue::Event(e) => format!("package={} id={} params={}", self.s(e.package), self.o(e.id), self.params(&e.params)),
            HeaderValue::Date(d) => format!("date={}", self.s(*d)),
            HeaderValue::Text(t) => format!("text={}", self.s(*t)),
        };
        let _ = writeln!(self.out, "    {line}");
    }
}

/// Dumps the first line, every header (name, raw body, typed parse or
/// error) and the body of `msg`, parsing every header on the way.
pub fn dump(msg: &SipMsg) -> String {
    let mut d = D {
        buf: msg.buf(),
        out: String::new(),
    };
    match *msg.first_line() {
        FirstLine::Request {
            method,
            method_span,
            uri,
        } => {
            let _ = writeln!(
                d.out,
                "request method={method:?} method_text={} ruri={}",
                d.s(method_span),
                d.s(uri)
            );
            let line = match msg.parsed_ruri() {
                Ok(u) => d.uri(u),
                Err(e) => format!("error: {e}"),
            };
            let _ = writeln!(d.out, "  ruri {line}");
        }
        FirstLine::Reply { status, reason } => {
            let _ = writeln!(d.out, "reply status={status} reason={}", d.s(reason));
        }
    }
    for h in msg.headers() {
        let _ = writeln!(
            d.out,
            "header {:?} name={} body={}",
            h.name,
            d.s(h.name_span),
            d.s(h.body_span)
        );
        match msg.parsed(h) {
            Ok(v) => d.value(v),
            Err(e) => {
                let _ = writeln!(d.out, "    error: {e}");
            }
        }
    }
    let check = match msg.validate() {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let _ = writeln!(d.out, "validate {check}");
    let _ = writeln!(
        d.out,
        "body len={} {}",
        msg.body().len(),
        esc(&msg.body()[..msg.body().len().min(64)])
    );
    d.out
}
