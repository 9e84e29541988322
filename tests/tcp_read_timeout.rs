//! TCP settings an operator tunes against misbehaving clients, through the
//! real binary: `tcp_msg_read_timeout` closes a connection whose message
//! never completes (slowloris) while whole messages keep being answered,
//! and `force_tcp_alias()` is accepted and leaves the request answered.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::proc::{free_port, Server};

fn cfg(port: u16) -> String {
    format!(
        "debug=2\nchildren=1\ntcp_children=1\nlisten=tcp:127.0.0.1:{port}\n\
         tcp_msg_read_timeout=1\n\
         loadmodule \"sl\"\n\
         route {{ force_tcp_alias(); force_tcp_alias(5070); sl_send_reply(\"200\", \"OK\"); }}\n"
    )
}

fn options(port: u16, branch: &str) -> String {
    format!(
        "OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n\
         Call-ID: {branch}@t\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn an_unfinished_message_is_dropped_after_tcp_msg_read_timeout() {
    let port = free_port();
    let ser = Server::launch_cfg("tcp-read-timeout", &cfg(port)).start();

    // A whole request on a connection of its own is answered (force_tcp_alias ran).
    let mut ok = TcpStream::connect(("127.0.0.1", port)).unwrap();
    ok.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    ok.write_all(options(port, "whole").as_bytes()).unwrap();
    let mut buf = [0u8; 2048];
    let n = ok.read(&mut buf).unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        reply.starts_with("SIP/2.0 200"),
        "{reply}\n{}",
        ser.log_text()
    );

    // Half a request, then silence: closed after about a second.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let half = options(port, "half");
    slow.write_all(&half.as_bytes()[..40]).unwrap();
    let t0 = Instant::now();
    let got = slow.read(&mut buf);
    let waited = t0.elapsed();
    assert!(matches!(got, Ok(0) | Err(_)), "{got:?} after {waited:?}");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}\n{}",
        ser.log_text()
    );
    assert!(
        ser.log_text().contains("no whole message"),
        "{}",
        ser.log_text()
    );

    // The server still answers on the first connection.
    ok.write_all(options(port, "again").as_bytes()).unwrap();
    let n = ok.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
}

#[test]
fn force_tcp_alias_with_a_bad_port_is_a_config_error() {
    let port = free_port();
    let text = cfg(port).replace("force_tcp_alias(5070)", "force_tcp_alias(70000)");
    let dir = support::tmp::TmpDir::new("tcp-alias-bad");
    std::fs::write(dir.path("ser.cfg"), text).unwrap();
    let out = std::process::Command::new(support::proc::SER)
        .arg("-c")
        .arg("-f")
        .arg(dir.path("ser.cfg"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("bad port 70000"), "{err}");
}
