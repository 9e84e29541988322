//! Core parameter values, built from the tokens between `=` and the end of the assignment:
//! numbers, strings, booleans, names, addresses, `[proto:]host[:port] [advertise h[:p]]`
//! and space/comma separated lists of those.

use ser_lexer::{Diagnostic, Kw, Pos, Span, Tok};

use crate::ast::{SocketSpec, Value, ValueKind};

/// `yes`/`true`/`on`/`enable` → true, `no`/`false`/`off`/`disable` → false.
pub fn bool_word(w: &str) -> Option<bool> {
    match w {
        "yes" | "true" | "on" | "enable" => Some(true),
        "no" | "false" | "off" | "disable" => Some(false),
        _ => None,
    }
}

const PROTOS: &[&str] = &["udp", "tcp", "tls", "sctp", "ws", "wss", "any"];

struct Cursor<'a> {
    toks: &'a [(Pos, Tok, Pos)],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }
    fn peek2(&self) -> Option<&Tok> {
        self.toks.get(self.i + 1).map(|t| &t.1)
    }
    fn span_of(&self, from: usize) -> Span {
        let a = self.toks[from].0;
        let b = self.toks[self.i.max(from + 1) - 1].2;
        Span::new(a, b)
    }
    fn here(&self) -> Span {
        match self.toks.get(self.i) {
            Some(t) => Span::new(t.0, t.2),
            None => self
                .toks
                .last()
                .map_or_else(Span::default, |t| Span::new(t.2, t.2)),
        }
    }
}

/// Builds a value; an error diagnostic when the tokens do not form one.
pub fn build(toks: &[(Pos, Tok, Pos)]) -> Result<Value, Diagnostic> {
    let mut c = Cursor { toks, i: 0 };
    let mut items = Vec::new();
    while c.peek().is_some() {
        if c.peek() == Some(&Tok::Comma) && !items.is_empty() {
            c.i += 1;
        }
        items.push(element(&mut c)?);
    }
    match items.len() {
        0 => Err(Diagnostic::error(c.here(), "missing value")),
        1 => Ok(items.remove(0)),
        _ => {
            let span = Span::new(toks[0].0, toks[toks.len() - 1].2);
            Ok(Value {
                kind: ValueKind::List(items),
                span,
            })
        }
    }
}

/// One list element.
fn element(c: &mut Cursor) -> Result<Value, Diagnostic> {
    let start = c.i;
    match c.peek() {
        Some(Tok::Str(s)) => {
            let s = s.clone();
            c.i += 1;
            return Ok(Value {
                kind: ValueKind::Str(s),
                span: c.span_of(start),
            });
        }
        Some(Tok::Minus) => {
            if let Some(Tok::Int(n)) = c.peek2() {
                let n = -*n;
                c.i += 2;
                return Ok(Value {
                    kind: ValueKind::Int(n),
                    span: c.span_of(start),
                });
            }
            return Err(Diagnostic::error(c.here(), "expected a number after `-`"));
        }
        Some(Tok::Int(n)) if c.peek2() != Some(&Tok::Dot) => {
            let n = *n;
            c.i += 1;
            return Ok(Value {
                kind: ValueKind::Int(n),
                span: c.span_of(start),
            });
        }
        _ => {}
    }
    // [proto ":"] host [":" port] [advertise host[:port]]
    let mut proto = None;
    if let (Some(Tok::Ident(p)), Some(Tok::Colon)) = (c.peek(), c.peek2()) {
        if PROTOS.contains(&p.to_ascii_lowercase().as_str()) {
            proto = Some(p.to_ascii_lowercase());
            c.i += 2;
        }
    }
    let host_start = c.i;
    let (host, host_kind) = parse_host(c)?;
    let port = parse_port(c)?;
    let mut advertise = None;
    if matches!(c.peek(), Some(Tok::Ident(a)) if a.eq_ignore_ascii_case("advertise")) {
        c.i += 1;
        let (h, _) = parse_host(c)?;
        let p = parse_port(c)?;
        advertise = Some((h, p));
    }
    let span = c.span_of(start);
    if proto.is_none() && port.is_none() && advertise.is_none() && host != "*" {
        // A plain word or address.
        let kind = match host_kind {
            HostKind::Ip(ip) => ValueKind::Ip(ip),
            HostKind::Name if c.i - host_start == 1 => match bool_word(&host) {
                Some(b) => ValueKind::Bool(b),
                None => ValueKind::Ident(host),
            },
            HostKind::Name => ValueKind::Ident(host),
        };
        return Ok(Value { kind, span });
    }
    Ok(Value {
        kind: ValueKind::Socket(SocketSpec {
            proto,
            host,
            port,
            advertise,
        }),
        span,
    })
}

enum HostKind {
    Ip(std::net::IpAddr),
    Name,
}

/// `*`, an address, or a host name made of names, numbers, dots and dashes.
fn parse_host(c: &mut Cursor) -> Result<(String, HostKind), Diagnostic> {
    match c.peek() {
        Some(Tok::Star) => {
            c.i += 1;
            Ok(("*".into(), HostKind::Name))
        }
        Some(Tok::Ip(ip)) => {
            let ip = *ip;
            c.i += 1;
            Ok((ip.to_string(), HostKind::Ip(ip)))
        }
        Some(Tok::Ident(_) | Tok::Int(_)) => {
            let mut s = String::new();
            loop {
                match c.peek() {
                    Some(Tok::Ident(w)) => s.push_str(w),
                    Some(Tok::Int(n)) => s.push_str(&n.to_string()),
                    _ => break,
                }
                c.i += 1;
                // `.` or `-` joins the next label (`sip.example.com`, `my-host`).
                match (c.peek(), c.peek2()) {
                    (Some(Tok::Dot), Some(Tok::Ident(_) | Tok::Int(_))) => s.push('.'),
                    (Some(Tok::Minus), Some(Tok::Ident(_) | Tok::Int(_))) => s.push('-'),
                    _ => break,
                }
                c.i += 1;
            }
            Ok((s, HostKind::Name))
        }
        // A quoted host, e.g. from `#!define IP "1.2.3.4"` in `listen=udp:IP:5060`.
        Some(Tok::Str(h)) => {
            let h = h.clone();
            c.i += 1;
            match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok((ip.to_string(), HostKind::Ip(ip))),
                Err(_) => Ok((h, HostKind::Name)),
            }
        }
        // `default` is reserved in scripts but a plain word in values (`tls_method=default`).
        Some(Tok::Kw(Kw::Default)) => {
            c.i += 1;
            Ok(("default".into(), HostKind::Name))
        }
        Some(t) => Err(Diagnostic::error(
            c.here(),
            format!("unexpected {t} in value"),
        )),
        None => Err(Diagnostic::error(c.here(), "missing value")),
    }
}

/// `:port`, if present.
fn parse_port(c: &mut Cursor) -> Result<Option<u16>, Diagnostic> {
    if c.peek() != Some(&Tok::Colon) {
        return Ok(None);
    }
    c.i += 1;
    match c.peek() {
        Some(Tok::Int(n)) => {
            let n = *n;
            let sp = c.here();
            c.i += 1;
            u16::try_from(n)
                .map(Some)
                .map_err(|_| Diagnostic::error(sp, format!("port {n} out of range (0-65535)")))
        }
        _ => Err(Diagnostic::error(
            c.here(),
            "expected a port number after `:`",
        )),
    }
}
