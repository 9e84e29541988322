//! Fuzz bodies, shared by the cargo-fuzz targets in `fuzz/` and the
//! stable smoke test in `tests/smoke.rs`. They panic only on a broken
//! internal invariant (a reply or rewrite we build that does not parse).

use std::net::SocketAddr;

use crate::lump::{apply, via_value, Lumps};
use crate::reply::{bad_message_reaction, build_reply, Reaction};
use crate::{frame_stream, uri, SipMsg};

/// Parses `data` as a message and exercises everything built on it: every
/// lazy parser, validation, the dump, a reply, lumps and framing.
pub fn parse_msg(data: &[u8]) {
    let _ = frame_stream(data);
    // On a stream an HTTP request (XML-RPC) parses too, and is answered in HTTP.
    if let Ok(m) = SipMsg::parse_stream(data.to_vec()) {
        let _ = m.validate();
        if m.is_http() {
            let r = build_reply(&m, 200, b"OK", b"", b"x", None, None).expect("HTTP reply");
            assert!(r.starts_with(b"HTTP/1."), "HTTP reply status line");
        }
    }
    let src: SocketAddr = if data.first().is_some_and(|c| c & 1 == 1) {
        SocketAddr::from(([192, 0, 2, 99], 5099))
    } else {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 9], 5099))
    };
    let msg = match SipMsg::parse(data.to_vec()) {
        Ok(m) => m,
        Err(e) => {
            if let Reaction::Reply { bytes, .. } = bad_message_reaction(data, &e, Some(src)) {
                let r = SipMsg::parse(bytes).expect("our 400 reply parses");
                r.check_headers().expect("our 400 reply is valid");
            }
            return;
        }
    };
    let _ = msg.via1();
    let _ = msg.via2();
    let _ = msg.from();
    let _ = msg.to();
    let _ = msg.call_id();
    let _ = msg.cseq();
    let _ = msg.parsed_ruri();
    let _ = msg.max_forwards();
    let _ = msg.expires();
    for h in msg.headers() {
        let _ = msg.parsed(h);
    }
    let _ = crate::dump::dump(&msg);
    let valid = msg.validate();
    if let Err(e) = &valid {
        if let Reaction::Reply { bytes, .. } = bad_message_reaction(data, e, Some(src)) {
            SipMsg::parse(bytes).expect("our 400 reply parses");
        }
    }
    if msg.is_request() {
        if let Ok(r) = build_reply(
            &msg,
            200,
            b"OK",
            b"Server: ser\r\n",
            b"body",
            Some(b"tag1"),
            Some(src),
        ) {
            let r = SipMsg::parse(r).expect("our reply parses");
            if valid.is_ok() {
                r.check_headers()
                    .expect("our reply to a valid request is valid");
            }
        }
    }
    let mut lumps = Lumps::new();
    lumps.insert_via(
        &msg,
        &via_value("UDP", "10.0.0.1", Some(5060), "z9hG4bKfuzz", true),
    );
    let _ = lumps.add_received(&msg, src);
    lumps.add_header(&msg, b"X-Fuzz", b"1");
    lumps.set_body(&msg, b"new body");
    if let Ok(out) = apply(&msg, &lumps) {
        if valid.is_ok() {
            let m = SipMsg::parse(out).expect("rewritten message parses");
            assert_eq!(m.body(), b"new body");
        }
    }
    let mut lumps = Lumps::new();
    if lumps.remove_first_via(&msg).is_ok() {
        let _ = apply(&msg, &lumps);
    }
}

/// Parses `data` as a URI and compares it with itself.
pub fn parse_uri(data: &[u8]) {
    if let Ok(u) = uri::parse_uri(data) {
        assert!(uri::uri_eq(data, &u, data, &u) || u.scheme == uri::Scheme::Other);
        let _ = uri::uri_eq_bytes(data, b"sip:alice@example.com;transport=tcp?x=y");
    }
}
