//! Replies built from a request (stateless replies, `sl_send_reply`) and
//! the reaction to unparsable messages. Replaces the reply side of
//! `msg_translator.c` (`build_res_buf_from_sip_req`).

use std::net::SocketAddr;

use crate::error::ParseError;
use crate::hdr::HeaderValue;
use crate::hname::HeaderName;
use crate::lump::received_edits;
use crate::msg::SipMsg;
use crate::scan::{is_lws, is_token};

/// Writes a header body, collapsing folded line ends into one space so a
/// copied header is a single line.
fn push_unfolded(out: &mut Vec<u8>, body: &[u8]) {
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'\r' || c == b'\n' {
            while out.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                out.pop();
            }
            while i < body.len() && is_lws(body[i]) {
                i += 1;
            }
            out.push(b' ');
            continue;
        }
        out.push(c);
        i += 1;
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], body: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    push_unfolded(out, body);
    out.extend_from_slice(b"\r\n");
}

fn check_text(b: &[u8]) -> Result<(), ParseError> {
    if b.iter().any(|c| *c == b'\r' || *c == b'\n' || *c == 0) {
        return Err(ParseError::NotApplicable {
            what: "line end or NUL in reply text",
        });
    }
    Ok(())
}

/// The answer to an HTTP request (XML-RPC on a SIP stream port, see
/// [`SipMsg::is_http`]): an HTTP status line in the request's version, the
/// extra headers, Content-Length and the body; there is no Via to copy.
fn http_reply(
    req: &SipMsg,
    code: u16,
    reason: &[u8],
    extra_headers: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let line = req.s(req.first_line_span());
    let version = &line[line.len().saturating_sub(8)..];
    let mut out = Vec::with_capacity(128 + extra_headers.len() + body.len());
    out.extend_from_slice(version);
    out.extend_from_slice(format!(" {code} ").as_bytes());
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// Builds a reply to `req` (for an HTTP request see [`http_reply`]): status line, the request's Via fields (the top
/// one with `received`/`rport` per RFC 3261 §18.2.1 and RFC 3581 when
/// `src` is given), From, To (with `to_tag` added when the To has no tag
/// and `code > 100`), Call-ID, CSeq, Record-Route for 180..=299, then
/// `extra_headers` (raw lines), Content-Length and `body`.
pub fn build_reply(
    req: &SipMsg,
    code: u16,
    reason: &[u8],
    extra_headers: &[u8],
    body: &[u8],
    to_tag: Option<&[u8]>,
    src: Option<SocketAddr>,
) -> Result<Vec<u8>, ParseError> {
    if !req.is_request() {
        return Err(ParseError::NotApplicable {
            what: "cannot reply to a reply",
        });
    }
    if !(100..=699).contains(&code) {
        return Err(ParseError::NotApplicable {
            what: "status code out of range",
        });
    }
    check_text(reason)?;
    if let Some(t) = to_tag {
        if t.is_empty() || !t.iter().all(|c| is_token(*c)) {
            return Err(ParseError::NotApplicable {
                what: "to-tag is not a token",
            });
        }
    }
    if req.is_http() {
        return Ok(http_reply(req, code, reason, extra_headers, body));
    }
    let buf = req.buf();
    let via_edits = match src {
        Some(src) => received_edits(req, src)?,
        None => {
            req.via1()?;
            Vec::new()
        }
    };
    let mut out = Vec::with_capacity(512 + body.len() + extra_headers.len());
    out.extend_from_slice(format!("SIP/2.0 {code} ").as_bytes());
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    let mut first_via = true;
    for h in req.headers() {
        let name = h.name.as_str().as_bytes();
        match h.name {
            HeaderName::Via => {
                if first_via && !via_edits.is_empty() {
                    let mut body = Vec::new();
                    let mut cur = h.body_span.begin();
                    let mut edits = via_edits.clone();
                    edits.sort_by_key(|e| e.0);
                    for (at, del, ins) in edits {
                        body.extend_from_slice(&buf[cur..at]);
                        body.extend_from_slice(&ins);
                        cur = at + del;
                    }
                    body.extend_from_slice(&buf[cur..h.body_span.end()]);
                    push_header(&mut out, name, &body);
                } else {
                    push_header(&mut out, name, req.header_body(h));
                }
                first_via = false;
            }
            HeaderName::To => {
                let mut body = req.header_body(h).to_vec();
                if let Some(tag) = to_tag.filter(|_| code > 100) {
                    let HeaderValue::NameAddr(to) = req.parsed(h)? else {
                        return Err(ParseError::NotApplicable {
                            what: "To is not a name-addr",
                        });
                    };
                    if to.tag.is_none() {
                        body.truncate(to.span.end() - h.body_span.begin());
                        body.extend_from_slice(b";tag=");
                        body.extend_from_slice(tag);
                    }
                }
                push_header(&mut out, name, &body);
            }
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                push_header(&mut out, name, req.header_body(h))
            }
            HeaderName::RecordRoute if (180..300).contains(&code) => {
                push_header(&mut out, name, req.header_body(h))
            }
            _ => {}
        }
    }
    if !extra_headers.is_empty() {
        out.extend_from_slice(extra_headers);
        if !extra_headers.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// What to do with a message that failed to parse or validate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Send this reply (to the source address, as a stateless reply).
    Reply {
        /// Its status code.
        code: u16,
        /// The reply bytes.
        bytes: Vec<u8>,
    },
    /// Drop the message silently (replies, ACKs, hopeless requests).
    Drop,
}

/// Decides how to react to `raw`, which failed with `err`: a request whose
/// Via, From, To, Call-ID and CSeq can still be found (and whose top Via
/// parses) gets `400 Bad Request` (505 / 413 / 414 where `err` says so);
/// replies, ACKs and anything less recoverable are dropped.
pub fn bad_message_reaction(raw: &[u8], err: &ParseError, src: Option<SocketAddr>) -> Reaction {
    match recover_reply(raw, err, src) {
        Some((code, bytes)) => Reaction::Reply { code, bytes },
        None => Reaction::Drop,
    }
}

/// A lenient re-scan: header lines are split at the first colon; each
/// needed header is copied only if its own (typed) parse succeeds.
fn recover_reply(raw: &[u8], err: &ParseError, src: Option<SocketAddr>) -> Option<(u16, Vec<u8>)> {
    let raw = &raw[..raw.len().min(crate::limits::Limits::DEFAULT.max_msg_len)];
    let start = raw.iter().position(|c| *c != b'\r' && *c != b'\n')?;
    let raw = &raw[start..];
    let method_len = raw.iter().position(|c| *c == b' ')?;
    let method = &raw[..method_len];
    if method.is_empty()
        || !method.iter().all(|c| is_token(*c))
        || method.eq_ignore_ascii_case(b"SIP/2.0")
    {
        return None;
    }
    if (raw.len() >= 4 && raw[..4].eq_ignore_ascii_case(b"SIP/")) || method == b"ACK" {
        return None;
    }
    // Rebuild a minimal request holding only the headers we need, each
    // copied only when its own parse succeeds, then reply to that.
    let mut mini = b"OPTIONS sip:invalid.invalid SIP/2.0\r\n".to_vec();
    let mut found = [false; 5];
    let wanted = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ];
    let mut p = raw.iter().position(|c| *c == b'\n')? + 1;
    while p < raw.len() {
        let mut e = p;
        // A logical line: continuation lines start with SP/HT.
        loop {
            match raw[e..].iter().position(|c| *c == b'\n') {
                Some(off) => {
                    e += off + 1;
                    if e < raw.len() && (raw[e] == b' ' || raw[e] == b'\t') {
                        continue;
                    }
                }
                None => e = raw.len(),
            }
            break;
        }
        let line = &raw[p..e];
        p = e;
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let Some(colon) = line.iter().position(|c| *c == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii());
        let Some(i) = wanted.iter().position(|w| *w == name) else {
            continue;
        };
        let body = line[colon + 1..].trim_ascii();
        let mut one = b"OPTIONS sip:invalid.invalid SIP/2.0\r\n".to_vec();
        push_header(&mut one, name.as_str().as_bytes(), body);
        one.extend_from_slice(b"\r\n");
        let Ok(m) = SipMsg::parse(one) else { continue };
        if m.parsed(m.headers().first()?).is_err() {
            continue;
        }
        if name != HeaderName::Via && found[i] {
            continue;
        }
        found[i] = true;
        push_header(&mut mini, name.as_str().as_bytes(), body);
    }
    if !found.iter().all(|f| *f) {
        return None;
    }
    mini.extend_from_slice(b"\r\n");
    let req = SipMsg::parse(mini).ok()?;
    let code = err.reply_code();
    let tag = fnv_tag(req.call_id().unwrap_or_default());
    build_reply(
        &req,
        code,
        err.reply_reason().as_bytes(),
        b"",
        b"",
        Some(tag.as_bytes()),
        src,
    )
    .ok()
    .map(|b| (code, b))
}

/// A stable to-tag derived from the Call-ID, so retransmissions get the
/// same reply.
fn fnv_tag(seed: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("ser-{h:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_requests_get_an_http_status_line() {
        let req = SipMsg::parse_stream(
            b"POST /RPC2 HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec(),
        )
        .unwrap();
        let r = build_reply(
            &req,
            513,
            b"Request to big",
            b"Server: s\r\n",
            b"",
            Some(b"t"),
            None,
        )
        .unwrap();
        assert_eq!(
            r,
            b"HTTP/1.0 513 Request to big\r\nServer: s\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(build_reply(&req, 200, b"bad\r\n", b"", b"", None, None).is_err());
    }

    use super::*;

    const REQ: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKa;rport\r\n\
v: SIP/2.0/UDP p1.example.com;branch=z9hG4bKb\r\n\
Record-Route: <sip:p1.example.com;lr>\r\n\
f: <sip:alice@example.com>;tag=1\r\n\
To: Bob\r\n <sip:bob@example.com>\r\n\
Call-ID: x@y\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn reply_copies_and_tags() {
        let m = SipMsg::parse(REQ.to_vec()).unwrap();
        let r = build_reply(
            &m,
            200,
            b"OK",
            b"Server: ser",
            b"",
            Some(b"abc"),
            Some("192.0.2.7:5099".parse().unwrap()),
        )
        .unwrap();
        let r = String::from_utf8(r).unwrap();
        assert_eq!(
            r,
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKa;rport=5099;received=192.0.2.7\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKb\r\n\
Record-Route: <sip:p1.example.com;lr>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: Bob <sip:bob@example.com>;tag=abc\r\n\
Call-ID: x@y\r\n\
CSeq: 1 INVITE\r\n\
Server: ser\r\n\
Content-Length: 0\r\n\r\n"
        );
        let r100 = build_reply(&m, 100, b"Trying", b"", b"", Some(b"abc"), None).unwrap();
        let r100 = String::from_utf8(r100).unwrap();
        assert!(
            r100.contains("To: Bob <sip:bob@example.com>\r\n") && !r100.contains("Record-Route"),
            "{r100}"
        );
        let parsed = SipMsg::parse(r100.into_bytes()).unwrap();
        assert_eq!(parsed.status(), Some(100));
        assert!(build_reply(&m, 200, b"O\r\nK", b"", b"", None, None).is_err());
    }

    #[test]
    fn reactions() {
        let bad = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1@h\r\nCSeq: 99999999999999 INVITE\r\nCSeq: 1 INVITE\r\nContact: ;;;\r\n\r\n";
        let err = ParseError::BadHeader {
            name: HeaderName::CSeq,
            at: 0,
            what: "x",
        };
        match bad_message_reaction(bad, &err, None) {
            Reaction::Reply { code, bytes } => {
                assert_eq!(code, 400);
                let r = SipMsg::parse(bytes).unwrap();
                assert_eq!(r.status(), Some(400));
                assert_eq!(r.cseq().unwrap().number, 1);
                assert!(r.to().unwrap().tag.is_some());
            }
            Reaction::Drop => panic!("expected a reply"),
        }
        assert_eq!(
            bad_message_reaction(b"SIP/2.0 200 OK\r\n\r\n", &err, None),
            Reaction::Drop
        );
        assert_eq!(
            bad_message_reaction(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", &err, None),
            Reaction::Drop
        );
        assert_eq!(bad_message_reaction(b"", &err, None), Reaction::Drop);
    }
}
