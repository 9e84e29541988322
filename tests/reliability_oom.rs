//! Shared-memory exhaustion through the real `ser` binary: with `-m 1` a
//! REGISTER flood of distinct AORs fills usrloc, after which every save is
//! answered 500 (no crash, no dead child), and tm's transaction creation
//! fails the same way; the refusals are logged at most once per 5 s, and
//! service returns by itself once transactions free their memory.

mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use support::proc::{free_udp_port, Server};

/// `ser` with `cfg` on a free UDP port: 2 receivers in 1 MB of shared memory.
fn start(cfg: &str, tag: &str) -> (Server, u16) {
    let port = free_udp_port();
    let ser = Server::launch_cfg(&format!("oom-{tag}"), cfg)
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2", "-m", "1"])
        .start();
    (ser, port)
}

const CFG: &str = "debug=2\nloadmodule \"sl\"\nloadmodule \"tm\"\n\
    loadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
    route {\n  if (method == \"REGISTER\") {\n    if (!save(\"location\")) { sl_reply_error(); }\n    exit;\n  }\n\
    if (!t_relay()) { sl_reply_error(); }\n}\n";

/// Sends `n` requests made by `make` one at a time; counts the final
/// status codes (0 = no final reply within 300 ms).
fn flood(port: u16, n: usize, make: impl Fn(u16, usize) -> String) -> BTreeMap<u16, usize> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let me = s.local_addr().unwrap().port();
    let mut codes = BTreeMap::new();
    let mut buf = [0u8; 4096];
    for i in 0..n {
        s.send_to(make(me, i).as_bytes(), ("127.0.0.1", port))
            .unwrap();
        let code = loop {
            let Ok(len) = s.recv(&mut buf) else { break 0 };
            let text = String::from_utf8_lossy(&buf[..len]);
            let code: u16 = text
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            if code >= 200 {
                break code;
            }
        };
        *codes.entry(code).or_insert(0) += 1;
    }
    codes
}

fn children_alive(ser: &Server, want: usize) -> bool {
    let main = ser.pid();
    let Ok(text) = std::fs::read_to_string(format!("/proc/{main}/task/{main}/children")) else {
        return false;
    };
    text.split_whitespace().count() == want
}

#[test]
fn register_flood_on_one_megabyte_gets_500_not_a_crash() {
    let (mut ser, port) = start(CFG, "reg");
    let pad = "x".repeat(200);
    let codes = flood(port, 3000, |me, i| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKoom{i}\r\n\
             From: <sip:user{i}@127.0.0.1>;tag={i}\r\nTo: <sip:user{i}@127.0.0.1>\r\n\
             Call-ID: oom{i}\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:user{i}@127.0.0.1:5555;p={pad}>;expires=3600\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    });
    let log = ser.log_text();
    assert!(
        codes.get(&200).copied().unwrap_or(0) > 100,
        "{codes:?}\n{log}"
    );
    assert!(
        codes.get(&500).copied().unwrap_or(0) > 100,
        "{codes:?}\n{log}"
    );
    assert_eq!(codes.get(&0), None, "unanswered: {codes:?}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("out of shared memory"), "{log}");
    // Rate-limited: one line per 5 s for well over a hundred refusals.
    let lines = log.matches("registrar: save refused").count();
    assert!((1..=3).contains(&lines), "{lines} OOM lines:\n{log}");
    // main + 2 receivers + timer, all still there.
    assert!(children_alive(&ser, 3), "{log}");
    assert!(ser.try_wait().is_none());
}

#[test]
fn invite_flood_on_one_megabyte_gets_500_not_a_crash() {
    let (mut ser, port) = start(CFG, "tm");
    // Nobody listens on the destination: transactions stay until fr_timer.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pad = "x".repeat(300);
    let codes = flood(port, 700, |me, i| {
        format!(
            "INVITE sip:bob@127.0.0.1:{dead} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKtm{i}\r\n\
             From: <sip:a@127.0.0.1>;tag={i}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: tm{i}-{pad}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    });
    let log = ser.log_text();
    assert!(
        codes.get(&500).copied().unwrap_or(0) > 100,
        "{codes:?}\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let lines = log.matches("tm: new transaction refused").count();
    assert!((1..=3).contains(&lines), "{lines} OOM lines:\n{log}");
    assert!(children_alive(&ser, 3), "{log}");
    assert!(ser.try_wait().is_none());
}

#[test]
fn service_returns_once_transactions_free_their_memory() {
    let cfg = CFG.replace(
        "loadmodule \"registrar\"\n",
        "loadmodule \"registrar\"\nmodparam(\"tm\", \"fr_inv_timer\", 1000)\n\
         modparam(\"tm\", \"fr_timer\", 1000)\nmodparam(\"tm\", \"wt_timer\", 500)\n",
    );
    let (mut ser, port) = start(&cfg, "back");
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pad = "x".repeat(300);
    let request = |tag: &'static str| {
        let pad = pad.clone();
        move |me: u16, i: usize| {
            format!(
                "OPTIONS sip:bob@127.0.0.1:{dead} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{tag}{i}\r\n\
                 From: <sip:a@127.0.0.1>;tag={i}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: {tag}{i}-{pad}\r\n\
                 CSeq: 1 OPTIONS\r\nContact: <sip:a@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n"
            )
        }
    };
    // A burst (no waiting for replies) fills the segment within fr_timer.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = s.local_addr().unwrap().port();
    let make = request("full");
    for i in 0..1500 {
        let _ = s.send_to(make(me, i).as_bytes(), ("127.0.0.1", port));
    }
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut refused = 0;
    while let Ok(n) = s.recv(&mut buf) {
        refused += usize::from(buf[..n].starts_with(b"SIP/2.0 500"));
    }
    assert!(refused > 100, "only {refused} refused:\n{}", ser.log_text());
    // Non-INVITE: fr_timer (1 s) ends them with 408, wt_timer (0.5 s) frees
    // them (an INVITE's 408 would wait for our ACK up to timer H, 32 s).
    std::thread::sleep(Duration::from_secs(4));
    let again = flood(port, 20, request("again"));
    let log = ser.log_text();
    assert_eq!(again.get(&500), None, "still refused: {again:?}\n{log}");
    assert!(children_alive(&ser, 3), "{log}");
    assert!(ser.try_wait().is_none());
}
