//! TCP connections are reused from every process: a caller over TCP gets its
//! replies, and the requests sent back to it, on its own connection even
//! when the process relaying them is not the TCP worker reading it (a UDP
//! receiver relaying the callee's UDP reply), statelessly (`forward()`) and
//! through tm (`t_relay()`); a caller whose connection comes from another
//! port than its Via names (NAT) too. A TCP destination that never answers
//! the connect (a listener whose backlog is full) stalls no one: other
//! requests keep being answered at once.
//!
//! The sipp parts are skipped when sipp is not installed. Every wait is
//! bounded; servers, sipp and threads are stopped by their guards.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::proc::{free_port, Group, Server};
use support::sipp::{
    counts, diagnostics, have_sipp, sipp, start_uas, KAMCMD, UAC_INVITE, UAS_BASIC,
};
use support::tmp::TmpDir;

/// ser on UDP and TCP `port`: `tm` loaded, `route` as the request route.
fn config(port: u16, route: &str, extra: &str) -> String {
    format!(
        "debug=3\nchildren=2\ntcp_children=3\n\
         listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\n\
         loadmodule \"sl\"\nloadmodule \"tm\"\n{extra}\n\
         route {{\n{route}\n}}\n"
    )
}

/// Established TCP sockets whose local port is `port` (each end of a
/// loopback connection is one socket).
fn established_at(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
        Err(_) => 0,
    }
}

/// Connections in ser's `core.tcp_list` (None without kamcmd).
fn tcp_list_len(sock: &std::path::Path) -> Option<usize> {
    let out = Command::new("timeout")
        .args(["-k", "2", "5", KAMCMD, "-s"])
        .arg(format!("unixs:{}", sock.display()))
        .arg("core.tcp_list")
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .matches("src_port:")
            .count()
    })
}

/// What one sipp run through ser saw.
struct Run {
    ok: u64,
    failed: u64,
    /// Most TCP connections the caller's port had at once (ss).
    most_sockets: usize,
    /// Most connections ser listed at once (`core.tcp_list`).
    most_listed: Option<usize>,
    diag: String,
}

/// sipp calling through ser over TCP to a sipp callee on UDP, 60 calls.
fn calls_over_one_connection(tag: &str, route: &str) -> Run {
    let dir = TmpDir::new(tag);
    let (ser_port, uas_port, uac_port) = (free_port(), free_port(), free_port());
    let sock = dir.path("ctl.sock");
    let ctl = format!(
        "loadmodule \"ctl\"\nmodparam(\"ctl\", \"binrpc\", \"unixs:{}\")",
        sock.display()
    );
    let ser = Server::launch_cfg(tag, &config(ser_port, route, &ctl)).start();
    let kamcmd = std::path::Path::new(KAMCMD).exists();
    let calls = 60;
    let mut uas = start_uas(dir.dir(), "uas", UAS_BASIC, uas_port, calls, false);
    let csv = dir.path("users.csv");
    std::fs::write(&csv, format!("SEQUENTIAL\nbob;127.0.0.1:{uas_port};\n")).unwrap();
    let (proxy, port, n) = (
        format!("127.0.0.1:{ser_port}"),
        uac_port.to_string(),
        calls.to_string(),
    );
    let args = [
        proxy.as_str(),
        "-sf",
        UAC_INVITE,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-inf",
        csv.to_str().unwrap(),
        "-m",
        &n,
        "-r",
        "30",
        "-t",
        "t1",
    ];
    let mut uac = Group::spawn(&mut sipp(dir.dir(), "uac", 60, &args)).expect("start sipp uac");
    let (mut most_sockets, mut most_listed) = (0, None::<usize>);
    let end = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while uac.try_wait().is_none() && Instant::now() < end {
        most_sockets = most_sockets.max(established_at(uac_port));
        round += 1;
        if kamcmd && round % 5 == 0 {
            if let Some(n) = tcp_list_len(&sock) {
                most_listed = Some(most_listed.unwrap_or(0).max(n));
            }
        }
        sleep(Duration::from_millis(50));
    }
    uac.wait_exit(Duration::from_secs(5));
    uas.wait_exit(Duration::from_secs(10));
    let (ok, failed) = counts(dir.dir(), "uac");
    Run {
        ok,
        failed,
        most_sockets,
        most_listed,
        diag: diagnostics(dir.dir(), &ser),
    }
}

fn assert_one_connection(r: &Run) {
    eprintln!(
        "{} ok {} failed; most sockets {}, core.tcp_list {:?}",
        r.ok, r.failed, r.most_sockets, r.most_listed
    );
    assert!(
        (r.ok, r.failed) == (60, 0) && r.most_sockets == 1 && r.most_listed.is_none_or(|n| n == 1),
        "{} ok {} failed; caller's port had {} connections, core.tcp_list {:?}\n{}",
        r.ok,
        r.failed,
        r.most_sockets,
        r.most_listed,
        r.diag
    );
}

#[test]
fn stateless_replies_from_udp_reuse_the_callers_connection() {
    if !have_sipp() {
        return;
    }
    assert_one_connection(&calls_over_one_connection("tcpre-sl", "\tforward();"));
}

#[test]
fn tm_replies_from_udp_reuse_the_callers_connection() {
    if !have_sipp() {
        return;
    }
    let route = "\tif (!t_relay()) { sl_reply_error(); }";
    assert_one_connection(&calls_over_one_connection("tcpre-tm", route));
}

/// A UDP callee answering every request 200 OK (Via, From, To, Call-ID,
/// CSeq copied) until the socket is dropped; its address.
fn udp_answerer() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut reply = String::from("SIP/2.0 200 OK\r\n");
            for l in req.lines() {
                let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                    reply.push_str(l);
                    reply.push_str("\r\n");
                }
            }
            reply.push_str("Content-Length: 0\r\n\r\n");
            let _ = s.send_to(reply.as_bytes(), from);
        }
    });
    addr
}

/// Reads one SIP message head (up to the blank line) within the timeout.
fn read_head(c: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => got.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_caller_behind_nat_gets_replies_on_its_connection() {
    let port = free_port();
    let callee = udp_answerer();
    let route = format!(
        "\tif (uri =~ \"^sip:a@\") {{ forward(); exit; }}\n\
         \tif (uri =~ \"^sip:tm@\") {{ t_relay_to_udp(\"127.0.0.1\", {}); exit; }}\n\
         \tforward(\"127.0.0.1\", {});",
        callee.port(),
        callee.port()
    );
    let ser = Server::launch_cfg("tcpre-nat", &config(port, &route, "")).start();
    // the Via names a port nothing listens on: only the connection reaches us
    let via_port = free_port();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_ne!(c.local_addr().unwrap().port(), via_port);
    for (n, user) in ["sl", "tm", "sl", "tm"].iter().enumerate() {
        let req = format!(
            "OPTIONS sip:{user}@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:{via_port};branch=z9hG4bK-nat{n}\r\n\
             From: <sip:a@127.0.0.1>;tag=n{n}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: nat-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        c.write_all(req.as_bytes()).unwrap();
        let head = read_head(&mut c);
        assert!(
            head.starts_with("SIP/2.0 200") && head.contains(&format!("nat-{n}@test")),
            "reply {n} ({user}): {head:?}\n{}",
            ser.log_text()
        );
    }
    // a request towards the caller's Via address (an in-dialog request to
    // its Contact), arriving over UDP, goes out on the caller's connection
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = peer.local_addr().unwrap().port();
    let req = format!(
        "BYE sip:a@127.0.0.1:{via_port};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-natbye\r\n\
         From: <sip:b@127.0.0.1>;tag=b\r\nTo: <sip:a@127.0.0.1>;tag=n0\r\n\
         Call-ID: nat-bye@test\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    peer.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
    let head = read_head(&mut c);
    assert!(
        head.starts_with(&format!("BYE sip:a@127.0.0.1:{via_port}")),
        "request to the caller: {head:?}\n{}",
        ser.log_text()
    );
}

/// A listening socket that completes no more connections: its backlog is
/// full (the kernel drops further SYNs, so a connect just waits). The
/// listener and the connections filling it, kept open by the caller.
fn black_hole() -> Option<(OwnedFd, Vec<TcpStream>, u16)> {
    use nix::sys::socket::{
        bind, getsockname, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .ok()?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).ok()?;
    listen(&fd, Backlog::new(0).ok()?).ok()?;
    let port = getsockname::<SockaddrIn>(fd.as_raw_fd()).ok()?.port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut fill = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(_) => return Some((fd, fill, port)),
        }
    }
    None
}

#[test]
fn a_black_holed_tcp_destination_stalls_no_one() {
    let Some((_hole, _fill, dead)) = black_hole() else {
        eprintln!("skipped: could not fill a listen backlog");
        return;
    };
    let port = free_port();
    // one UDP receiver: a connect it waited for would hold up everything
    let cfg = format!(
        "debug=3\nchildren=1\ntcp_children=1\ntcp_connect_timeout=2\n\
         listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\n\
         loadmodule \"sl\"\n\
         route {{\n\tif (uri =~ \"^sip:hole@\") {{ forward(); exit; }}\n\
         \tsl_send_reply(\"200\", \"here\");\n}}\n"
    );
    let ser = Server::launch_cfg("tcpre-hole", &cfg).start();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap().port();
    let request = |user: &str, n: usize, hostport: String| {
        format!(
            "OPTIONS sip:{user}@{hostport} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-bh{user}{n}\r\n\
             From: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: bh-{user}-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = [0u8; 4096];
    let mut slowest = Duration::ZERO;
    for n in 0..10 {
        // towards the hole, each to a new connection attempt's queue ...
        let hole = request("hole", n, format!("127.0.0.1:{dead};transport=tcp"));
        caller
            .send_to(hole.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        // ... and one that ser answers itself, at once
        let t0 = Instant::now();
        let ask = request("here", n, format!("127.0.0.1:{port}"));
        caller.send_to(ask.as_bytes(), ("127.0.0.1", port)).unwrap();
        let reply = loop {
            let (k, _) = caller.recv_from(&mut buf).expect("an answer");
            let r = String::from_utf8_lossy(&buf[..k]).into_owned();
            if r.contains(&format!("bh-here-{n}")) {
                break r;
            }
        };
        slowest = slowest.max(t0.elapsed());
        assert!(reply.starts_with("SIP/2.0 200 here"), "{reply}");
        sleep(Duration::from_millis(100));
    }
    assert!(
        slowest < Duration::from_millis(500),
        "an answer took {slowest:?} while a connect hung\n{}",
        ser.log_text()
    );
    // the hung connect is given up after tcp_connect_timeout
    let end = Instant::now() + Duration::from_secs(6);
    while !ser.log_text().contains("tcp_connect_timeout") && Instant::now() < end {
        sleep(Duration::from_millis(100));
    }
    assert!(
        ser.log_text().contains("tcp_connect_timeout"),
        "{}",
        ser.log_text()
    );
}
