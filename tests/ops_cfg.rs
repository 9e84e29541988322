//! The shipped default config, `etc/ser.cfg`, passes `ser -c` with every
//! combination of its feature switches (`-A WITH_...`).
//!
//! Modules it loads that this build does not have yet are listed in
//! [`NOT_YET`]: `ser -c` must refuse the config naming exactly those modules
//! (and nothing else).  When one lands, `ser -c` stops naming it and this test
//! fails until it is removed from the list, so the list only ever shrinks.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SER: &str = env!("CARGO_BIN_EXE_ser");

/// Modules `etc/ser.cfg` loads in every variant that are not built in yet.
const NOT_YET: &[&str] = &[];

/// Loaded only with `WITH_TLS`; not built in yet (none now).
const NOT_YET_TLS: &[&str] = &[];

/// The switches the config documents, combined in every way.
const SWITCHES: &[&str] = &["WITH_AUTH", "WITH_USRLOCDB", "WITH_TCP", "WITH_TLS"];

fn cfg_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("etc/ser.cfg")
}

/// Runs `ser -c` on the config with `defines`; returns (success, stdout, stderr).
fn check(defines: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(SER);
    cmd.arg("-c").arg("-f").arg(cfg_path());
    for d in defines {
        cmd.arg("-A").arg(d);
    }
    let out = cmd.output().expect("run ser -c");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The modules named by "not available in this build" diagnostics; any other
/// diagnostic headline is returned as an error.
fn missing_modules(stderr: &str) -> Result<BTreeSet<String>, String> {
    let prefix = format!("{}:", cfg_path().display());
    let mut out = BTreeSet::new();
    for line in stderr.lines().filter(|l| l.starts_with(&prefix)) {
        if !line.ends_with("is not available in this build (not implemented yet)") {
            return Err(format!("unexpected diagnostic: {line}"));
        }
        // "module `rr` is ..." or "function `f` (module `rr`) is ..."
        let module = line
            .rsplit_once("module `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(m, _)| m.to_owned())
            .ok_or_else(|| format!("no module named in: {line}"))?;
        out.insert(module);
    }
    Ok(out)
}

fn expect_missing(defines: &[&str]) -> BTreeSet<String> {
    let mut want: BTreeSet<String> = NOT_YET.iter().map(|m| m.to_string()).collect();
    if defines.contains(&"WITH_TLS") {
        want.extend(NOT_YET_TLS.iter().map(|m| m.to_string()));
    }
    want
}

fn assert_variant(defines: &[&str]) {
    let (ok, stdout, stderr) = check(defines);
    let want = expect_missing(defines);
    let got = match missing_modules(&stderr) {
        Ok(g) => g,
        Err(e) => panic!("ser -c {defines:?}: {e}\n{stderr}"),
    };
    if want.is_empty() {
        assert!(
            ok && stdout.starts_with("config file ok"),
            "ser -c {defines:?} failed:\n{stderr}"
        );
        return;
    }
    assert!(
        !ok,
        "ser -c {defines:?} passed: remove {want:?} from NOT_YET"
    );
    if let Some(m) = want.difference(&got).next() {
        panic!("module `{m}` is built in now: remove it from NOT_YET in tests/ops_cfg.rs");
    }
    assert_eq!(got, want, "ser -c {defines:?}:\n{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "ser: bad config file ({})\n",
            cfg_path().display()
        )),
        "{stderr}"
    );
}

#[test]
fn default_config_checks_with_every_switch_combination() {
    for mask in 0..(1u32 << SWITCHES.len()) {
        let defines: Vec<&str> = SWITCHES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect();
        assert_variant(&defines);
    }
    assert_variant(&["WITH_DEBUG"]);
}

/// `etc/ser.cfg` with the not-yet modules taken out (their lines deleted,
/// rr's calls replaced by no-ops while rr is not built in) and the ctl socket
/// and the database moved into `dir`, so parallel runs share nothing.
fn stripped_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(cfg_path()).unwrap();
    let mut stripped = String::new();
    for line in text.lines() {
        let drops = NOT_YET
            .iter()
            .chain(NOT_YET_TLS)
            .any(|m| line.contains(&format!("\"{m}\"")));
        if drops {
            continue;
        }
        let mut line = line
            .replace(
                "unixs:/tmp/ser_ctl",
                &format!("unixs:{}", dir.join("ser_ctl").display()),
            )
            .replace(
                "sqlite:///usr/local/etc/ser/ser.db",
                &format!("sqlite://{}", dir.join("ser.db").display()),
            );
        if NOT_YET.contains(&"rr") {
            line = line
                .replace("record_route();", "xlog(\"L_DBG\", \"rr\\n\");")
                .replace("loose_route()", "has_totag()");
        }
        stripped.push_str(&line);
        stripped.push('\n');
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("ser.cfg");
    std::fs::write(&path, stripped).unwrap();
    path
}

fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ser-ops-cfg-{tag}-{}", std::process::id()))
}

/// Without the not-yet modules, the rest of the config (every other module,
/// parameter and function call) checks clean today.
#[test]
fn default_config_is_otherwise_clean() {
    let dir = scratch("clean");
    let path = stripped_config(&dir);
    for defines in [
        &[][..],
        &["WITH_AUTH", "WITH_USRLOCDB"],
        &["WITH_TCP"],
        &["WITH_TLS", "WITH_AUTH"],
        &["WITH_DEBUG"],
    ] {
        let mut cmd = Command::new(SER);
        cmd.arg("-c").arg("-f").arg(&path);
        for d in defines {
            cmd.arg("-A").arg(d);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{defines:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `ser` in the foreground, stopped with SIGTERM on drop.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sercmd` next to `ser` in the target dir, if built (tests/ops.rs builds it).
fn sercmd_bin() -> Option<PathBuf> {
    let p = Path::new(SER).with_file_name("sercmd");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("{} not built: sercmd check skipped", p.display());
        None
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn recv_msg(sock: &UdpSocket) -> Option<String> {
    let mut buf = [0u8; 8192];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Sends `req` until something other than a provisional reply comes back.
fn transact(sock: &UdpSocket, port: u16, req: &str) -> Option<String> {
    for _ in 0..10 {
        sock.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
        while let Some(m) = recv_msg(sock) {
            if !m.starts_with("SIP/2.0 1") {
                return Some(m);
            }
        }
    }
    None
}

/// Starts the stripped default config in the foreground on a free port.
fn start_default(dir: &Path, defines: &[&str]) -> (Server, u16) {
    let cfg = stripped_config(dir);
    let port = free_udp_port();
    let log = dir.join("ser.log");
    let mut cmd = Command::new(SER);
    cmd.arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-n", "1", "-m", "16"])
        .arg("-l")
        .arg(format!("udp:127.0.0.1:{port}"));
    for d in defines {
        cmd.arg("-A").arg(d);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Server { child, log }, port)
}

/// Out of the box (minus the not-yet modules) the config is a registrar and
/// a stateful proxy: alice registers, bob's MESSAGE to alice reaches her
/// contact through tm, her 200 comes back to bob, and a call to an unknown
/// user gets 404.
#[test]
fn default_config_registers_and_relays() {
    let dir = scratch("run");
    let (server, port) = start_default(&dir, &[]);

    let alice = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bob = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&alice, &bob] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let a = alice.local_addr().unwrap();
    let b = bob.local_addr().unwrap();

    let register = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {a};branch=z9hG4bK-ops-reg1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:alice@127.0.0.1>\r\n\
         Call-ID: ops-reg-1@127.0.0.1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@{a}>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let reply = transact(&alice, port, &register)
        .unwrap_or_else(|| panic!("no reply to REGISTER\n{}", server.log()));
    assert!(
        reply.starts_with("SIP/2.0 200"),
        "{reply}\n{}",
        server.log()
    );
    assert!(reply.contains(&format!("sip:alice@{a}")), "{reply}");

    let message = format!(
        "MESSAGE sip:alice@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {b};branch=z9hG4bK-ops-msg1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:bob@127.0.0.1>;tag=b1\r\n\
         To: <sip:alice@127.0.0.1>\r\n\
         Call-ID: ops-msg-1@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 5\r\n\r\nhello"
    );
    bob.send_to(message.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let relayed = recv_msg(&alice)
        .or_else(|| recv_msg(&alice))
        .unwrap_or_else(|| panic!("MESSAGE not relayed to alice\n{}", server.log()));
    assert!(
        relayed.starts_with(&format!("MESSAGE sip:alice@{a} SIP/2.0")),
        "{relayed}"
    );
    // alice answers with the Vias she got; tm sends the 200 on to bob.
    let vias: Vec<&str> = relayed
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("via:") || l.starts_with("v:"))
        .collect();
    assert_eq!(vias.len(), 2, "{relayed}");
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\n\
         From: <sip:bob@127.0.0.1>;tag=b1\r\n\
         To: <sip:alice@127.0.0.1>;tag=a2\r\n\
         Call-ID: ops-msg-1@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Length: 0\r\n\r\n",
        vias.join("\r\n")
    );
    alice.send_to(ok.as_bytes(), ("127.0.0.1", port)).unwrap();
    let back = recv_msg(&bob)
        .or_else(|| recv_msg(&bob))
        .unwrap_or_else(|| panic!("200 not relayed to bob\n{}", server.log()));
    assert!(back.starts_with("SIP/2.0 200 OK"), "{back}");
    assert!(back.contains("branch=z9hG4bK-ops-msg1"), "{back}");

    let invite = format!(
        "INVITE sip:nobody@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {b};branch=z9hG4bK-ops-inv1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:bob@127.0.0.1>;tag=b2\r\n\
         To: <sip:nobody@127.0.0.1>\r\n\
         Call-ID: ops-inv-1@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:bob@{b}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let reply = transact(&bob, port, &invite)
        .unwrap_or_else(|| panic!("no reply to INVITE\n{}", server.log()));
    assert!(reply.starts_with("SIP/2.0 404"), "{reply}");

    // sercmd reaches the ctl socket the config declares.
    if let Some(sercmd) = sercmd_bin() {
        let ctl = format!("unixs:{}", dir.join("ser_ctl").display());
        let out = Command::new(&sercmd)
            .args(["-s", &ctl, "core.version"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ser"),
            "sercmd core.version: {stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        let out = Command::new(&sercmd)
            .args(["-s", &ctl, "ul.dump"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("alice"),
            "sercmd ul.dump: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of `name="..."` (or `name=token`) in a header line.
fn auth_param(hdr: &str, name: &str) -> Option<String> {
    let i = hdr.find(&format!("{name}="))? + name.len() + 1;
    let rest = &hdr[i..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next().map(str::to_owned)
    } else {
        rest.split([',', ' ', '\r']).next().map(str::to_owned)
    }
}

/// WITH_AUTH: a REGISTER without credentials is challenged (401), with the
/// digest of a user of the SQLite subscriber table it is saved (200).
#[test]
fn default_config_with_auth_challenges_and_accepts() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        eprintln!("sqlite3 not found (apt package `sqlite3`): WITH_AUTH run skipped");
        return;
    }
    let dir = scratch("auth");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ser.db");
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("etc/db/sqlite.sql");
    let sql = format!(
        ".read {}\nINSERT INTO subscriber (username, domain, password) \
         VALUES ('alice', '127.0.0.1', 'secret');\n",
        schema.display()
    );
    let mut child = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), sql.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "sqlite3 failed");

    let (server, port) = start_default(&dir, &["WITH_AUTH"]);
    let alice = UdpSocket::bind("127.0.0.1:0").unwrap();
    alice
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let a = alice.local_addr().unwrap();
    let uri = format!("sip:127.0.0.1:{port}");
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {a};branch=z9hG4bK-ops-auth{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.1>;tag=a1\r\n\
             To: <sip:alice@127.0.0.1>\r\n\
             Call-ID: ops-auth-1@127.0.0.1\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:alice@{a}>\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    };
    let reply = transact(&alice, port, &register(1, ""))
        .unwrap_or_else(|| panic!("no reply to REGISTER\n{}", server.log()));
    assert!(
        reply.starts_with("SIP/2.0 401"),
        "{reply}\n{}",
        server.log()
    );
    let challenge = reply
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .unwrap_or_else(|| panic!("no WWW-Authenticate: {reply}"));
    let realm = auth_param(challenge, "realm").unwrap();
    assert_eq!(realm, "127.0.0.1");
    let nonce = auth_param(challenge, "nonce").unwrap();
    let qop = auth_param(challenge, "qop").map(|q| {
        q.split(',')
            .map(str::trim)
            .find(|q| *q == "auth")
            .unwrap_or("")
            .to_owned()
    });
    let qop = qop.unwrap_or_default();
    use ser_modules::auth::digest::{ha1, response, Alg};
    let ha1 = ha1(Alg::Md5, "alice", &realm, "secret");
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let resp = response(
        Alg::Md5,
        &ha1,
        &nonce,
        nc,
        cnonce,
        &qop,
        "REGISTER",
        &uri,
        b"",
    );
    let qop_part = if qop.is_empty() {
        String::new()
    } else {
        format!(", qop={qop}, nc={nc}, cnonce=\"{cnonce}\"")
    };
    let auth = format!(
        "Authorization: Digest username=\"alice\", realm=\"{realm}\", \
         nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\"{qop_part}\r\n"
    );
    let reply = transact(&alice, port, &register(2, &auth)).unwrap_or_else(|| {
        panic!(
            "no reply to the REGISTER with credentials\n{}",
            server.log()
        )
    });
    assert!(
        reply.starts_with("SIP/2.0 200"),
        "{reply}\n{}",
        server.log()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
