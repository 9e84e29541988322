//! Debian's Kamailio 5.6 default config (/etc/kamailio/kamailio.cfg) runs
//! unchanged: `ser -c` accepts it with its default switches and the ones
//! that work here, and a running server answers OPTIONS, saves a REGISTER,
//! relays sipp calls to the registered callee, and answers Kamailio's own
//! management tools — `kamctl` over the jsonrpcs FIFO and `kamcmd` over ctl.
//!
//! The only edits for the sandbox: three of the config's commented-out
//! modparams (jsonrpcs `fifo_name`/`dgram_socket`, ctl `binrpc`) are
//! uncommented with paths in a scratch directory; the listen address comes
//! from `-l`.

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::proc::{free_port, free_udp_port, Server, SER};
use support::sipp::{counts, diagnostics, have_sipp, run_uac, start_uas, KAMCMD, UAS_BASIC};
use support::tmp::TmpDir;

const KAMAILIO_CFG: &str = "/etc/kamailio/kamailio.cfg";
const KAMCTL: &str = "/usr/sbin/kamctl";

/// The installed config, or None (with a message) when Kamailio is absent.
fn original() -> Option<String> {
    match std::fs::read_to_string(KAMAILIO_CFG) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("{KAMAILIO_CFG}: {e}: skipped");
            None
        }
    }
}

/// The config with its management sockets in `dir`, written to `dir/kamailio.cfg`.
fn sandboxed(text: &str, dir: &Path) -> std::path::PathBuf {
    let d = dir.display();
    let mut out = text.to_owned();
    for (commented, live) in [
        (
            "# modparam(\"jsonrpcs\", \"fifo_name\", \"/run/kamailio/kamailio_rpc.fifo\")",
            format!("modparam(\"jsonrpcs\", \"fifo_name\", \"{d}/rpc.fifo\")"),
        ),
        (
            "# modparam(\"jsonrpcs\", \"dgram_socket\", \"/run/kamailio/kamailio_rpc.sock\")",
            format!("modparam(\"jsonrpcs\", \"dgram_socket\", \"{d}/rpc.sock\")"),
        ),
        (
            "# modparam(\"ctl\", \"binrpc\", \"unix:/run/kamailio/kamailio_ctl\")",
            format!("modparam(\"ctl\", \"binrpc\", \"unix:{d}/ctl\")"),
        ),
    ] {
        assert!(out.contains(commented), "config changed: no `{commented}`");
        out = out.replacen(commented, &live, 1);
    }
    let path = dir.join("kamailio.cfg");
    std::fs::write(&path, out).unwrap();
    path
}

fn check(cfg: &Path, defines: &[&str]) -> (bool, String) {
    let mut c = Command::new(SER);
    c.arg("-c").arg("-f").arg(cfg);
    for d in defines {
        c.args(["-A", d]);
    }
    let out = c.output().expect("run ser -c");
    let log = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), log.into_owned())
}

#[test]
fn check_accepts_default_and_supported_switches() {
    let Some(text) = original() else { return };
    let dir = TmpDir::new("kamcfg-check");
    let cfg = sandboxed(&text, dir.dir());
    for defines in [
        &[][..],
        &["WITH_MYSQL"][..],
        &["WITH_MYSQL", "WITH_USRLOCDB"][..],
        &["WITH_MYSQL", "WITH_AUTH", "WITH_USRLOCDB"][..],
        &["WITH_ANTIFLOOD"][..],
        &["WITH_DEBUG"][..],
        &["WITH_NAT"][..],
        &["WITH_JSONRPC"][..],
        &["WITH_NAT", "WITH_RTPENGINE"][..],
        &[
            "WITH_MYSQL",
            "WITH_AUTH",
            "WITH_IPAUTH",
            "WITH_PSTN",
            "WITH_VOICEMAIL",
        ][..],
        &["WITH_MYSQL", "WITH_PRESENCE", "WITH_ACCDB", "WITH_TLS"][..],
        &["WITH_MYSQL", "WITH_SPEEDDIAL", "WITH_ALIASDB"][..],
        &["WITH_MYSQL", "WITH_AUTH", "WITH_MULTIDOMAIN"][..],
        // every switch of the file at once
        &[
            "WITH_ACCDB",
            "WITH_ALIASDB",
            "WITH_ANTIFLOOD",
            "WITH_AUTH",
            "WITH_BLOCK",
            "WITH_DEBUG",
            "WITH_IPAUTH",
            "WITH_JSONRPC",
            "WITH_MSGREBUILD",
            "WITH_MULTIDOMAIN",
            "WITH_MYSQL",
            "WITH_NAT",
            "WITH_NATSIPPING",
            "WITH_PRESENCE",
            "WITH_PSTN",
            "WITH_RTPENGINE",
            "WITH_SPEEDDIAL",
            "WITH_TLS",
            "WITH_USRLOCDB",
            "WITH_VOICEMAIL",
        ][..],
        &[
            "WITH_MYSQL",
            "WITH_AUTH",
            "WITH_USRLOCDB",
            "WITH_ANTIFLOOD",
            "WITH_DEBUG",
            "WITH_NAT",
        ][..],
    ] {
        let (ok, log) = check(&cfg, defines);
        assert!(ok, "ser -c {defines:?} failed:\n{log}");
        assert!(log.contains("config file ok"), "{log}");
    }
    // The untouched file too (its default sockets are never bound by -c).
    let (ok, log) = check(Path::new(KAMAILIO_CFG), &[]);
    assert!(ok, "{log}");
}

/// `kamctl <args>` against our jsonrpcs FIFO; its stdout.
fn kamctl(fifo: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["10", KAMCTL])
        .args(args)
        .env("RPCFIFOPATH", fifo)
        .output()
        .expect("run kamctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kamctl {args:?}: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn sip(sock: &UdpSocket, port: u16, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a SIP reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn runs_options_register_calls_and_management() {
    run_default(&[]);
}

/// WITH_NAT: nathelper + rtpproxy loaded (no rtpproxy needed: the sipp
/// peers on 127.0.0.1 are not NATed, so no media is relayed).
#[test]
fn runs_with_nat() {
    run_default(&["WITH_NAT"]);
}

fn run_default(defines: &[&str]) {
    let Some(text) = original() else { return };
    if !Path::new(KAMCTL).exists() || !have_sipp() {
        eprintln!("kamctl or sipp missing: skipped");
        return;
    }
    let dir = TmpDir::new("kamcfg-run");
    let cfg = sandboxed(&text, dir.dir());
    let port = free_udp_port();
    let ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2"])
        .args(defines.iter().flat_map(|d| ["-A", d]))
        .start();

    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = ua.local_addr().unwrap().port();
    let reply = sip(
        &ua,
        port,
        &format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKo1\r\n\
             From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: opt-1\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(reply.starts_with("SIP/2.0 200 Keepalive\r\n"), "{reply}");

    // bob registers the sipp callee's address.
    let uas_port = free_port();
    let reply = sip(
        &ua,
        port,
        &format!(
            "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKr1\r\n\
             From: <sip:bob@127.0.0.1>;tag=2\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: reg-1\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{uas_port}>\r\nExpires: 600\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains(&format!("<sip:bob@127.0.0.1:{uas_port}>;expires=")),
        "{reply}"
    );

    // Calls to sip:bob@<ser> go through lookup + t_relay to the callee.
    let calls = 10;
    let _uas = start_uas(dir.dir(), "uas", UAS_BASIC, uas_port, calls, false);
    let target = format!("127.0.0.1:{port}");
    let status = run_uac(dir.dir(), "uac", port, &target, calls, &["-r", "20"], false);
    let (ok, failed) = counts(dir.dir(), "uac");
    assert!(
        status.success() && ok == u64::from(calls) && failed == 0,
        "{status}: {ok} ok, {failed} failed\n{}",
        diagnostics(dir.dir(), &ser)
    );

    // Kamailio's kamctl over the jsonrpcs FIFO.
    let fifo = dir.path("rpc.fifo");
    let v = kamctl(&fifo, &["rpc", "core.version"]);
    assert!(v.contains("\"result\"") && v.contains("ser "), "{v}");
    let ps = kamctl(&fifo, &["ps"]);
    assert!(
        ps.contains("udp receiver") && ps.contains("\"PID\""),
        "{ps}"
    );
    let socks: String = kamctl(&fifo, &["srv", "sockets"])
        .split_whitespace()
        .collect();
    assert!(
        socks.contains(&format!("\"PROTO\":\"udp\",\"NAME\":\"127.0.0.1\",\"ADDRLIST\":{{\"ADDR\":\"127.0.0.1\"}},\"PORT\":\"{port}\"")),
        "{socks}"
    );
    let ul = kamctl(&fifo, &["ul", "show"]);
    assert!(
        ul.contains(&format!("sip:bob@127.0.0.1:{uas_port}")),
        "{ul}"
    );
    let fault = kamctl(&fifo, &["rpc", "no.such.method"]);
    let flat: String = fault.split_whitespace().collect();
    assert!(
        flat.contains("\"error\":{\"code\":500,\"message\":\"MethodNotFound\"}"),
        "{fault}"
    );

    // The jsonrpcs datagram socket answers the sender.
    let me_sock = dir.path("client.sock");
    let dg = std::os::unix::net::UnixDatagram::bind(&me_sock).unwrap();
    dg.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    dg.send_to(
        br#"{"jsonrpc":"2.0","method":"core.uptime","id":7}"#,
        dir.path("rpc.sock"),
    )
    .unwrap();
    let mut buf = [0u8; 8192];
    let n = dg.recv(&mut buf).expect("a datagram reply");
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(r.contains("\"uptime\"") && r.contains("\"id\":\t7"), "{r}");

    // kamcmd over the ctl binrpc socket.
    let out = Command::new("timeout")
        .args(["10", KAMCMD, "-s"])
        .arg(format!("unix:{}", dir.path("ctl").display()))
        .arg("core.version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("ser "), "{text}");
}

/// WITH_ANTIFLOOD runs: pike and the `ipban` htable (in shm, managed over
/// kamctl's FIFO); a request from a banned address would be dropped, but
/// 127.0.0.1 is `myself`, which the config never bans, so OPTIONS still work.
#[test]
fn antiflood_htable_over_kamctl() {
    let Some(text) = original() else { return };
    if !Path::new(KAMCTL).exists() {
        eprintln!("kamctl missing: skipped");
        return;
    }
    let dir = TmpDir::new("kamcfg-flood");
    let cfg = sandboxed(&text, dir.dir());
    let port = free_udp_port();
    let _ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2"])
        .args(["-A", "WITH_ANTIFLOOD", "-A", "WITH_DEBUG"])
        .start();
    let fifo = dir.path("rpc.fifo");
    kamctl(&fifo, &["rpc", "htable.seti", "ipban", "192.0.2.1", "1"]);
    kamctl(&fifo, &["rpc", "htable.sets", "ipban", "192.0.2.2", "s:x"]);
    let got = kamctl(&fifo, &["rpc", "htable.get", "ipban", "192.0.2.1"]);
    let flat: String = got.split_whitespace().collect();
    assert!(flat.contains("\"value\":1"), "{got}");
    let dump = kamctl(&fifo, &["rpc", "htable.dump", "ipban"]);
    assert!(
        dump.contains("192.0.2.1") && dump.contains("192.0.2.2"),
        "{dump}"
    );
    let tables = kamctl(&fifo, &["rpc", "htable.listTables"]);
    assert!(
        tables.contains("\"ipban\"") && tables.contains("300"),
        "{tables}"
    );
    kamctl(&fifo, &["rpc", "htable.delete", "ipban", "192.0.2.1"]);
    let gone = kamctl(&fifo, &["rpc", "htable.get", "ipban", "192.0.2.1"]);
    assert!(gone.contains("\"error\""), "{gone}");

    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = ua.local_addr().unwrap().port();
    for i in 0..20 {
        let reply = sip(
            &ua,
            port,
            &format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKf{i}\r\n\
                 From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: flood-{i}\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        assert!(reply.starts_with("SIP/2.0 200 Keepalive\r\n"), "{reply}");
    }
}

/// MD5 digest `Authorization` of `user` (realm 127.0.0.1) for a REGISTER to `uri`.
fn digest(user: &str, password: &str, uri: &str, nonce: &str) -> String {
    use ser_modules::auth::digest::Alg;
    let h = |s: String| Alg::Md5.h(&[s.as_bytes()]);
    let ha1 = h(format!("{user}:127.0.0.1:{password}"));
    let ha2 = h(format!("REGISTER:{uri}"));
    let resp = h(format!("{ha1}:{nonce}:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"127.0.0.1\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{resp}\"\r\n"
    )
}

/// WITH_MYSQL + WITH_AUTH + WITH_USRLOCDB against a throwaway MariaDB (our
/// schema, DBURL given with `-A`, as the config's `#!trydef` allows): a
/// REGISTER is challenged (401), accepted with the subscriber's password,
/// challenged again with a wrong one; then a sipp call reaches the
/// registered user.
#[test]
fn auth_and_usrlocdb_on_mariadb() {
    use ser_modules::db::{self, DbValue};
    let Some(text) = original() else { return };
    if !have_sipp() {
        return;
    }
    let Some(my) = support::mariadb::Server::start() else {
        return;
    };
    let admin = format!("mysql://root@127.0.0.1:{}/mysql", my.port());
    let url = format!(
        "mysql://kamailio:kamailiorw@127.0.0.1:{}/kamailio",
        my.port()
    );
    db::with(&admin, |c| c.batch("CREATE DATABASE kamailio")).expect("create database");
    db::with(&url, |c| {
        c.batch(db::schema("mysql").unwrap())?;
        for user in ["alice", "bob"] {
            c.insert(
                "subscriber",
                &[
                    ("username", DbValue::Str(user.into())),
                    ("domain", DbValue::Str("127.0.0.1".into())),
                    ("password", DbValue::Str(format!("{user}-secret"))),
                ],
            )?;
        }
        Ok(())
    })
    .expect("schema and subscribers");

    let dir = TmpDir::new("kamcfg-auth");
    let cfg = sandboxed(&text, dir.dir());
    let port = free_udp_port();
    let dburl = format!("DBURL=\"{url}\"");
    let ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2"])
        .args(["-A", "WITH_MYSQL", "-A", "WITH_AUTH", "-A", "WITH_USRLOCDB"])
        .args(["-A", &dburl])
        .start();

    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = ua.local_addr().unwrap().port();
    let uas_port = free_port();
    let uri = format!("sip:127.0.0.1:{port}");
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKa{cseq}\r\n\
             From: <sip:bob@127.0.0.1:{port}>;tag=a{cseq}\r\nTo: <sip:bob@127.0.0.1:{port}>\r\n\
             Call-ID: auth-reg\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:bob@127.0.0.1:{uas_port}>\r\nExpires: 600\r\n{auth}\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let r = sip(&ua, port, &register(1, ""));
    assert!(r.starts_with("SIP/2.0 401 "), "{r}\n{}", ser.log_text());
    let nonce = r
        .split("nonce=\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .expect("a nonce")
        .to_owned();
    let r = sip(
        &ua,
        port,
        &register(2, &digest("bob", "wrong", &uri, &nonce)),
    );
    assert!(r.starts_with("SIP/2.0 401 "), "{r}");
    let r = sip(
        &ua,
        port,
        &register(3, &digest("bob", "bob-secret", &uri, &nonce)),
    );
    assert!(r.starts_with("SIP/2.0 200 "), "{r}\n{}", ser.log_text());

    let calls = 5;
    let _uas = start_uas(dir.dir(), "uas", UAS_BASIC, uas_port, calls, false);
    let target = format!("127.0.0.1:{port}");
    let status = run_uac(dir.dir(), "uac", port, &target, calls, &["-r", "20"], false);
    let (ok, failed) = counts(dir.dir(), "uac");
    assert!(
        status.success() && ok == u64::from(calls) && failed == 0,
        "{status}: {ok} ok, {failed} failed\n{}",
        diagnostics(dir.dir(), &ser)
    );
}

/// One HTTP request on a fresh connection; the whole answer (the server
/// closes nothing, so read until the announced body is in).
fn http(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// WITH_JSONRPC: xhttp runs `event_route[xhttp:request]` for HTTP on the SIP
/// TCP port; `/RPC` goes to `jsonrpc_dispatch()`, anything else gets the
/// config's "Wrong URL" page.
#[test]
fn jsonrpc_over_http() {
    let Some(text) = original() else { return };
    let dir = TmpDir::new("kamcfg-http");
    let cfg = sandboxed(&text, dir.dir());
    let port = free_port();
    let _ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}")])
        .args(["-l", &format!("tcp:127.0.0.1:{port}"), "-n", "1", "-N", "1"])
        .args(["-A", "WITH_JSONRPC"])
        .start();
    let body = r#"{"jsonrpc":"2.0","method":"core.version","id":5}"#;
    let r = http(
        port,
        &format!(
            "POST /RPC HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: application/json"), "{r}");
    let json = r.split_once("\r\n\r\n").unwrap().1;
    let flat: String = json.split_whitespace().collect();
    assert!(
        flat.starts_with("{\"jsonrpc\":\"2.0\",\"result\":\"ser") && flat.ends_with("\"id\":5}"),
        "{json}"
    );
    let r = http(port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.contains("Wrong URL /other"),
        "{r}"
    );
}

/// A reply to `req` (a received request's text) with `code`, a To tag, and
/// `sdp` as body.
fn reply_to(req: &str, code: &str, contact: &str, sdp: &str) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" | "record-route" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" => out.push_str(&format!("{line};tag=callee\r\n")),
            _ => {}
        }
    }
    out.push_str(&format!(
        "Contact: <{contact}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    out
}

/// WITH_NAT + WITH_RTPENGINE against the real rtpengine (userspace
/// forwarding): a caller whose Contact and SDP carry a private address is
/// detected as NATed; the branch route's `rtpengine_manage()` offers its SDP
/// (the callee sees rtpengine's 127.0.0.1 ports), and the 200's SDP is
/// answered through rtpengine on its way back.
#[test]
fn nat_with_rtpengine() {
    let Some(text) = original() else { return };
    let rtpengine = "/usr/bin/rtpengine";
    if !Path::new(rtpengine).exists() {
        eprintln!("{rtpengine} missing: skipped");
        return;
    }
    let dir = TmpDir::new("kamcfg-rtpe");
    let ng = free_udp_port();
    let _engine = support::proc::Group::spawn(
        Command::new(rtpengine)
            .args(["--foreground", "--log-stderr", "--table=-1"])
            .args([
                "--interface=127.0.0.1",
                "--port-min=32000",
                "--port-max=32200",
            ])
            .arg(format!("--listen-ng=127.0.0.1:{ng}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path("rtpengine.log")).unwrap()),
    )
    .expect("start rtpengine");
    // ready when it answers an ng ping
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let ready = (0..50).any(|_| {
        let _ = probe.send_to(b"p1 d7:command4:pinge", ("127.0.0.1", ng));
        let mut b = [0u8; 256];
        matches!(probe.recv(&mut b), Ok(n) if b[..n].windows(4).any(|w| w == b"pong"))
    });
    assert!(
        ready,
        "rtpengine did not answer: {}",
        std::fs::read_to_string(dir.path("rtpengine.log")).unwrap_or_default()
    );
    let text = text.replacen(
        "modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:2223\")",
        &format!("modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:{ng}\")"),
        1,
    );
    let cfg = sandboxed(&text, dir.dir());
    let port = free_udp_port();
    let ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2"])
        .args(["-A", "WITH_NAT", "-A", "WITH_RTPENGINE"])
        .start();

    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cp = callee.local_addr().unwrap().port();
    let r = sip(
        &callee,
        port,
        &format!(
            "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bKn1\r\n\
             From: <sip:bob@127.0.0.1>;tag=n1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: nat-reg\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{cp}>\r\nExpires: 600\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");

    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap().port();
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:bob@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKn2\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1:{port}>\r\nCall-ID: nat-call\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.5:5060>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    caller
        .send_to(invite.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 8192];
    let n = callee.recv(&mut buf).expect("the INVITE at the callee");
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(got.starts_with("INVITE "), "{got}");
    let body = got.split_once("\r\n\r\n").unwrap().1;
    assert!(
        body.contains("c=IN IP4 127.0.0.1") && body.contains("m=audio 32"),
        "offer not through rtpengine:\n{got}\n{}",
        ser.log_text()
    );
    // the caller's Contact got Kamailio's alias (set_contact_alias)
    assert!(got.contains(";alias=127.0.0.1~"), "{got}");

    let answer = "v=0\r\no=- 2 2 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
                  m=audio 5000 RTP/AVP 0\r\n";
    let ok = reply_to(&got, "200 OK", &format!("sip:bob@127.0.0.1:{cp}"), answer);
    callee.send_to(ok.as_bytes(), ("127.0.0.1", port)).unwrap();
    let reply = loop {
        let n = caller.recv(&mut buf).expect("the 200 at the caller");
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !r.starts_with("SIP/2.0 100") {
            break r;
        }
    };
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    let body = reply.split_once("\r\n\r\n").unwrap().1;
    assert!(
        body.contains("c=IN IP4 127.0.0.1") && body.contains("m=audio 32"),
        "answer not through rtpengine:\n{reply}\n{}",
        std::fs::read_to_string(dir.path("rtpengine.log")).unwrap_or_default()
    );
}

/// WITH_PSTN's `starts_with("$rU", "00")` (textops).
#[test]
fn starts_with_as_the_pstn_route_uses_it() {
    let s = support::engine::load(
        "loadmodule \"sl\"\nloadmodule \"textops\"\n\
         route { if (starts_with(\"$rU\", \"00\")) sl_send_reply(\"200\", \"pstn\"); \
         else sl_send_reply(\"404\", \"local\"); }",
    );
    for (user, code) in [("0049301234", 200), ("49301234", 404), ("0", 404)] {
        let msg = ser_sip::SipMsg::parse(
            format!(
                "INVITE sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKs\r\n\
                 From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: s\r\n\
                 CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap();
        let r = support::engine::run_once(&s, &[], "127.0.0.1:5070", msg, |_| {});
        assert_eq!(r.status(), vec![code], "{user}");
    }
}

/// htable and counters live in shm: what the SIP workers write, the ctl
/// process reads (kamcmd), and what kamcmd sets, the workers see.
#[test]
fn htable_and_counters_are_shared_between_processes() {
    let dir = TmpDir::new("kamcfg-shm");
    let ctl = dir.path("ctl");
    let cfg = format!(
        "debug=2\nloadmodule \"sl\"\nloadmodule \"ctl\"\nloadmodule \"htable\"\nloadmodule \"counters\"\n\
         modparam(\"ctl\", \"binrpc\", \"unix:{}\")\n\
         modparam(\"htable\", \"htable\", \"t=>size=4;autoexpire=60\")\n\
         modparam(\"counters\", \"script_counter\", \"seen requests seen\")\n\
         request_route {{\n\
           cnt_inc(\"seen\");\n\
           if ($sht(t=>$si) != $null) {{ sl_send_reply(\"403\", \"banned\"); exit; }}\n\
           $sht(t=>last) = $ci;\n\
           sl_send_reply(\"200\", \"ok\");\n\
         }}\n",
        ctl.display()
    );
    std::fs::write(dir.path("ser.cfg"), cfg).unwrap();
    let port = free_udp_port();
    let _ser = Server::launch(&dir.path("ser.cfg"), &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "3"])
        .start();
    let kamcmd = |args: &[&str]| {
        let out = Command::new("timeout")
            .args(["10", KAMCMD, "-s"])
            .arg(format!("unix:{}", ctl.display()))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = ua.local_addr().unwrap().port();
    let options = |i: u32| {
        format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKh{i}\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: shm-{i}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // several receivers share one socket: whichever takes a request, the
    // table and the counter are the same
    for i in 0..12 {
        let r = sip(&ua, port, &options(i));
        assert!(r.starts_with("SIP/2.0 200 ok\r\n"), "{r}");
    }
    let got = kamcmd(&["htable.get", "t", "last"]);
    assert!(got.contains("shm-11"), "{got}");
    let n = kamcmd(&["cnt.get", "script", "seen"]);
    assert_eq!(n.trim(), "12", "{n}");
    kamcmd(&["htable.seti", "t", "127.0.0.1", "1"]);
    for i in 12..18 {
        let r = sip(&ua, port, &options(i));
        assert!(r.starts_with("SIP/2.0 403 banned\r\n"), "{r}");
    }
    kamcmd(&["htable.delete", "t", "127.0.0.1"]);
    let r = sip(&ua, port, &options(18));
    assert!(r.starts_with("SIP/2.0 200 ok\r\n"), "{r}");
    let n = kamcmd(&["cnt.get", "script", "seen"]);
    assert_eq!(n.trim(), "19", "{n}");
}

/// WITH_MYSQL + WITH_SPEEDDIAL + WITH_ALIASDB against a throwaway MariaDB:
/// `sd_lookup("speed_dial")` turns the caller's short number 11 into bob,
/// `alias_db_lookup("dbaliases")` turns the alias robert into bob; both
/// INVITEs reach bob's registered contact.
#[test]
fn speeddial_and_aliasdb_on_mariadb() {
    use ser_modules::db::{self, DbValue};
    let Some(text) = original() else { return };
    let Some(my) = support::mariadb::Server::start() else {
        return;
    };
    let admin = format!("mysql://root@127.0.0.1:{}/mysql", my.port());
    let url = format!(
        "mysql://kamailio:kamailiorw@127.0.0.1:{}/kamailio",
        my.port()
    );
    db::with(&admin, |c| c.batch("CREATE DATABASE kamailio")).expect("create database");
    let port = free_udp_port();
    db::with(&url, |c| {
        c.batch(db::schema("mysql").unwrap())?;
        // Kamailio's own table layouts (not in our schema)
        c.batch(
            "CREATE TABLE speed_dial (id INT AUTO_INCREMENT PRIMARY KEY, \
             username VARCHAR(64) NOT NULL, domain VARCHAR(64) NOT NULL DEFAULT '', \
             sd_username VARCHAR(64) NOT NULL, sd_domain VARCHAR(64) NOT NULL DEFAULT '', \
             new_uri VARCHAR(255) NOT NULL)",
        )?;
        c.batch(
            "CREATE TABLE dbaliases (id INT AUTO_INCREMENT PRIMARY KEY, \
             alias_username VARCHAR(64) NOT NULL, alias_domain VARCHAR(64) NOT NULL DEFAULT '', \
             username VARCHAR(64) NOT NULL, domain VARCHAR(64) NOT NULL DEFAULT '')",
        )?;
        c.insert(
            "speed_dial",
            &[
                ("username", DbValue::Str("carol".into())),
                ("domain", DbValue::Str("127.0.0.1".into())),
                ("sd_username", DbValue::Str("11".into())),
                ("new_uri", DbValue::Str(format!("sip:bob@127.0.0.1:{port}"))),
            ],
        )?;
        c.insert(
            "dbaliases",
            &[
                ("alias_username", DbValue::Str("robert".into())),
                ("alias_domain", DbValue::Str("127.0.0.1".into())),
                ("username", DbValue::Str("bob".into())),
                // the port too: a canonical URI without one would be 5060
                ("domain", DbValue::Str(format!("127.0.0.1:{port}"))),
            ],
        )
    })
    .expect("tables");

    let dir = TmpDir::new("kamcfg-sd");
    let cfg = sandboxed(&text, dir.dir());
    let dburl = format!("DBURL=\"{url}\"");
    let ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2"])
        .args([
            "-A",
            "WITH_MYSQL",
            "-A",
            "WITH_SPEEDDIAL",
            "-A",
            "WITH_ALIASDB",
        ])
        .args(["-A", &dburl])
        .start();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let cp = callee.local_addr().unwrap().port();
    let r = sip(
        &callee,
        port,
        &format!(
            "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bKd1\r\n\
             From: <sip:bob@127.0.0.1>;tag=d1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: sd-reg\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{cp}>\r\nExpires: 600\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap().port();
    for (i, user) in ["11", "robert"].iter().enumerate() {
        let invite = format!(
            "INVITE sip:{user}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKd{i}x\r\n\
             From: <sip:carol@127.0.0.1>;tag=c{i}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: sd-call-{i}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:carol@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        caller
            .send_to(invite.as_bytes(), ("127.0.0.1", port))
            .unwrap();
        let mut buf = [0u8; 8192];
        let got = loop {
            let n = callee
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no INVITE for {user}: {e}\n{}", ser.log_text()));
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.contains(&format!("Call-ID: sd-call-{i}\r\n")) {
                break m;
            }
        };
        assert!(
            got.starts_with(&format!("INVITE sip:bob@127.0.0.1:{cp} SIP/2.0\r\n")),
            "{user}: {got}"
        );
    }
}

/// WITH_MULTIDOMAIN (SQLite here, DBURL given with `-A`): domain's
/// `register_myself` makes the `domain` table's domains `myself`, so a
/// REGISTER for example.test is saved while one for a foreign domain is
/// refused as relaying.
#[test]
fn multidomain_register_myself() {
    use ser_modules::db::{self, DbValue};
    let Some(text) = original() else { return };
    let dir = TmpDir::new("kamcfg-md");
    let url = format!("sqlite://{}", dir.path("k.db").display());
    db::with(&url, |c| {
        c.batch(db::schema("sqlite").unwrap())?;
        c.insert(
            "domain",
            &[
                ("domain", DbValue::Str("example.test".into())),
                ("did", DbValue::Str("example.test".into())),
            ],
        )
    })
    .expect("schema and domain");
    let cfg = sandboxed(&text, dir.dir());
    let port = free_udp_port();
    let dburl = format!("DBURL=\"{url}\"");
    let _ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-l", &format!("udp:127.0.0.1:{port}"), "-n", "2"])
        .args(["-A", "WITH_MULTIDOMAIN", "-A", &dburl])
        .start();
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = ua.local_addr().unwrap().port();
    let register = |domain: &str, i: u32| {
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKm{i}\r\n\
             From: <sip:bob@{domain}>;tag=m{i}\r\nTo: <sip:bob@{domain}>\r\nCall-ID: md-{i}\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{me}>\r\nExpires: 600\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let r = sip(&ua, port, &register("example.test", 1));
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    let r = sip(&ua, port, &register("foreign.test", 2));
    assert!(r.starts_with("SIP/2.0 403 Not relaying\r\n"), "{r}");
    let ul: String = kamctl_or_skip(&dir.path("rpc.fifo"), &["ul", "show"]);
    assert!(ul.is_empty() || ul.contains("bob@example.test"), "{ul}");
}

/// `kamctl` when installed ("" when not).
fn kamctl_or_skip(fifo: &Path, args: &[&str]) -> String {
    if Path::new(KAMCTL).exists() {
        kamctl(fifo, args)
    } else {
        String::new()
    }
}
