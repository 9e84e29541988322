//! XML-RPC over HTTP on the SIP TCP port (SER 3.0's xmlrpc module), against
//! the real `ser` binary: Python's `xmlrpc.client` calls core, usrloc and
//! cfg methods through `route[RPC]` + `dispatch_rpc()`; unknown methods and
//! garbage are faults, never a crash; SIP keeps working on the same port;
//! the historical SER 3.0 config runs and answers `core.version`; and over
//! TLS (HTTPS) with `xmlrpc_reply` refusing plain TCP.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use support::proc::{free_port, Server};
use support::tmp::TmpDir;

fn config(port: u16) -> String {
    format!(
        r#"
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
tcp_children=2
loadmodule "sl"
loadmodule "usrloc"
loadmodule "registrar"
loadmodule "cfg_rpc"
loadmodule "xmlrpc"
modparam("xmlrpc", "route", "RPC")
route {{
    if (method=="REGISTER") {{
        save("location");
        exit;
    }}
    sl_send_reply("200", "sip ok");
}}
route[RPC] {{
    if (src_ip==127.0.0.1) {{
        dispatch_rpc();
    }}
    drop;
}}
"#
    )
}

/// Runs a Python script with `PORT` set; its stdout.
fn python(port: u16, script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PORT", port.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads one HTTP or SIP message (headers + Content-Length body) from `s`.
fn read_message(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
            let cl = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= h + 4 + cl {
                return String::from_utf8_lossy(&buf[..h + 4 + cl]).into_owned();
            }
        }
        assert!(Instant::now() < end, "no complete message: {buf:?}");
        let n = s.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn post(s: &mut TcpStream, body: &str) -> String {
    let req = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    read_message(s)
}

fn register(port: u16) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = s.local_addr().unwrap().port();
    let msg = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKxmlrpc1\r\n\
         From: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: xmlrpc-reg-1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
         Contact: <sip:alice@127.0.0.1:{me}>;expires=600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("no reply to REGISTER");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

const CLIENT: &str = r#"
import os, xmlrpc.client
p = xmlrpc.client.ServerProxy("http://127.0.0.1:%s/RPC2" % os.environ["PORT"])
methods = p.system.listMethods()
for m in ["core.version", "ul.dump", "cfg.set_now_int", "cfg.get", "system.methodHelp"]:
    assert m in methods, (m, methods)
print("version", p.core.version())
print("help", p.system.methodHelp("core.uptime"))
print("dump", repr(p.ul.dump()))
print("set", repr(p.cfg.set_now_int("core", "debug", 3)))
print("get", p.cfg.get("core", "debug"))
try:
    p.no.such.method()
    print("unknown: no fault")
except xmlrpc.client.Fault as f:
    print("unknown", f.faultCode, f.faultString)
try:
    p.cfg.get("nope", "x")
    print("missing: no fault")
except xmlrpc.client.Fault as f:
    print("missing", f.faultCode)
"#;

#[test]
fn python_xmlrpc_client_manages_a_running_server() {
    let port = free_port();
    let srv = Server::launch_cfg("xmlrpc", &config(port)).start();

    let reply = register(port);
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");

    let out = python(port, CLIENT);
    let line = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no {k} line in:\n{out}\n{}", srv.log_text()))
            .to_owned()
    };
    assert!(line("version").starts_with("ser 3.0.0 ("), "{out}");
    assert_eq!(line("help"), "Returns uptime of SIP server.");
    let dump = line("dump");
    assert!(
        dump.contains("'AoR': 'alice'") || dump.contains("alice"),
        "{dump}"
    );
    assert!(dump.contains("sip:alice@127.0.0.1:"), "{dump}");
    assert_eq!(line("get"), "3", "{out}");
    assert_eq!(line("unknown"), "500 Method Not Found");
    assert!(line("missing").starts_with("400"), "{out}");

    // One connection, several requests (keep-alive), garbage in between.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let ok = post(
        &mut s,
        "<?xml version=\"1.0\"?><methodCall><methodName>core.version</methodName></methodCall>",
    );
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("<string>ser 3.0.0 ("), "{ok}");
    let bad = post(&mut s, "this is not xml <<<");
    assert!(bad.starts_with("HTTP/1.1 200 OK\r\n"), "{bad}");
    assert!(
        bad.contains("<fault>") && bad.contains("<i4>400</i4>"),
        "{bad}"
    );
    let deep = "<value><array><data>".repeat(200);
    let bad = post(
        &mut s,
        &format!("<methodCall><methodName>x</methodName><params><param>{deep}</param></params></methodCall>"),
    );
    assert!(bad.contains("<fault>") && bad.contains("deeper"), "{bad}");
    let again = post(
        &mut s,
        "<methodCall><methodName>system.listMethods</methodName></methodCall>",
    );
    assert!(again.contains("<string>ul.dump</string>"), "{again}");

    // SIP on the same TCP port, on the same connection even.
    let options = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\
                   Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKxmlrpc-tcp\r\n\
                   From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n\
                   Call-ID: xmlrpc-tcp-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
                   Content-Length: 0\r\n\r\n";
    s.write_all(options.as_bytes()).unwrap();
    let sip = read_message(&mut s);
    assert!(sip.starts_with("SIP/2.0 200 sip ok\r\n"), "{sip}");

    // A GET without body runs the route too (and gets a fault: no XML).
    s.write_all(b"GET /RPC2 HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let get = read_message(&mut s);
    assert!(
        get.starts_with("HTTP/1.0 200 OK\r\n") && get.contains("<fault>"),
        "{get}"
    );

    // Nothing crashed.
    let log = srv.log_text();
    assert!(!log.contains("panicked"), "{log}");
    let again = python(port, "import os, xmlrpc.client\nprint(xmlrpc.client.ServerProxy('http://127.0.0.1:%s/RPC2' % os.environ['PORT']).core.version())");
    assert!(again.starts_with("ser 3.0.0"), "{again}");
}

/// The SER 3.0 sample config with what a test machine needs changed: the
/// MySQL URL (SQLite with the SER schema), the ctl socket and FIFO paths
/// (the scratch directory), and a listen address.
fn ser_oob_config(dir: &TmpDir, port: u16, db_url: &str) -> String {
    let text = support::engine::shared_config("ser-oob-3.0.cfg")
        .replace("mysql://ser:heslo@127.0.0.1/ser", db_url)
        .replace(
            "unixs:/tmp/ser_ctl",
            &format!("unixs:{}", dir.path("ser_ctl").display()),
        )
        .replace(
            "fifo:/tmp/ser_fifo",
            &format!("fifo:{}", dir.path("ser_fifo").display()),
        );
    format!(
        "listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\nchildren=1\ntcp_children=1\n{text}"
    )
}

#[test]
fn ser_30_sample_config_answers_xmlrpc() {
    let dir = TmpDir::new("xmlrpc-oob");
    let url = dir.sqlite_url("ser.db");
    // usrloc, auth_db, domain, uri_db tables, and the SER attribute tables.
    for schema in [
        include_str!("../etc/db/sqlite.sql"),
        include_str!("../etc/db/ser-uid.sql"),
    ] {
        ser_modules::db::with(&url, |c| c.batch(schema)).unwrap();
    }
    let port = free_port();
    let cfg = dir.path("ser.cfg");
    std::fs::write(&cfg, ser_oob_config(&dir, port, &url)).unwrap();

    let check = Command::new(support::proc::SER)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "ser -c fails on the SER 3.0 config:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let srv = Server::launch(&cfg, &dir.path("stderr.log")).start();
    let out = python(
        port,
        "import os, xmlrpc.client\n\
         p = xmlrpc.client.ServerProxy('http://127.0.0.1:%s/RPC2' % os.environ['PORT'])\n\
         print(p.core.version())\n\
         print(len(p.system.listMethods()))",
    );
    assert!(out.starts_with("ser 3.0.0 ("), "{out}\n{}", srv.log_text());
    assert!(
        out.lines().nth(1).unwrap().parse::<usize>().unwrap() > 20,
        "{out}"
    );

    // SIP runs through the main route: no domain is configured, so an
    // OPTIONS to a foreign domain is relaying.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = s.local_addr().unwrap().port();
    let options = format!(
        "OPTIONS sip:bob@b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKoob1\r\n\
         From: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\n\
         Call-ID: oob-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.send_to(options.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("no reply to OPTIONS");
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(
        reply.starts_with("SIP/2.0 403 Relaying Forbidden\r\n"),
        "{reply}"
    );

    // route[RPC] refuses requests of 8192 bytes or more with sl_reply: an
    // HTTP status line on an HTTP request.
    let mut big = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = format!(
        "<methodCall><methodName>core.version</methodName></methodCall><!--{}-->",
        "x".repeat(9000)
    );
    big.write_all(
        format!(
            "POST /RPC2 HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let refused = read_message(&mut big);
    assert!(
        refused.starts_with("HTTP/1.1 513 Request to big\r\n"),
        "{refused}"
    );
    let mut small = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let ok = post(
        &mut small,
        "<methodCall><methodName>core.version</methodName></methodCall>",
    );
    assert!(ok.contains("<string>ser 3.0.0 ("), "{ok}");
    let log = srv.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// XML-RPC over HTTPS on the SIP TLS port: Python's client over `ssl`,
/// trusting a self-signed certificate the test makes with `openssl`.
#[test]
fn xmlrpc_over_tls() {
    let have = |c: &str, a: &str| {
        Command::new(c)
            .arg(a)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("openssl", "version") {
        eprintln!("skipped: openssl missing");
        return;
    }
    let dir = TmpDir::new("xmlrpc-tls");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .current_dir(dir.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let plain = free_port();
    let cfg = format!(
        r#"
debug=2
listen=tls:127.0.0.1:{port}
listen=tcp:127.0.0.1:{plain}
children=1
tcp_children=1
loadmodule "sl"
loadmodule "tls"
loadmodule "xmlrpc"
modparam("tls", "certificate", "{d}/srv.pem")
modparam("tls", "private_key", "{d}/srv.key")
modparam("xmlrpc", "route", "RPC")
route {{
    sl_send_reply("404", "Not Here");
}}
route[RPC] {{
    if (proto != TLS) {{
        xmlrpc_reply("403", "xmlrpc only over TLS");
        drop;
    }}
    dispatch_rpc();
    drop;
}}
"#,
        d = dir.dir().display()
    );
    std::fs::write(dir.path("ser.cfg"), cfg).unwrap();
    let srv = Server::launch(&dir.path("ser.cfg"), &dir.path("stderr.log")).start();
    let script = format!(
        "import os, ssl, xmlrpc.client\n\
         ctx = ssl.create_default_context(cafile='{d}/srv.pem')\n\
         p = xmlrpc.client.ServerProxy('https://127.0.0.1:%s/RPC2' % os.environ['PORT'], context=ctx)\n\
         print(p.core.version())\n\
         print(p.core.version())\n",
        d = dir.dir().display()
    );
    let out = python(port, &script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}\n{}", srv.log_text());
    assert!(lines.iter().all(|l| l.starts_with("ser 3.0.0 (")), "{out}");

    // Plain TCP: the route answers with xmlrpc_reply's fault.
    let mut s = TcpStream::connect(("127.0.0.1", plain)).unwrap();
    let refused = post(
        &mut s,
        "<methodCall><methodName>core.version</methodName></methodCall>",
    );
    assert!(refused.starts_with("HTTP/1.1 200 OK\r\n"), "{refused}");
    assert!(
        refused.contains("<i4>403</i4>") && refused.contains("xmlrpc only over TLS"),
        "{refused}"
    );
}
