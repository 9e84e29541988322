//! The TLS transport with real clients: Python's `ssl` module and
//! `openssl s_client`, against certificates the test makes with the
//! `openssl` CLI (a test CA, a server certificate for 127.0.0.1, a client
//! certificate from the CA and one from an unknown CA; keys live in a temp
//! dir only). Covers REGISTER (registrar/usrloc) and OPTIONS over TLS, the
//! chain `s_client` sees, a tls.cfg `[server:IP:PORT]` profile that requires
//! client certificates, and stalled/garbage clients that must not tie up the
//! single TCP worker; SNI selecting the certificate, tls.cfg and certificate
//! paths relative to the config file, `enable_tls`/`tls_*` core parameters,
//! an outgoing connect to a peer that never answers, and SCTP start-up.
//! Skipped (with a note) without openssl or python3.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

const SER: &str = env!("CARGO_BIN_EXE_ser");

fn have_tools() -> bool {
    let ok = |c: &str| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok("openssl") && ok("python3") {
        return true;
    }
    // `openssl --version` is not valid on every build; `version` is
    if Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        && ok("python3")
    {
        return true;
    }
    eprintln!("skipped: openssl or python3 missing");
    false
}

/// A process group killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0.id()) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp dir removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Test-only CA `name` (name.pem, name.key) and a leaf `leaf` signed by it.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=ser test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_leaf(dir: &Path, ca: &str, leaf: &str) {
    make_leaf_san(dir, ca, leaf, "IP:127.0.0.1");
}

/// A leaf for `san` (`IP:...`, `DNS:...`) signed by test CA `ca`.
fn make_leaf_san(dir: &Path, ca: &str, leaf: &str, san: &str) {
    fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{leaf}.key"),
            "-out",
            &format!("{leaf}.csr"),
            "-subj",
            &format!("/CN=ser test {leaf}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{leaf}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{leaf}.pem"),
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn free_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port");
}

/// A TLS SIP client: sends each message (`{lport}` replaced by its local
/// port) and prints the status line of each answer, or `ERROR ...`.
const CLIENT_PY: &str = r#"
import socket, ssl, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
msgs = sys.stdin.read().split("\0")
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    lport = t.getsockname()[1]
    buf = b""
    for m in msgs:
        if not m.strip():
            continue
        t.sendall(m.replace("{lport}", str(lport)).encode())
        if m.startswith("ACK"):
            continue
        code = 0
        while code < 200:
            while b"\r\n\r\n" not in buf:
                d = t.recv(4096)
                if not d:
                    raise Exception("closed")
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            cl = 0
            lines = head.decode().split("\r\n")
            for line in lines:
                if line.lower().startswith("content-length:"):
                    cl = int(line.split(":")[1])
            while len(rest) < cl:
                rest += t.recv(4096)
            buf = rest[cl:]
            code = int(lines[0].split(" ")[1])
            if code >= 200:
                print(lines[0], flush=True)
                for line in lines:
                    if line.lower().startswith("record-route:"):
                        print(line, flush=True)
except Exception as e:
    print("ERROR", type(e).__name__, e, flush=True)
"#;

fn client(dir: &Path, port: u16, cert: Option<&str>, msgs: &[String]) -> String {
    let (c, k) = match cert {
        Some(n) => (
            dir.join(format!("{n}.pem")).display().to_string(),
            dir.join(format!("{n}.key")).display().to_string(),
        ),
        None => (String::new(), String::new()),
    };
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(CLIENT_PY)
        .arg(port.to_string())
        .arg(dir.join("ca.pem"))
        .arg(c)
        .arg(k)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(msgs.join("\0").as_bytes())
        .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn request(method: &str, n: u32) -> String {
    let extra = if method == "REGISTER" {
        "Contact: <sip:alice@127.0.0.1:{lport};transport=tls>\r\nExpires: 600\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{{lport}};branch=z9hG4bK-tls-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a{n}\r\n\
         To: <sip:alice@127.0.0.1>\r\n\
         Call-ID: tls-test-{n}@127.0.0.1\r\n\
         CSeq: {n} {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

const CFG: &str = r#"
enable_tls=yes
loadmodule "sl"
loadmodule "usrloc"
loadmodule "registrar"
loadmodule "tls"
loadmodule "ctl"
modparam("ctl", "binrpc", "unixs:DIR/ser_ctl")
modparam("tls", "certificate", "DIR/srv.pem")
modparam("tls", "private_key", "DIR/srv.key")
modparam("tls", "handshake_timeout", 2)
modparam("tls", "config", "DIR/tls.cfg")
route {
    if (method == "REGISTER") {
        if (proto != TLS) { sl_send_reply("500", "Not TLS"); exit; }
        save("location");
        exit;
    }
    if (method == "OPTIONS") {
        sl_send_reply("200", "OK");
        exit;
    }
    sl_send_reply("404", "Not Here");
}
"#;

fn start(dir: &Path, plain: u16, strict: u16) -> Guard {
    fs::write(
        dir.join("tls.cfg"),
        format!(
            "# the default profile comes from the module parameters\n\
             [server:default]\ncertificate = {d}/srv.pem\nprivate_key = {d}/srv.key\n\
             method = TLSv1.2+\n\n\
             [server:127.0.0.1:{strict}]\ncertificate = {d}/srv.pem\nprivate_key = {d}/srv.key\n\
             verify_certificate = 1\nrequire_certificate = 1\nca_list = {d}/ca.pem\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let listen = [plain, strict].map(|p| format!("tls:127.0.0.1:{p}"));
    start_with(dir, CFG, &listen)
}

fn start_with(dir: &Path, cfg: &str, listen: &[String]) -> Guard {
    let cfg_path = dir.join("ser.cfg");
    fs::write(&cfg_path, cfg.replace("DIR", &dir.display().to_string())).unwrap();
    let log = fs::File::create(dir.join("stderr.log")).unwrap();
    let mut cmd = Command::new(SER);
    cmd.arg("-f")
        .arg(&cfg_path)
        .args(["-n", "1", "-N", "1", "-E", "-DD", "-dd"]);
    for l in listen {
        cmd.args(["-l", l]);
    }
    let mut g = Guard(
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ser"),
    );
    let end = Instant::now() + Duration::from_secs(10);
    let log = || fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    while !log().contains("ser started") {
        let status = g.0.try_wait().ok().flatten();
        assert!(
            Instant::now() < end && status.is_none(),
            "ser did not start ({status:?}):\n{}",
            log()
        );
        sleep(Duration::from_millis(20));
    }
    g
}

#[test]
fn tls_transport_with_real_clients() {
    if !have_tools() {
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("ser-tls-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    fs::create_dir_all(&dir.0).unwrap();
    let d = &dir.0;
    make_ca(d, "ca");
    make_leaf(d, "ca", "srv");
    make_leaf(d, "ca", "goodclient");
    make_ca(d, "rogue");
    make_leaf(d, "rogue", "rogueclient");
    let (plain, strict) = (free_port(), free_port());
    let _ser = start(d, plain, strict);
    let log = || fs::read_to_string(d.join("stderr.log")).unwrap_or_default();

    // REGISTER then OPTIONS on one connection
    let out = client(
        d,
        plain,
        None,
        &[request("REGISTER", 1), request("OPTIONS", 2)],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["SIP/2.0 200 OK", "SIP/2.0 200 OK"],
        "{out}\n{}",
        log()
    );

    // the chain openssl sees
    let s = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{plain}"),
            "-showcerts",
        ])
        .arg("-CAfile")
        .arg(d.join("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&s.stdout);
    assert!(text.contains("BEGIN CERTIFICATE"), "{text}");
    assert!(text.contains("ser test srv"), "{text}");
    assert!(text.contains("ser test ca"), "issuer named: {text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");

    // the strict socket ([server:IP:PORT] in tls.cfg) needs a client
    // certificate from our CA
    let out = client(d, strict, Some("goodclient"), &[request("OPTIONS", 3)]);
    assert_eq!(out.trim(), "SIP/2.0 200 OK", "{out}\n{}", log());
    let out = client(d, strict, Some("rogueclient"), &[request("OPTIONS", 4)]);
    assert!(out.starts_with("ERROR"), "unknown CA accepted: {out}");
    let out = client(d, strict, None, &[request("OPTIONS", 5)]);
    assert!(out.starts_with("ERROR"), "no certificate accepted: {out}");

    // a stalled client (no ClientHello) and one sending garbage tie up
    // nothing: the single worker still serves a real client at once
    let mut stalled = TcpStream::connect(("127.0.0.1", plain)).unwrap();
    let mut garbage = TcpStream::connect(("127.0.0.1", plain)).unwrap();
    garbage
        .write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\nnot a tls record at all")
        .unwrap();
    let t0 = Instant::now();
    let out = client(d, plain, None, &[request("OPTIONS", 6)]);
    let quick = t0.elapsed();
    // tls.list asks the workers: the stalled client is there, still
    // handshaking; tls.info names the library
    if Path::new("/usr/sbin/kamcmd").exists() {
        let rpc = |m: &str| {
            let o = Command::new("/usr/sbin/kamcmd")
                .arg("-s")
                .arg(format!("unixs:{}/ser_ctl", d.display()))
                .arg(m)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let me = stalled.local_addr().unwrap().to_string();
        let list = rpc("tls.list");
        assert!(list.contains(&me), "tls.list without {me}: {list}");
        assert!(rpc("tls.info").contains("rustls"));
    }
    assert_eq!(out.trim(), "SIP/2.0 200 OK", "{out}\n{}", log());
    assert!(quick < Duration::from_secs(2), "{quick:?}");
    // garbage: closed at once (maybe after an alert); stalled: closed
    // after the handshake timeout (2 s)
    garbage
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 256];
    let mut got = 0;
    while let Ok(n) = garbage.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
        assert!(got < 4096);
    }
    stalled
        .set_read_timeout(Some(Duration::from_secs(6)))
        .unwrap();
    let t1 = Instant::now();
    assert_eq!(stalled.read(&mut buf).ok(), Some(0), "stalled not closed");
    assert!(t1.elapsed() < Duration::from_secs(5));
    assert!(log().contains("handshake with"), "{}", log());
}

const BRIDGE_CFG: &str = r#"
enable_tls=yes
loadmodule "sl"
loadmodule "tm"
loadmodule "rr"
loadmodule "tls"
modparam("tls", "certificate", "DIR/srv.pem")
modparam("tls", "private_key", "DIR/srv.key")
route {
    if (loose_route()) {
        t_relay();
        exit;
    }
    if (method == "INVITE") {
        record_route();
    }
    t_relay();
}
"#;

fn dialog_request(method: &str, target: &str, cseq: u32) -> String {
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{{lport}};branch=z9hG4bK-br-{method}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=br1\r\n\
         To: <sip:bob@127.0.0.1>{to_tag}\r\n\
         Call-ID: tls-bridge@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@127.0.0.1:{{lport}};transport=tls>\r\n\
         Content-Length: 0\r\n\r\n",
        to_tag = if method == "INVITE" { "" } else { ";tag=uas" },
    )
}

/// A TLS caller (Python) through ser (tm, rr) to a sipp UAS on UDP: the
/// UAS's answers come back through a UDP receiver, which relays them to the
/// TCP worker holding the caller's TLS session.
#[test]
fn tls_caller_to_udp_callee_and_back() {
    if !have_tools() || !Path::new("/usr/bin/sipp").exists() {
        eprintln!("skipped: sipp missing");
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("ser-tls-br-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    fs::create_dir_all(&dir.0).unwrap();
    let d = &dir.0;
    make_ca(d, "ca");
    make_leaf(d, "ca", "srv");
    let (tls, udp, uas) = (free_port(), free_port(), free_port());
    let uas_xml =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/scenarios/uas.xml");
    if !uas_xml.exists() {
        eprintln!("skipped: {} missing", uas_xml.display());
        return;
    }
    let _uas = Guard(
        Command::new("/usr/bin/sipp")
            .arg("-sf")
            .arg(&uas_xml)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &uas.to_string(),
                "-m",
                "1",
                "-nostdin",
            ])
            .args(["-timeout", "20s"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp"),
    );
    let _ser = start_with(
        d,
        BRIDGE_CFG,
        &[
            format!("tls:127.0.0.1:{tls}"),
            format!("udp:127.0.0.1:{udp}"),
        ],
    );
    let log = || fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
    sleep(Duration::from_millis(200));
    let target = format!("sip:bob@127.0.0.1:{uas}");
    let out = client(
        d,
        tls,
        None,
        &[
            dialog_request("INVITE", &target, 1),
            dialog_request("ACK", &target, 1),
            dialog_request("BYE", &target, 2),
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"SIP/2.0 200 OK"), "{out}\n{}", log());
    assert!(
        out.contains(&format!("127.0.0.1:{tls};transport=tls")),
        "Record-Route names the TLS side: {out}"
    );
    assert_eq!(
        lines.last(),
        Some(&"SIP/2.0 200 OK"),
        "BYE answered: {out}\n{}",
        log()
    );
}

/// `-l sctp:...`: with kernel SCTP, an OPTIONS over SCTP is answered;
/// without it, start-up fails with one clear line naming the missing
/// kernel support (`modprobe sctp`). `-S` leaves sctp addresses out.
#[test]
fn sctp_transport_or_a_clear_error() {
    let dir = Dir(std::env::temp_dir().join(format!("ser-sctp-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    fs::create_dir_all(&dir.0).unwrap();
    let cfg = dir.0.join("ser.cfg");
    fs::write(&cfg, "route { drop; }\n").unwrap();
    let (sctp, udp) = (free_port(), free_port());
    let run = |extra: &[&str], limit: Duration| {
        let mut cmd = Command::new(SER);
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-E", "-D", "-n", "1"])
            .args(["-l", &format!("sctp:127.0.0.1:{sctp}")])
            .args(["-l", &format!("udp:127.0.0.1:{udp}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut g = Guard(cmd.process_group(0).spawn().expect("spawn ser"));
        let end = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(s)) = g.0.try_wait() {
                break Some(s);
            }
            if Instant::now() > end {
                break None;
            }
            sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = g.0.stderr.take() {
            if status.is_some() {
                let _ = e.read_to_string(&mut err);
            }
        }
        (status, err)
    };
    // does this kernel have SCTP at all?
    let kernel = Command::new("python3")
        .args([
            "-c",
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, \
             socket.IPPROTO_SCTP)",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if kernel {
        sctp_round_trip(&dir.0);
    } else {
        eprintln!("skipped the SCTP exchange: this kernel has no SCTP (modprobe sctp)");
        let (status, err) = run(&[], Duration::from_secs(10));
        assert!(status.is_some_and(|s| !s.success()), "{status:?} {err}");
        assert!(err.contains("the kernel has no SCTP support"), "{err}");
        assert!(err.contains("modprobe sctp"), "{err}");
    }
    // -S: the sctp address is left out and the server starts
    let (status, err) = run(&["-S"], Duration::from_millis(1500));
    assert!(status.is_none(), "ser -S exited: {status:?} {err}");
}

/// An SCTP client (Python, one-to-many socket): OPTIONS to ser over SCTP,
/// answered by sl with the client's `Via: SIP/2.0/SCTP`.
const SCTP_PY: &str = r#"
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, socket.IPPROTO_SCTP)
s.bind(("127.0.0.1", 0))
s.settimeout(5)
me = s.getsockname()[1]
msg = ("OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
       "Via: SIP/2.0/SCTP 127.0.0.1:%d;branch=z9hG4bK-sctp-1\r\n"
       "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n"
       "Call-ID: sctp-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n") % me
s.sendto(msg.encode(), ("127.0.0.1", port))
try:
    print(s.recv(65535).decode(errors="replace"))
except Exception as e:
    print("ERROR", e)
"#;

fn sctp_round_trip(dir: &Path) {
    let (sctp, udp) = (free_port(), free_port());
    let cfg = "loadmodule \"sl\"\nroute { sl_send_reply(\"200\", \"SCTP\"); }\n";
    let _ser = start_with(
        dir,
        cfg,
        &[
            format!("sctp:127.0.0.1:{sctp}"),
            format!("udp:127.0.0.1:{udp}"),
        ],
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCTP_PY)
        .arg(sctp.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("SIP/2.0 200 SCTP"), "{text}");
    assert!(text.contains("Via: SIP/2.0/SCTP 127.0.0.1:"), "{text}");
}

/// A TLS UAS: answers one request with 200 OK and prints its top Via.
const UAS_PY: &str = r#"
import socket, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(5)
ls.settimeout(15)
print("ready", flush=True)
try:
    c, _ = ls.accept()
    t = ctx.wrap_socket(c, server_side=True)
    t.settimeout(10)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = t.recv(4096)
        if not d:
            raise Exception("closed")
        buf += d
    head = buf.split(b"\r\n\r\n")[0].decode().split("\r\n")
    print("REQUEST", head[0], flush=True)
    print("TOPVIA", [l for l in head if l.lower().startswith("via:")][0], flush=True)
    keep = [l for l in head[1:] if l.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")]
    t.sendall(("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode())
    t.recv(1)
except Exception as e:
    print("ERROR", type(e).__name__, e, flush=True)
"#;

/// A UDP caller to a `sips:` target: ser opens a TLS client connection
/// from a TCP worker (handshake driven by its poll loop), with
/// `Via: SIP/2.0/TLS`, and the answer comes back over UDP.
#[test]
fn udp_caller_to_sips_target_over_tls() {
    if !have_tools() {
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("ser-tls-out-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    fs::create_dir_all(&dir.0).unwrap();
    let d = &dir.0;
    make_ca(d, "ca");
    make_leaf(d, "ca", "srv");
    let (tls, udp, uas) = (free_port(), free_port(), free_port());
    let mut server = Command::new("python3")
        .arg("-c")
        .arg(UAS_PY)
        .arg(uas.to_string())
        .arg(d.join("srv.pem"))
        .arg(d.join("srv.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("python3");
    let mut out = server.stdout.take().unwrap();
    let uas_guard = Guard(server);
    let mut ready = [0u8; 6];
    out.read_exact(&mut ready).unwrap();
    let _ser = start_with(
        d,
        BRIDGE_CFG,
        &[
            format!("tls:127.0.0.1:{tls}"),
            format!("udp:127.0.0.1:{udp}"),
        ],
    );
    let log = || fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sips:bob@127.0.0.1:{uas} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-out-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=o1\r\n\
         To: <sips:bob@127.0.0.1>\r\n\
         Call-ID: tls-out@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.send_to(msg.as_bytes(), ("127.0.0.1", udp)).unwrap();
    let mut buf = [0u8; 4096];
    let mut got = String::new();
    while let Ok(n) = caller.recv(&mut buf) {
        got = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !got.starts_with("SIP/2.0 1") {
            break;
        }
    }
    assert!(got.starts_with("SIP/2.0 200 OK"), "{got}\n{}", log());
    drop(uas_guard);
    let mut text = String::new();
    let _ = out.read_to_string(&mut text);
    assert!(
        text.contains("TOPVIA Via: SIP/2.0/TLS 127.0.0.1:"),
        "{text}"
    );
}

/// Scratch dir for one test.
fn scratch(tag: &str) -> Dir {
    let dir = Dir(std::env::temp_dir().join(format!("ser-tls-{tag}-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    fs::create_dir_all(&dir.0).unwrap();
    dir
}

/// The subject CN of the certificate `openssl s_client` gets from `port`
/// with SNI `name` (`None`: no SNI).
fn served_cn(port: u16, name: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match name {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| {
            s.rsplit("CN")
                .next()
                .unwrap_or("")
                .trim_start_matches([' ', '='])
                .to_string()
        })
        .unwrap_or_else(|| format!("no certificate: {text}"))
}

const SNI_CFG: &str = r#"
loadmodule "sl"
loadmodule "tls"
# relative: to this file's directory (ser runs from elsewhere)
modparam("tls", "config", "conf/tls.cfg")
route {
    sl_send_reply("200", "OK");
}
"#;

/// tls.cfg `[server:IP:PORT]` sections with `server_name`: `openssl
/// s_client -servername a.test` and `b.test` see different certificates,
/// no or an unknown name gets the default profile's, `server_name_mode = 1`
/// covers subdomains. tls.cfg and the certificate paths inside it are
/// relative to the main config file's directory.
#[test]
fn sni_selects_the_certificate() {
    if !have_tools() {
        return;
    }
    let dir = scratch("sni");
    let d = &dir.0;
    fs::create_dir_all(d.join("conf/certs")).unwrap();
    let certs = d.join("conf/certs");
    make_ca(&certs, "ca");
    make_leaf(&certs, "ca", "dflt");
    make_leaf_san(&certs, "ca", "a", "DNS:a.test");
    make_leaf_san(&certs, "ca", "b", "DNS:b.test");
    let port = free_port();
    fs::write(
        d.join("conf/tls.cfg"),
        format!(
            "[server:default]\ncertificate = conf/certs/dflt.pem\n\
             private_key = conf/certs/dflt.key\n\n\
             [server:127.0.0.1:{port}]\nserver_name = a.test\n\
             certificate = conf/certs/a.pem\nprivate_key = conf/certs/a.key\n\n\
             [server:127.0.0.1:{port}]\nserver_name = b.test\nserver_name_mode = 1\n\
             certificate = conf/certs/b.pem\nprivate_key = conf/certs/b.key\n"
        ),
    )
    .unwrap();
    let cfg_path = d.join("ser.cfg");
    fs::write(&cfg_path, SNI_CFG).unwrap();
    let log = fs::File::create(d.join("stderr.log")).unwrap();
    let mut g = Guard(
        Command::new(SER)
            .arg("-f")
            .arg(&cfg_path)
            .args(["-n", "1", "-N", "1", "-E", "-DD", "-dd"])
            .args(["-l", &format!("tls:127.0.0.1:{port}")])
            .current_dir("/")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let log = || fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
    let end = Instant::now() + Duration::from_secs(10);
    while !log().contains("ser started") {
        let st = g.0.try_wait().ok().flatten();
        assert!(Instant::now() < end && st.is_none(), "{st:?}\n{}", log());
        sleep(Duration::from_millis(20));
    }
    assert_eq!(served_cn(port, Some("a.test")), "ser test a", "{}", log());
    assert_eq!(served_cn(port, Some("b.test")), "ser test b");
    assert_eq!(served_cn(port, Some("sip.b.test")), "ser test b");
    assert_eq!(served_cn(port, Some("sip.a.test")), "ser test dflt");
    assert_eq!(served_cn(port, Some("c.test")), "ser test dflt");
    assert_eq!(served_cn(port, None), "ser test dflt");
}

/// A bad tls.cfg stops start-up with `file:line: what`; so does a
/// certificate that cannot be read, naming the section's line.
#[test]
fn bad_tls_cfg_names_file_and_line() {
    if !have_tools() {
        return;
    }
    let dir = scratch("badcfg");
    let d = &dir.0;
    let port = free_port();
    let run_with = |tls_cfg: &str| -> (Option<i32>, String) {
        fs::write(d.join("tls.cfg"), tls_cfg).unwrap();
        fs::write(
            d.join("ser.cfg"),
            SNI_CFG.replace("conf/tls.cfg", "tls.cfg"),
        )
        .unwrap();
        let out = Command::new(SER)
            .arg("-f")
            .arg(d.join("ser.cfg"))
            .args(["-n", "1", "-N", "1", "-E", "-DD"])
            .args(["-l", &format!("tls:127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = d.join("tls.cfg").display().to_string();
    let (code, err) = run_with("[server:default]\nmethod = TLSv1.2+\nfrobnicate = 1\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{file}:3: unknown tls parameter 'frobnicate'")),
        "{err}"
    );
    let (code, err) =
        run_with("# x\n[server:default]\ncertificate = missing.pem\nprivate_key = k\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{file}:2: tls certificate {}/missing.pem",
            d.display()
        )),
        "{err}"
    );
}

const CORE_TLS_CFG: &str = r#"
enable_tls=yes
tls_port_no=TLSPORT
port=UDPPORT
listen=127.0.0.1
# SER 3.0 core parameters: the tls module's defaults
tls_certificate="certs/srv.pem"
tls_private_key="certs/srv.key"
tls_method="TLSv1.2+"
loadmodule "sl"
loadmodule "tls"
route {
    if (proto == TLS) { sl_send_reply("200", "TLS"); exit; }
    sl_send_reply("200", "Other");
}
"#;

/// `enable_tls=yes` with a listen address without protocol: ser listens on
/// UDP, TCP and on TLS at `tls_port_no`, with the certificate of the core
/// `tls_certificate`/`tls_private_key` (no module parameters). With
/// `enable_tls=no` a `tls:` listen is left out, saying so. The historical
/// SER 3.0 config (enable_tls=yes, tls module not loaded) still checks.
#[test]
fn enable_tls_and_core_tls_parameters() {
    if !have_tools() {
        return;
    }
    let dir = scratch("core");
    let d = &dir.0;
    fs::create_dir_all(d.join("certs")).unwrap();
    make_ca(&d.join("certs"), "ca");
    make_leaf(&d.join("certs"), "ca", "srv");
    fs::copy(d.join("certs/ca.pem"), d.join("ca.pem")).unwrap();
    let (tls, udp) = (free_port(), free_port());
    let cfg = CORE_TLS_CFG
        .replace("TLSPORT", &tls.to_string())
        .replace("UDPPORT", &udp.to_string());
    {
        let _ser = start_with(d, &cfg, &[]);
        let log = || fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
        assert!(
            log().contains(&format!("listening on tls:127.0.0.1:{tls}")),
            "{}",
            log()
        );
        assert!(
            log().contains(&format!("listening on tcp:127.0.0.1:{udp}")),
            "{}",
            log()
        );
        let out = client(d, tls, None, &[request("OPTIONS", 1)]);
        assert_eq!(out.trim(), "SIP/2.0 200 TLS", "{out}\n{}", log());
    }
    // enable_tls=no: tls: addresses are left out, with a warning
    let off = cfg
        .replace("enable_tls=yes", "enable_tls=no")
        .replace("listen=127.0.0.1\n", "");
    {
        let _ser = start_with(
            d,
            &off,
            &[
                format!("udp:127.0.0.1:{udp}"),
                format!("tls:127.0.0.1:{tls}"),
            ],
        );
        let log = fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
        assert!(
            log.contains(&format!(
                "listen tls:127.0.0.1:{tls} ignored: tls is disabled"
            )),
            "{log}"
        );
        assert!(TcpStream::connect(("127.0.0.1", tls)).is_err(), "{log}");
    }
    // the historical SER 3.0 config: enable_tls=yes without the tls module
    let hist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/configs/ser-oob-3.0.cfg");
    let hist = if hist.exists() {
        hist
    } else {
        PathBuf::from("/work/shared/configs/ser-oob-3.0.cfg")
    };
    if hist.exists() {
        let out = Command::new(SER)
            .arg("-c")
            .arg("-f")
            .arg(&hist)
            .args(["-l", &format!("udp:127.0.0.1:{udp}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
    } else {
        eprintln!("skipped the SER 3.0 config check: ser-oob-3.0.cfg not found");
    }
}

const STALL_CFG: &str = r#"
loadmodule "sl"
loadmodule "tm"
loadmodule "tls"
modparam("tls", "certificate", "DIR/srv.pem")
modparam("tls", "private_key", "DIR/srv.key")
route {
    if (method == "OPTIONS" && uri =~ "^sip:") {
        sl_send_reply("200", "Pong");
        exit;
    }
    t_relay();
}
"#;

/// A sips: target whose SYNs go unanswered (a listener with a full accept
/// queue): the TCP worker connects in the background and the UDP receiver
/// that relayed the request does not wait for it, so with one UDP receiver
/// and one TCP worker a UDP ping and a TLS client are still answered at
/// once.
#[test]
fn outgoing_connect_to_a_stalled_peer_does_not_block() {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
    };
    if !have_tools() {
        return;
    }
    let dir = scratch("stall");
    let d = &dir.0;
    make_ca(d, "ca");
    make_leaf(d, "ca", "srv");
    // a listener that never accepts, its queue filled: further SYNs drop
    let stalled = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&stalled),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .unwrap();
    listen(&stalled, Backlog::new(0).unwrap()).unwrap();
    let sa: SockaddrIn =
        nix::sys::socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(&stalled)).unwrap();
    let sport = sa.port();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{sport}").parse().unwrap(),
            Duration::from_millis(200),
        );
        if let Ok(s) = s {
            fillers.push(s);
        }
    }
    let probe = std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{sport}").parse().unwrap(),
        Duration::from_millis(300),
    );
    if probe.is_ok() {
        eprintln!("skipped: this kernel does not stall connects to a full accept queue");
        return;
    }
    let (tls, udp) = (free_port(), free_port());
    let _ser = start_with(
        d,
        STALL_CFG,
        &[
            format!("tls:127.0.0.1:{tls}"),
            format!("udp:127.0.0.1:{udp}"),
        ],
    );
    let log = || fs::read_to_string(d.join("stderr.log")).unwrap_or_default();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let msg = |ruri: &str, n: u32| {
        format!(
            "OPTIONS {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-stall-{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.1>;tag=s{n}\r\n\
             To: <sip:bob@127.0.0.1>\r\n\
             Call-ID: tls-stall-{n}@127.0.0.1\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    for n in 0..3 {
        let target = format!("sips:bob{n}@127.0.0.1:{sport}");
        caller
            .send_to(msg(&target, n).as_bytes(), ("127.0.0.1", udp))
            .unwrap();
    }
    let started = Instant::now();
    caller
        .send_to(msg("sip:ping@127.0.0.1", 9).as_bytes(), ("127.0.0.1", udp))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut pong = None;
    while let Ok(n) = caller.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("SIP/2.0 200 Pong") {
            pong = Some(started.elapsed());
            break;
        }
    }
    let pong = pong.unwrap_or_else(|| panic!("no answer to the ping\n{}", log()));
    assert!(
        pong < Duration::from_millis(800),
        "ping waited {pong:?}\n{}",
        log()
    );
    // the single TCP worker still serves a TLS client at once
    let t = Instant::now();
    let out = client(d, tls, None, &[request("OPTIONS", 1)]);
    assert!(out.starts_with("SIP/2.0"), "{out}\n{}", log());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "TLS client waited {:?}",
        t.elapsed()
    );
    drop(fillers);
}
