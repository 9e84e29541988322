//! Stateless proxy core through the real `ser` binary: every `-W` poll
//! method answers TCP; the methods of other systems are refused clearly;
//! `tcp_max_connections` closes the connection beyond the limit;
//! `listen=... advertise` shows in a forwarded request's Via and
//! Record-Route. Every test kills what it started (Drop).

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::proc::{free_port, wait_until, Server, SER};

/// `ser -E -DD` with `cfg` and more `args`, started (waits for "ser started").
fn start(tag: &str, cfg: &str, args: &[&str]) -> Server {
    Server::launch_cfg(&format!("gaps-{tag}"), cfg)
        .args(args)
        .start()
}

fn options(port: u16, n: u32) -> String {
    format!(
        "OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-w{n}\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: gaps-{n}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends an OPTIONS on `s` and reads until a whole status line arrived.
fn ask(s: &mut TcpStream, port: u16, n: u32) -> String {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(options(port, n).as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(3);
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") && Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

const ANSWER: &str = "loadmodule \"sl\"\nroute { sl_send_reply(\"200\", \"polled\"); }\n";

#[test]
fn every_poll_method_answers_tcp() {
    for method in ["poll", "epoll_lt", "epoll_et", "select"] {
        let port = free_port();
        let listen = format!("tcp:127.0.0.1:{port}");
        let ser = start(
            "poll",
            &format!("debug=3\n{ANSWER}"),
            &["-l", &listen, "-n", "1", "-N", "2", "-W", method],
        );
        assert!(
            ser.log_text()
                .contains(&format!("tcp poll method: {method}")),
            "{}",
            ser.log_text()
        );
        // two connections, two requests each: the reactor keeps watching
        let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
        for n in 0..2 {
            for s in [&mut a, &mut b] {
                let r = ask(s, port, n);
                assert!(
                    r.starts_with("SIP/2.0 200 polled\r\n"),
                    "{method}: {r:?}\n{}",
                    ser.log_text()
                );
            }
        }
    }
}

#[test]
fn poll_methods_of_other_systems_are_refused() {
    for method in ["kqueue", "/dev/poll", "sigio_rt"] {
        let out = Command::new(SER)
            .args(["-W", method, "-c"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err,
            format!(
                "ser: bad -W argument '{method}': poll method {method} is not available on \
                 Linux (available: poll, epoll_lt, epoll_et, select)\nUse -h for help\n"
            )
        );
    }
    let v = Command::new(SER).arg("-V").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout)
        .contains("\npoll method support: poll, epoll_lt, epoll_et, select.\n"));
}

#[test]
fn tcp_max_connections_closes_the_one_too_many() {
    let port = free_port();
    let listen = format!("tcp:127.0.0.1:{port}");
    let ser = start(
        "maxconn",
        &format!("debug=3\ntcp_max_connections=2\n{ANSWER}"),
        &["-l", &listen, "-n", "1", "-N", "2"],
    );
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(ask(&mut a, port, 1).starts_with("SIP/2.0 200"));
    assert!(ask(&mut b, port, 2).starts_with("SIP/2.0 200"));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let r = ask(&mut c, port, 3);
    assert_eq!(r, "", "third connection answered:\n{}", ser.log_text());
    assert!(
        wait_until(Duration::from_secs(2), || ser
            .log_text()
            .contains("connections open (tcp_max_connections); refusing")),
        "{}",
        ser.log_text()
    );
    // once one closes, a new one is taken again
    drop(a);
    drop(c);
    std::thread::sleep(Duration::from_millis(400));
    let mut d = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        ask(&mut d, port, 4).starts_with("SIP/2.0 200"),
        "{}",
        ser.log_text()
    );
}

#[test]
fn advertised_address_goes_into_via_and_record_route() {
    let port = free_port();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let cport = callee.local_addr().unwrap().port();
    let cfg = format!(
        "debug=3\nlisten=udp:127.0.0.1:{port} advertise sip.example.net:5099\n\
         loadmodule \"rr\"\nroute {{ record_route(); forward(); }}\n"
    );
    let _ser = start("advertise", &cfg, &["-n", "1"]);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap().port();
    let req = format!(
        "INVITE sip:b@127.0.0.1:{cport} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-adv\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: adv-1\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = callee.recv_from(&mut buf).expect("forwarded INVITE");
    let fwd = String::from_utf8_lossy(&buf[..n]);
    let top_via = fwd
        .lines()
        .find(|l| l.starts_with("Via:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        top_via.starts_with("Via: SIP/2.0/UDP sip.example.net:5099;branch="),
        "{fwd}"
    );
    let rr = fwd
        .lines()
        .find(|l| l.starts_with("Record-Route:"))
        .unwrap_or_default();
    assert!(rr.contains("sip:sip.example.net:5099;"), "{fwd}");
}

#[test]
fn dst_blacklist_skips_a_failed_destination() {
    let port = free_port();
    // nothing listens there: the TCP connect is refused
    let dead = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cfg = "debug=3\nuse_dst_blacklist=yes\ndst_blacklist_expire=60\nloadmodule \"sl\"\n\
               route { if (!forward()) { sl_send_reply(\"503\", \"forward failed\"); } }\n";
    let ser = start("blacklist", cfg, &["-l", &listen, "-n", "1", "-N", "1"]);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap().port();
    let mut buf = [0u8; 4096];
    for n in 0..2 {
        let req = format!(
            "OPTIONS sip:b@127.0.0.1:{dead};transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-bl{n}\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: bl-{n}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
        let (k, _) = caller.recv_from(&mut buf).expect("a 503");
        let reply = String::from_utf8_lossy(&buf[..k]);
        assert!(reply.starts_with("SIP/2.0 503 forward failed"), "{reply}");
    }
    let log = ser.log_text();
    assert_eq!(
        log.matches("dst_blacklist: tcp:127.0.0.1").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "tcp:127.0.0.1:{dead} is blacklisted (dst_blacklist)"
        )),
        "{log}"
    );
}

#[test]
fn dst_blacklist_makes_t_relay_fail_at_once() {
    let port = free_port();
    let dead = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cfg = "debug=3\nuse_dst_blacklist=yes\nloadmodule \"sl\"\nloadmodule \"tm\"\n\
               route { if (!t_relay()) { sl_reply_error(); } }\n";
    let ser = start("blacklist-tm", cfg, &["-l", &listen, "-n", "1", "-N", "1"]);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap().port();
    let mut buf = [0u8; 4096];
    for n in 0..2 {
        let req = format!(
            "OPTIONS sip:b@127.0.0.1:{dead};transport=tcp SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-tbl{n}\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: tbl-{n}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
        let (k, _) = caller.recv_from(&mut buf).expect("an error reply");
        let reply = String::from_utf8_lossy(&buf[..k]);
        assert!(
            reply.starts_with("SIP/2.0 5"),
            "{reply}\n{}",
            ser.log_text()
        );
    }
    let log = ser.log_text();
    assert!(log.contains("is blacklisted (dst_blacklist)"), "{log}");
}
