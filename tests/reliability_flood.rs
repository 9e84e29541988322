//! Floods through the real `ser` binary: `pike_check_req()` drops a source
//! that sends more than `reqs_density_per_unit` requests per unit while
//! another source is still answered.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::proc::{free_udp_port, Server};

/// `ser` with `cfg` on a free UDP port: 2 receivers.
fn start(cfg: &str) -> (Server, u16) {
    let port = free_udp_port();
    let ser = Server::launch_cfg("flood", cfg)
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2"])
        .start();
    (ser, port)
}

fn options(s: &UdpSocket, port: u16, call: usize) {
    let me = s.local_addr().unwrap().port();
    let msg = format!(
        "OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKpike{me}x{call}\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n\
         Call-ID: pike-{me}-{call}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
}

/// Replies received on `s` until `quiet` passes without one.
fn drain(s: &UdpSocket, quiet: Duration) -> usize {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while s.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn pike_drops_a_flooding_source_and_serves_the_others() {
    let (ser, port) = start(
        "debug=2\nloadmodule \"sl\"\nloadmodule \"pike\"\n\
         modparam(\"pike\", \"sampling_time_unit\", 10)\n\
         modparam(\"pike\", \"reqs_density_per_unit\", 20)\n\
         route {\n  if (!pike_check_req()) { drop; }\n  sl_send_reply(\"200\", \"OK\");\n}\n",
    );
    // The flooder and the good client differ by address: 127.0.0.1 vs
    // 127.0.0.2 (both loopback).
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = UdpSocket::bind("127.0.0.2:0").unwrap();
    for call in 0..200 {
        options(&flooder, port, call);
    }
    let answered = drain(&flooder, Duration::from_millis(500));
    assert!(
        (1..=20).contains(&answered),
        "flooder got {answered} replies\n{}",
        ser.log_text()
    );
    for call in 0..5 {
        options(&good, port, call);
    }
    assert_eq!(
        drain(&good, Duration::from_millis(500)),
        5,
        "{}",
        ser.log_text()
    );
    // Still blocked.
    options(&flooder, port, 1000);
    assert_eq!(drain(&flooder, Duration::from_millis(300)), 0);
    assert!(
        ser.log_text()
            .contains("pike: 127.0.0.1 detected as a flood source"),
        "{}",
        ser.log_text()
    );
}

/// Replies on `s` (first lines plus any Retry-After) until `quiet` passes.
fn replies(s: &UdpSocket, quiet: Duration) -> Vec<String> {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while let Ok(n) = s.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[test]
fn pipelimit_taildrop_answers_503_above_the_limit() {
    let (ser, port) = start(
        "debug=2\nloadmodule \"sl\"\nloadmodule \"pipelimit\"\n\
         modparam(\"pipelimit\", \"timer_interval\", 30)\n\
         route {\n  if (!pl_check(\"all\", \"TAILDROP\", 10)) { pl_drop(5); exit; }\n\
         sl_send_reply(\"200\", \"OK\");\n}\n",
    );
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for call in 0..30 {
        options(&c, port, call);
    }
    let r = replies(&c, Duration::from_millis(500));
    let ok = r.iter().filter(|t| t.starts_with("SIP/2.0 200 ")).count();
    let limited: Vec<&String> = r
        .iter()
        .filter(|t| t.starts_with("SIP/2.0 503 Server Unavailable"))
        .collect();
    assert_eq!((ok, limited.len()), (10, 20), "{r:?}\n{}", ser.log_text());
    assert!(
        limited.iter().all(|t| t.contains("Retry-After: 5\r\n")),
        "{limited:?}"
    );
}

/// An OPTIONS saying the client is `real` (X-Real-IP), as a proxy in front
/// of ser would.
fn options_for(s: &UdpSocket, port: u16, call: usize, real: &str) {
    let me = s.local_addr().unwrap().port();
    let msg = format!(
        "OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKip{me}x{call}\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n\
         Call-ID: ip-{me}-{call}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         X-Real-IP: {real}\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
}

#[test]
fn pike_check_ip_counts_the_address_the_script_names() {
    let (ser, port) = start(
        "debug=2\nloadmodule \"sl\"\nloadmodule \"pike\"\n\
         modparam(\"pike\", \"sampling_time_unit\", 10)\n\
         modparam(\"pike\", \"reqs_density_per_unit\", 20)\n\
         route {\n  if (!pike_check_ip(\"$hdr(X-Real-IP)\")) { drop; }\n\
         sl_send_reply(\"200\", \"OK\");\n}\n",
    );
    // One socket, two clients behind it.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for call in 0..100 {
        options_for(&s, port, call, "10.9.9.9");
    }
    let flood = drain(&s, Duration::from_millis(500));
    assert!((1..=20).contains(&flood), "{flood}\n{}", ser.log_text());
    for call in 100..105 {
        options_for(&s, port, call, "[2001:db8::8]");
    }
    assert_eq!(
        drain(&s, Duration::from_millis(500)),
        5,
        "{}",
        ser.log_text()
    );
    // Not an address: refused, logged.
    options_for(&s, port, 200, "nobody");
    assert_eq!(drain(&s, Duration::from_millis(300)), 0);
    let log = ser.log_text();
    assert!(
        log.contains("pike: 10.9.9.9 detected as a flood source"),
        "{log}"
    );
    assert!(log.contains("`nobody` is not an IP address"), "{log}");
}

/// `kamcmd <args>` on `ctl`: stdout, or the failure.
fn kamcmd(ctl: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("/usr/sbin/kamcmd")
        .arg("-s")
        .arg(format!("unixs:{}", ctl.display()))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn pipelimit_pipes_are_managed_over_rpc() {
    if !std::path::Path::new("/usr/sbin/kamcmd").exists() {
        eprintln!("kamcmd missing: skipped");
        return;
    }
    let dir = support::tmp::TmpDir::new("flood-pl-rpc");
    let ctl = dir.path("ctl");
    let (ser, port) = start(&format!(
        "debug=2\nloadmodule \"sl\"\nloadmodule \"pipelimit\"\nloadmodule \"ctl\"\n\
         modparam(\"ctl\", \"binrpc\", \"unixs:{}\")\n\
         modparam(\"pipelimit\", \"timer_interval\", 30)\n\
         route {{\n  if (pl_check(\"rpc\") < 0) {{ pl_drop(); exit; }}\n\
         sl_send_reply(\"200\", \"OK\");\n}}\n",
        ctl.display()
    ));
    // No pipe yet: pl_check answers -2 and the request passes.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    options(&c, port, 0);
    assert_eq!(drain(&c, Duration::from_millis(300)), 1);
    // A 3-per-interval TAILDROP pipe made over RPC limits the next ones.
    kamcmd(&ctl, &["pl.set_pipe", "rpc", "TAILDROP", "3"]).unwrap();
    for call in 1..=6 {
        options(&c, port, call);
    }
    let r = replies(&c, Duration::from_millis(500));
    let limited = r.iter().filter(|t| t.starts_with("SIP/2.0 503")).count();
    assert_eq!((r.len(), limited), (6, 3), "{r:?}\n{}", ser.log_text());
    let pipes = kamcmd(&ctl, &["pl.get_pipes"]).unwrap();
    assert!(
        pipes.contains("rpc") && pipes.contains("TAILDROP") && pipes.contains("counter: 6"),
        "{pipes}"
    );
    let bogus = kamcmd(&ctl, &["pl.set_pipe", "rpc", "BOGUS", "3"]).unwrap_or_else(|e| e);
    assert!(bogus.contains("unknown algorithm"), "{bogus}");
    kamcmd(&ctl, &["pl.set_pid", "10.5", "1", "0"]).unwrap();
    let pid = kamcmd(&ctl, &["pl.get_pid"]).unwrap();
    assert!(pid.contains("10.5"), "{pid}");
}
