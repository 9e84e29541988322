//! The routing engine inside the real `ser` binary, over UDP and TCP on 127.0.0.1: a
//! stateless proxy config (maxfwd, sl, rewrite + forward) between a client
//! socket and a UAS socket.  Bounded waits; the server's process group is
//! killed on drop.

mod support;

use std::net::UdpSocket;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::proc::{free_port, free_udp_port, Server};

/// `ser` with `cfg` listening on `listen`: 2 receivers, 5 s to start.
fn start_on(cfg: &str, listen: &str) -> Server {
    Server::launch_cfg("engine-net", cfg)
        .args(["-l", listen, "-n", "2", "-dd"])
        .within(Duration::from_secs(5))
        .start()
}

/// [`start_on`] UDP `port` on 127.0.0.1.
fn start(cfg: &str, port: u16) -> Server {
    start_on(cfg, &format!("udp:127.0.0.1:{port}"))
}

fn socket() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let p = s.local_addr().unwrap().port();
    (s, p)
}

fn recv(s: &UdpSocket, srv: &Server, what: &str) -> String {
    let mut buf = [0u8; 8192];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("nothing received ({what}): {e}\n{}", srv.log_text()),
    }
}

fn request(method: &str, ruri: &str, me: u16, branch: &str, to_tag: &str, mf: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{branch}\r\n\
         From: <sip:carol@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>{to_tag}\r\n\
         Call-ID: engine-udp-{branch}\r\nCSeq: 1 {method}\r\n{mf}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn stateless_proxy_over_udp() {
    let (client, me) = socket();
    let (uas, uas_port) = socket();
    let port = free_udp_port();
    let cfg = format!(
        "loadmodule \"/usr/lib/ser/modules/sl.so\"\nloadmodule \"maxfwd\"\n\
         route {{\n\
           if (!mf_process_maxfwd_header(\"10\")) {{ sl_send_reply(\"483\",\"Too Many Hops\"); exit; }}\n\
           if (method == \"OPTIONS\" && uri == myself) {{ sl_send_reply(\"200\", \"Keepalive $rU\"); exit; }}\n\
           if ($rU == \"nobody\") {{ sl_send_reply(\"404\", \"Not Found\"); exit; }}\n\
           rewritehostport(\"127.0.0.1:{uas_port}\");\n\
           forward();\n\
         }}\n"
    );
    let srv = start(&cfg, port);
    let to = ("127.0.0.1", port);

    // answered locally, reason with a pvar
    let ruri = format!("sip:ping@127.0.0.1:{port}");
    client
        .send_to(request("OPTIONS", &ruri, me, "o1", "", "").as_bytes(), to)
        .unwrap();
    let r = recv(&client, &srv, "OPTIONS reply");
    assert!(r.starts_with("SIP/2.0 200 Keepalive ping\r\n"), "{r}");

    // a broken request that can still be answered gets 400, without reaching the script
    let bad = request("INVITE", &ruri, me, "b1", "", "Max-Forwards: abc\r\n");
    client.send_to(bad.as_bytes(), to).unwrap();
    let r = recv(&client, &srv, "400");
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");

    // Max-Forwards: 0 → 483
    let ruri = format!("sip:bob@127.0.0.1:{port}");
    client
        .send_to(
            request("INVITE", &ruri, me, "m0", "", "Max-Forwards: 0\r\n").as_bytes(),
            to,
        )
        .unwrap();
    let r = recv(&client, &srv, "483");
    assert!(r.starts_with("SIP/2.0 483 Too Many Hops\r\n"), "{r}");

    // forwarded to the UAS with our Via on top and Max-Forwards decremented
    client
        .send_to(
            request("INVITE", &ruri, me, "i1", "", "Max-Forwards: 70\r\n").as_bytes(),
            to,
        )
        .unwrap();
    let fwd = recv(&uas, &srv, "forwarded INVITE");
    assert!(
        fwd.starts_with(&format!("INVITE sip:bob@127.0.0.1:{uas_port} SIP/2.0\r\n")),
        "{fwd}"
    );
    assert!(
        fwd.contains(&format!("Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK")),
        "{fwd}"
    );
    assert!(fwd.contains("Max-Forwards: 69\r\n"), "{fwd}");

    // the UAS answers through us: the reply comes back to the client without our Via
    let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via:")).collect();
    assert_eq!(vias.len(), 2, "{fwd}");
    let reply = format!(
        "SIP/2.0 180 Ringing\r\n{}\r\n{}\r\nFrom: <sip:carol@127.0.0.1>;tag=f1\r\n\
         To: <sip:bob@127.0.0.1>;tag=t9\r\nCall-ID: engine-udp-i1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        vias[0], vias[1]
    );
    uas.send_to(reply.as_bytes(), to).unwrap();
    let back = recv(&client, &srv, "forwarded 180");
    assert!(back.starts_with("SIP/2.0 180 Ringing\r\n"), "{back}");
    assert_eq!(
        back.lines().filter(|l| l.starts_with("Via:")).count(),
        1,
        "{back}"
    );

    // 404 with our to-tag; the ACK to it is absorbed (never reaches the UAS)
    let ruri = format!("sip:nobody@127.0.0.1:{port}");
    client
        .send_to(request("INVITE", &ruri, me, "n1", "", "").as_bytes(), to)
        .unwrap();
    let r = recv(&client, &srv, "404");
    assert!(r.starts_with("SIP/2.0 404 Not Found\r\n"), "{r}");
    let tag = r
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .unwrap_or_else(|| panic!("no to-tag in {r}"))
        .to_owned();
    let ack = request("ACK", &ruri, me, "n1", &format!(";tag={tag}"), "");
    client.send_to(ack.as_bytes(), to).unwrap();
    // an ACK that is not ours goes through the script (and is forwarded)
    let ack2 = request(
        "ACK",
        &format!("sip:bob@127.0.0.1:{port}"),
        me,
        "x1",
        ";tag=other",
        "",
    );
    client.send_to(ack2.as_bytes(), to).unwrap();
    let got = recv(&uas, &srv, "foreign ACK");
    assert!(got.starts_with("ACK "), "{got}");
    assert!(
        got.contains("engine-udp-x1"),
        "the absorbed ACK leaked: {got}"
    );
}

#[test]
fn requests_over_tcp_are_answered_on_their_connection() {
    use std::io::{Read, Write};
    // a port free for both transports
    let port = free_port();
    let cfg = "loadmodule \"sl\"\nroute { if (proto == TCP) sl_send_reply(\"200\", \"tcp $rU\"); else sl_send_reply(\"500\", \"not tcp\"); }\n";
    let srv = start_on(cfg, &format!("127.0.0.1:{port}"));
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = conn.local_addr().unwrap().port();
    let req = request(
        "OPTIONS",
        &format!("sip:over@127.0.0.1:{port}"),
        me,
        "t1",
        "",
        "",
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    conn.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(3);
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        assert!(Instant::now() < end, "no TCP reply:\n{}", srv.log_text());
        match conn.read(&mut buf) {
            Ok(0) => panic!("connection closed:\n{}", srv.log_text()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no TCP reply ({e}):\n{}", srv.log_text()),
        }
    }
    let reply = String::from_utf8_lossy(&got);
    assert!(reply.starts_with("SIP/2.0 200 tcp over\r\n"), "{reply}");
}

#[test]
#[ignore = "start-up must fork the ctl process when ScriptInit::wants_ctl() (startup.rs: ctl: false today)"]
fn ctl_serves_module_rpcs_and_cfg_get() {
    use ser_fifo::client::{Client, ClientOptions};
    use ser_fifo::{CtlAddr, RpcValue};
    let port = free_udp_port();
    let sock =
        std::env::temp_dir().join(format!("ser-engine-ctl-{}-{port}.sock", std::process::id()));
    let cfg = format!(
        "pstn.gw_ip = \"10.0.0.9\" desc \"PSTN GW\"\n\
         loadmodule \"ctl\"\nloadmodule \"cfg_rpc\"\n\
         modparam(\"ctl\", \"binrpc\", \"unixs:{}\")\n\
         route {{ drop; }}\n",
        sock.display()
    );
    let srv = start(&cfg, port);
    let addr = CtlAddr::parse(&format!("unixs:{}", sock.display())).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    let mut client = loop {
        match Client::connect(&addr, &ClientOptions::default()) {
            Ok(c) => break c,
            Err(e) if Instant::now() < end => {
                let _ = e;
                sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("ctl socket not there ({e}):\n{}", srv.log_text()),
        }
    };
    let reply = client
        .call(
            "cfg.get",
            &[RpcValue::Str("pstn".into()), RpcValue::Str("gw_ip".into())],
        )
        .unwrap();
    assert_eq!(
        reply.values().unwrap(),
        vec![RpcValue::Str("10.0.0.9".into())]
    );
    let methods = client
        .call("system.listMethods", &[])
        .unwrap()
        .values()
        .unwrap();
    assert!(
        methods.contains(&RpcValue::Str("cfg.get".into())),
        "{methods:?}"
    );
    drop(srv);
    let _ = std::fs::remove_file(&sock);
}
