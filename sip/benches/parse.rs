//! Parse throughput, std::time only: `cargo bench -p ser-sip --bench parse`.
//!
//! For a typical ~1 KB INVITE and a REGISTER: header indexing alone, and
//! indexing plus the parse of Via/From/To/Call-ID/CSeq (what a proxy
//! touches for every message). Each run lasts about half a second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ser_sip::SipMsg;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: Example-UA/1.2.3 (linux)\r\n\
Session-Expires: 1800;refresher=uac\r\n\
P-Asserted-Identity: \"Alice\" <sip:alice@atlanta.example.com>\r\n\
Record-Route: <sip:p1.example.com;lr;ftag=1928301774>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 400\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=Session SDP\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 51372 RTP/AVP 31\r\n\
a=rtpmap:31 H261/90000\r\n\
a=x-padding:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";

const REGISTER: &[u8] = b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>;expires=7200\r\n\
Authorization: Digest username=\"bob\", realm=\"biloxi.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:registrar.biloxi.example.com\", response=\"6629fae49393a05397450978507c4ef1\"\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\r\n";

fn touch(m: &SipMsg) {
    black_box(m.via1().ok());
    black_box(m.from().ok());
    black_box(m.to().ok());
    black_box(m.call_id());
    black_box(m.cseq().ok());
}

fn run(name: &str, msg: &[u8], f: impl Fn(Vec<u8>)) {
    // Warm up, then run for ~0.5 s.
    for _ in 0..10_000 {
        f(msg.to_vec());
    }
    let budget = Duration::from_millis(500);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            f(black_box(msg.to_vec()));
        }
        n += 1000;
    }
    let el = start.elapsed();
    let per = el.as_nanos() as f64 / n as f64;
    println!(
        "{name:<44} {:>5} B  {per:>8.0} ns/msg  {:>10.0} msg/s",
        msg.len(),
        1e9 / per
    );
}

fn main() {
    assert!(
        SipMsg::parse(INVITE.to_vec())
            .and_then(|m| m.validate())
            .is_ok(),
        "bench INVITE is valid"
    );
    assert!(
        SipMsg::parse(REGISTER.to_vec())
            .and_then(|m| m.validate())
            .is_ok(),
        "bench REGISTER is valid"
    );
    for (label, msg) in [("INVITE", INVITE), ("REGISTER", REGISTER)] {
        run(&format!("{label}: copy buffer only (baseline)"), msg, |b| {
            black_box(b);
        });
        run(&format!("{label}: index (parse)"), msg, |b| {
            black_box(SipMsg::parse(b).ok());
        });
        run(
            &format!("{label}: parse + Via/From/To/Call-ID/CSeq"),
            msg,
            |b| {
                if let Ok(m) = SipMsg::parse(b) {
                    touch(&m);
                }
            },
        );
        run(
            &format!("{label}: parse + key headers + validate"),
            msg,
            |b| {
                if let Ok(m) = SipMsg::parse(b) {
                    touch(&m);
                    black_box(m.validate().ok());
                }
            },
        );
    }
}
