//! Lumps: deferred edits against offsets of the received buffer, applied
//! once when the outgoing message is built. Replaces `data_lump.c` and the
//! request side of `msg_translator.c`.

use std::net::{IpAddr, SocketAddr};

use crate::error::ParseError;
use crate::hname::HeaderName;
use crate::msg::{Header, SipMsg};
use crate::span::Span;
use crate::uri::HostKind;

/// Why lumps could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LumpError {
    /// An edit reaches past the end of the message.
    #[error("edit at byte {at} reaches past the message end {len}")]
    OutOfRange {
        /// Offset of the edit.
        at: u32,
        /// Message length.
        len: u32,
    },
    /// Two edits delete overlapping ranges (or an insert falls inside a
    /// deleted range).
    #[error("edit at byte {at} overlaps an earlier deletion")]
    Overlap {
        /// Offset of the later edit.
        at: u32,
    },
    /// An edit crosses the boundary between header section and body.
    #[error("edit at byte {at} crosses the header/body boundary")]
    CrossesBody {
        /// Offset of the edit.
        at: u32,
    },
}

/// Where an edit belongs; orders edits at the same offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Zone {
    /// Inside the header section (e.g. a parameter added to a header).
    Head,
    /// The line end added after a last header line that had none.
    LineEnd,
    /// Whole header lines added to the header section.
    Lines,
    /// The empty line added to a header section that had none.
    Terminator,
    Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Edit {
    at: u32,
    del: u32,
    ins: Vec<u8>,
    zone: Zone,
}

/// A list of edits against one [`SipMsg`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lumps {
    edits: Vec<Edit>,
}

impl Lumps {
    /// No edits.
    pub fn new() -> Lumps {
        Lumps::default()
    }

    /// True when there are no edits.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    fn push(&mut self, msg: &SipMsg, at: usize, del: usize, ins: Vec<u8>) {
        let zone =
            if at < msg.body_span().begin() || (at == msg.headers_end() && !msg.has_empty_line()) {
                Zone::Head
            } else {
                Zone::Body
            };
        self.edits.push(Edit {
            at: at as u32,
            del: del as u32,
            ins,
            zone,
        });
    }

    fn push_lines(&mut self, at: usize, ins: Vec<u8>) {
        self.edits.push(Edit {
            at: at as u32,
            del: 0,
            ins,
            zone: Zone::Lines,
        });
    }

    /// Inserts `bytes` at offset `at` of the original buffer. Inserts at the
    /// same offset come out in the order they were added.
    pub fn insert(&mut self, msg: &SipMsg, at: usize, bytes: &[u8]) {
        self.push(msg, at, 0, bytes.to_vec());
    }

    /// Deletes `span`.
    pub fn delete(&mut self, msg: &SipMsg, span: Span) {
        self.push(msg, span.begin(), span.len as usize, Vec::new());
    }

    /// Replaces `span` by `bytes`.
    pub fn replace(&mut self, msg: &SipMsg, span: Span, bytes: &[u8]) {
        self.push(msg, span.begin(), span.len as usize, bytes.to_vec());
    }

    /// Appends the header field `name: value` to the header section.
    pub fn add_header(&mut self, msg: &SipMsg, name: &[u8], value: &[u8]) {
        let line = [name, b": ", value, b"\r\n"].concat();
        self.push_lines(msg.headers_end(), line);
    }

    /// Appends raw header lines (CRLF added when missing).
    pub fn add_header_lines(&mut self, msg: &SipMsg, lines: &[u8]) {
        let mut l = lines.to_vec();
        if !l.is_empty() && !l.ends_with(b"\r\n") {
            l.extend_from_slice(b"\r\n");
        }
        self.push_lines(msg.headers_end(), l);
    }

    /// Removes a whole header field (its line ends and folds included).
    pub fn remove_header(&mut self, msg: &SipMsg, h: &Header) {
        self.delete(msg, h.span);
    }

    /// Replaces the body of a header field.
    pub fn replace_header_body(&mut self, msg: &SipMsg, h: &Header, value: &[u8]) {
        self.replace(msg, h.body_span, value);
    }

    /// Replaces the message body; Content-Length is fixed by [`apply`].
    pub fn set_body(&mut self, msg: &SipMsg, body: &[u8]) {
        let s = msg.body_span();
        self.edits.push(Edit {
            at: s.start,
            del: s.len,
            ins: body.to_vec(),
            zone: Zone::Body,
        });
    }

    /// Inserts `Via: <value>` above the first Via header field.
    pub fn insert_via(&mut self, msg: &SipMsg, value: &[u8]) {
        let at = msg
            .find(HeaderName::Via)
            .or_else(|| msg.headers().first())
            .map_or(msg.headers_end(), |h| h.span.begin());
        let line = [&b"Via: "[..], value, b"\r\n"].concat();
        self.push_lines(at, line);
    }

    /// Removes the topmost via-parm (a proxy forwarding a reply): the
    /// whole field when it holds one value, else the value and its comma.
    pub fn remove_first_via(&mut self, msg: &SipMsg) -> Result<(), ParseError> {
        let h = msg.find(HeaderName::Via).ok_or(ParseError::MissingHeader {
            name: HeaderName::Via,
        })?;
        let vias = msg.vias_of(h)?;
        match vias.get(1) {
            None => self.remove_header(msg, h),
            Some(second) => {
                let start = vias[0].span.begin();
                self.delete(msg, Span::new(start, second.span.begin()));
            }
        }
        Ok(())
    }

    /// Adds `received=` and fills in `rport` on the topmost Via of a
    /// request received from `src` (RFC 3261 §18.2.1, RFC 3581 §4).
    pub fn add_received(&mut self, msg: &SipMsg, src: SocketAddr) -> Result<(), ParseError> {
        for (at, del, ins) in received_edits(msg, src)? {
            self.push(msg, at, del, ins);
        }
        Ok(())
    }
}

/// The edits (offset, deleted length, inserted bytes) that record the
/// source address in the topmost Via.
pub(crate) fn received_edits(
    msg: &SipMsg,
    src: SocketAddr,
) -> Result<Vec<(usize, usize, Vec<u8>)>, ParseError> {
    let via = msg.via1()?;
    let buf = msg.buf();
    let mut out = Vec::new();
    let mut need_received = via.rport.is_some();
    if !need_received {
        need_received = match via.host_kind {
            HostKind::Ipv4 | HostKind::Ipv6 => {
                let h = via.host.of(buf);
                let h = h
                    .strip_prefix(b"[")
                    .and_then(|h| h.strip_suffix(b"]"))
                    .unwrap_or(h);
                let ip: Option<IpAddr> = std::str::from_utf8(h).ok().and_then(|s| s.parse().ok());
                ip != Some(src.ip())
            }
            _ => true,
        };
    }
    if let Some(Some(_)) | Some(None) = via.rport {
        if let Some(span) = via.rport_span {
            out.push((
                span.begin(),
                span.len as usize,
                format!("rport={}", src.port()).into_bytes(),
            ));
        }
    }
    if need_received {
        let ip = src.ip().to_string();
        match via.received {
            Some(r) => out.push((r.begin(), r.len as usize, ip.into_bytes())),
            None => out.push((
                via.params_end as usize,
                0,
                format!(";received={ip}").into_bytes(),
            )),
        }
    }
    Ok(out)
}

/// Builds a Via value `SIP/2.0/<transport> <host>[:port];branch=<branch>[;rport]`.
/// IPv6 hosts must be given in brackets.
pub fn via_value(
    transport: &str,
    host: &str,
    port: Option<u16>,
    branch: &str,
    rport: bool,
) -> Vec<u8> {
    let mut v = format!("SIP/2.0/{transport} {host}");
    if let Some(p) = port {
        v.push_str(&format!(":{p}"));
    }
    v.push_str(";branch=");
    v.push_str(branch);
    if rport {
        v.push_str(";rport");
    }
    v.into_bytes()
}

/// Builds the outgoing message: the original bytes (without datagram
/// trailing garbage) with every edit applied. When the body's length
/// changes, or the message had no Content-Length, Content-Length is set to
/// the new body length (unless an edit touches that header itself).
pub fn apply(msg: &SipMsg, lumps: &Lumps) -> Result<Vec<u8>, LumpError> {
    let buf = msg.buf();
    let body = msg.body_span();
    let len = msg.msg_len();
    let mut edits: Vec<&Edit> = lumps.edits.iter().collect();
    let mut extra: Vec<Edit> = Vec::new();
    let mut body_len = body.len as i64;
    for e in &edits {
        let end = e.at as usize + e.del as usize;
        if end > len {
            return Err(LumpError::OutOfRange {
                at: e.at,
                len: len as u32,
            });
        }
        let in_body = e.zone == Zone::Body;
        if (in_body && (e.at as usize) < body.begin()) || (!in_body && end > body.begin()) {
            return Err(LumpError::CrossesBody { at: e.at });
        }
        if in_body {
            body_len += e.ins.len() as i64 - i64::from(e.del);
        }
    }
    let cl_header = msg.find(HeaderName::ContentLength);
    let body_changed = body_len != i64::from(body.len);
    match cl_header {
        Some(h) if body_changed => {
            let touched = edits.iter().any(|e| {
                let end = e.at as usize + e.del as usize;
                // overlaps the header; an edit ending where it begins (the
                // header before removed) leaves it alone
                (e.at as usize) < h.span.end() && end > h.span.begin() && e.del > 0
            });
            if !touched {
                extra.push(Edit {
                    at: h.body_span.start,
                    del: h.body_span.len,
                    ins: body_len.to_string().into_bytes(),
                    zone: Zone::Head,
                });
            }
        }
        Some(_) => {}
        None => {
            let line = format!("Content-Length: {body_len}\r\n").into_bytes();
            extra.push(Edit {
                at: msg.headers_end() as u32,
                del: 0,
                ins: line,
                zone: Zone::Lines,
            });
        }
    }
    if !msg.has_empty_line() && msg.headers_end() > 0 && buf[msg.headers_end() - 1] != b'\n' {
        extra.push(Edit {
            at: msg.headers_end() as u32,
            del: 0,
            ins: b"\r\n".to_vec(),
            zone: Zone::LineEnd,
        });
    }
    if !msg.has_empty_line() {
        extra.push(Edit {
            at: msg.headers_end() as u32,
            del: 0,
            ins: b"\r\n".to_vec(),
            zone: Zone::Terminator,
        });
    }
    edits.extend(extra.iter());
    edits.sort_by_key(|e| (e.at, e.zone, e.del > 0));
    let grow: usize = edits.iter().map(|e| e.ins.len()).sum();
    let mut out = Vec::with_capacity(len + grow);
    let mut cur = 0usize;
    for e in edits {
        let at = e.at as usize;
        if at < cur {
            return Err(LumpError::Overlap { at: e.at });
        }
        out.extend_from_slice(&buf[cur..at]);
        out.extend_from_slice(&e.ins);
        cur = at + e.del as usize;
    }
    out.extend_from_slice(&buf[cur..len]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKb, SIP/2.0/UDP p2.example.com;branch=z9hG4bKc\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: x@y\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
bodyJUNK";

    fn msg() -> SipMsg {
        SipMsg::parse(REQ.to_vec()).unwrap()
    }

    fn s(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    #[test]
    fn no_edits_drops_trailing_junk() {
        let m = msg();
        assert_eq!(apply(&m, &Lumps::new()).unwrap(), &REQ[..REQ.len() - 4]);
    }

    #[test]
    fn via_insert_received_and_body() {
        let m = msg();
        let mut l = Lumps::new();
        l.insert_via(
            &m,
            &via_value("UDP", "10.0.0.1", Some(5060), "z9hG4bKnew", false),
        );
        l.add_received(&m, "192.0.2.9:7777".parse().unwrap())
            .unwrap();
        l.set_body(&m, b"new body");
        l.add_header(&m, b"X-Test", b"1");
        let out = s(&apply(&m, &l).unwrap());
        assert!(out.contains("\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport=7777;received=192.0.2.9\r\n"), "{out}");
        assert!(
            out.contains("Content-Length: 8\r\nX-Test: 1\r\n\r\nnew body"),
            "{out}"
        );
        assert!(out.ends_with("new body"));
        let re = SipMsg::parse(out.into_bytes()).unwrap();
        assert_eq!(re.via1().unwrap().port, Some(5060));
        assert_eq!(re.body(), b"new body");
    }

    #[test]
    fn received_only_when_needed() {
        let m = SipMsg::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\r\n"
                .to_vec(),
        )
        .unwrap();
        let mut l = Lumps::new();
        l.add_received(&m, "192.0.2.1:5060".parse().unwrap())
            .unwrap();
        assert!(l.is_empty());
        l.add_received(&m, "[2001:db8::1]:5060".parse().unwrap())
            .unwrap();
        let out = s(&apply(&m, &l).unwrap());
        assert!(
            out.contains(";branch=z9hG4bK1;received=2001:db8::1\r\n"),
            "{out}"
        );
        assert!(out.contains("Content-Length: 0\r\n\r\n"), "{out}");
    }

    #[test]
    fn remove_first_via_both_shapes() {
        let m = msg();
        let mut l = Lumps::new();
        l.remove_first_via(&m).unwrap();
        let out = s(&apply(&m, &l).unwrap());
        assert!(!out.contains("192.0.2.1"));
        let m2 = SipMsg::parse(out.into_bytes()).unwrap();
        let mut l = Lumps::new();
        l.remove_first_via(&m2).unwrap();
        let out = s(&apply(&m2, &l).unwrap());
        assert!(
            out.contains("\r\nVia: SIP/2.0/UDP p2.example.com;branch=z9hG4bKc\r\n"),
            "{out}"
        );
    }

    #[test]
    fn header_edits_keep_order() {
        let m = msg();
        let mut l = Lumps::new();
        let to = m.find(HeaderName::To).unwrap();
        l.replace_header_body(&m, to, b"<sip:carol@example.com>");
        l.remove_header(&m, m.find(HeaderName::CallId).unwrap());
        l.add_header_lines(&m, b"X-A: 1\r\nX-B: 2");
        l.add_header(&m, b"X-C", b"3");
        let out = s(&apply(&m, &l).unwrap());
        assert!(
            out.contains("To: <sip:carol@example.com>\r\nCSeq: 1 INVITE\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Content-Length: 4\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\nbody"),
            "{out}"
        );
    }

    #[test]
    fn unterminated_header_section() {
        let m = SipMsg::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1".to_vec(),
        )
        .unwrap();
        let mut l = Lumps::new();
        l.add_received(&m, "192.0.2.1:5060".parse().unwrap())
            .unwrap();
        l.add_header(&m, b"X", b"1");
        let out = s(&apply(&m, &l).unwrap());
        assert_eq!(
            out,
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1;received=192.0.2.1\r\n\
X: 1\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn removing_the_header_before_content_length_still_fixes_it() {
        let m = msg();
        let mut l = Lumps::new();
        l.remove_header(&m, m.find(HeaderName::CSeq).unwrap());
        l.set_body(&m, b"longer body");
        let out = s(&apply(&m, &l).unwrap());
        assert!(
            out.contains("Call-ID: x@y\r\nContent-Length: 11\r\n\r\nlonger body"),
            "{out}"
        );
    }

    #[test]
    fn overlap_is_an_error() {
        let m = msg();
        let mut l = Lumps::new();
        l.delete(&m, Span::new(10, 20));
        l.delete(&m, Span::new(15, 25));
        assert_eq!(apply(&m, &l), Err(LumpError::Overlap { at: 15 }));
        let mut l = Lumps::new();
        l.delete(&m, Span::new(10, 100000));
        assert!(matches!(apply(&m, &l), Err(LumpError::OutOfRange { .. })));
    }
}
