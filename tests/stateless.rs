//! `ser` as a stateless proxy between real sipp user agents (/usr/bin/sipp,
//! scenarios from /work/shared/bench/scenarios): OPTIONS answered by
//! `sl_send_reply`, INVITE/ACK/BYE forwarded with Record-Route and loose
//! routing over UDP and TCP, Max-Forwards 0 → 483, and the RFC 4475 torture
//! messages sent to a server inside a network namespace.
//!
//! Skipped (with a note) when sipp or the shared files are missing. Every
//! wait is bounded; servers and sipp are killed by their guards.

use std::fs;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

const SER: &str = env!("CARGO_BIN_EXE_ser");
const SIPP: &str = "/usr/bin/sipp";

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn scenario(name: &str) -> PathBuf {
    shared().join("bench/scenarios").join(name)
}

fn have_sipp() -> bool {
    if Path::new(SIPP).exists() && scenario("uas.xml").exists() {
        return true;
    }
    eprintln!("skipped: {SIPP} or the bench scenarios are missing");
    false
}

/// A process group killed on drop.
struct Guard {
    child: Child,
}

impl Guard {
    fn spawn(cmd: &mut Command) -> Guard {
        let child = cmd.process_group(0).spawn().expect("spawn");
        Guard { child }
    }

    /// Waits at most `limit` for the process to end.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Server {
    guard: Guard,
    dir: PathBuf,
}

impl Server {
    fn start(tag: &str, cfg: &str, listen: &[String], extra: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("ser-stateless-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cfg_path = dir.join("ser.cfg");
        fs::write(&cfg_path, cfg).unwrap();
        let log = fs::File::create(dir.join("stderr.log")).unwrap();
        let mut cmd = Command::new(SER);
        cmd.args([
            "-f",
            cfg_path.to_str().unwrap(),
            "-n",
            "2",
            "-N",
            "1",
            "-E",
            "-DD",
            "-dd",
        ]);
        for l in listen {
            cmd.args(["-l", l]);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut s = Server {
            guard: Guard::spawn(&mut cmd),
            dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !s.log().contains("ser started") {
            let status = s.guard.child.try_wait().ok().flatten();
            assert!(
                Instant::now() < end && status.is_none(),
                "ser did not start ({status:?}):\n{}",
                s.log()
            );
            sleep(Duration::from_millis(20));
        }
        s
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.guard.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    // a port free for both UDP and TCP
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port");
}

const PROXY_CFG: &str = r#"
loadmodule "sl"
loadmodule "maxfwd"
loadmodule "rr"
route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (method == "OPTIONS" && uri == myself) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (loose_route()) {
        FORWARD;
        exit;
    }
    if (method == "INVITE") {
        record_route();
    }
    FORWARD;
}
"#;

fn proxy_cfg(forward: &str) -> String {
    PROXY_CFG.replace("FORWARD", forward)
}

/// Runs a sipp UAC against `target` for `calls` calls; returns (success, output).
fn sipp_uac(dir: &Path, target: &str, local_port: u16, args: &[&str]) -> (bool, String) {
    let out = dir.join(format!("uac-{local_port}.out"));
    let mut cmd = Command::new(SIPP);
    cmd.arg(target)
        .args(["-i", "127.0.0.1", "-p", &local_port.to_string()])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(Stdio::null());
    let mut g = Guard::spawn(&mut cmd);
    let status = g.wait(Duration::from_secs(45));
    let text = fs::read_to_string(&out).unwrap_or_default();
    (status.is_some_and(|s| s.success()), text)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn options_answered_by_sl_send_reply() {
    if !have_sipp() {
        return;
    }
    let port = free_port();
    let srv = Server::start(
        "options",
        &proxy_cfg("forward()"),
        &[format!("udp:127.0.0.1:{port}")],
        &[],
    );
    let uac = free_port();
    let (ok, out) = sipp_uac(
        &srv.dir,
        &format!("127.0.0.1:{port}"),
        uac,
        &[
            "-sf",
            scenario("uac_options.xml").to_str().unwrap(),
            "-m",
            "200",
            "-r",
            "500",
        ],
    );
    assert!(ok, "sipp OPTIONS failed:\n{}\n{}", tail(&out), srv.log());
}

#[test]
fn max_forwards_zero_gets_483() {
    let port = free_port();
    let srv = Server::start(
        "mf0",
        &proxy_cfg("forward()"),
        &[format!("udp:127.0.0.1:{port}")],
        &[],
    );
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = c.local_addr().unwrap().port();
    let req = format!(
        "MESSAGE sip:bob@127.0.0.1:9 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKmf0\r\n\
         Max-Forwards: 0\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: mf0\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    );
    c.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = c
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no reply: {e}\n{}", srv.log()));
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(
        reply.starts_with("SIP/2.0 483 Too Many Hops\r\n"),
        "{reply}"
    );
}

#[test]
fn options_over_ipv6() {
    let Ok(c) = UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let port = free_port();
    let srv = Server::start(
        "ipv6",
        &proxy_cfg("forward()"),
        &[format!("udp:[::1]:{port}")],
        &[],
    );
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = c.local_addr().unwrap().port();
    let req = format!(
        "OPTIONS sip:[::1]:{port} SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{me};branch=z9hG4bK6\r\n\
         From: <sip:a@[::1]>;tag=1\r\nTo: <sip:b@[::1]>\r\n\
         Call-ID: v6\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    c.send_to(req.as_bytes(), ("::1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = c
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no reply over IPv6: {e}\n{}", srv.log()));
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
}

/// sipp UAC → ser → sipp UAS and back: INVITE (Record-Routed), 200, ACK and
/// BYE loose-routed by the Route set the UAC learnt, 200 for the BYE.
fn call_flow(tag: &str, tcp: bool) {
    call_flow_mixed(tag, tcp, tcp)
}

fn call_flow_mixed(tag: &str, tcp_in: bool, tcp_out: bool) {
    if !have_sipp() {
        return;
    }
    let port = free_port();
    let uas_port = free_port();
    let uac_port = free_port();
    let tp = |tcp: bool| if tcp { "t1" } else { "u1" };
    let (transport, uas_transport) = (tp(tcp_in), tp(tcp_out));
    let forward = if tcp_out {
        "forward_tcp()"
    } else {
        "forward()"
    };
    let listen = [
        format!("udp:127.0.0.1:{port}"),
        format!("tcp:127.0.0.1:{port}"),
    ];
    let srv = Server::start(tag, &proxy_cfg(forward), &listen, &[]);
    let csv = srv.dir.join("callees.csv");
    fs::write(&csv, format!("SEQUENTIAL\nbob;127.0.0.1:{uas_port};\n")).unwrap();
    let uas_out = srv.dir.join("uas.out");
    let mut uas_cmd = Command::new(SIPP);
    uas_cmd
        .args(["-sf", scenario("uas.xml").to_str().unwrap()])
        .args(["-i", "127.0.0.1", "-p", &uas_port.to_string()])
        .args(["-t", uas_transport, "-nostdin", "-timeout", "40s"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&uas_out).unwrap())
        .stderr(Stdio::null());
    let _uas = Guard::spawn(&mut uas_cmd);
    sleep(Duration::from_millis(300));
    let (ok, out) = sipp_uac(
        &srv.dir,
        &format!("127.0.0.1:{port}"),
        uac_port,
        &[
            "-sf",
            scenario("uac_invite.xml").to_str().unwrap(),
            "-inf",
            csv.to_str().unwrap(),
            "-t",
            transport,
            "-m",
            "50",
            "-r",
            "100",
            "-l",
            "20",
        ],
    );
    assert!(
        ok,
        "sipp call flow over {tag} failed:\n{}\nUAS:\n{}\nser:\n{}",
        tail(&out),
        tail(&fs::read_to_string(&uas_out).unwrap_or_default()),
        tail(&srv.log())
    );
}

#[test]
fn invite_ack_bye_forwarded_over_udp() {
    call_flow("udp", false);
}

#[test]
fn invite_ack_bye_forwarded_over_tcp() {
    call_flow("tcp", true);
}

/// UDP in, TCP out: a UDP receiver opens the connection; tcp main hands it
/// to a worker, which reads the UAS's replies and forwards them over UDP.
#[test]
fn invite_from_udp_forwarded_over_tcp() {
    call_flow_mixed("udp-tcp", false, true);
}

// ---- RFC 4475 torture messages, inside a network namespace ----------------

const TORTURE_ENV: &str = "SER_TORTURE_IN_NETNS";

/// Re-runs [`torture_in_netns`] inside `unshare -rn` (the messages name
/// other hosts; nothing may leave the machine).
#[test]
fn rfc4475_torture_messages() {
    let dir = shared().join("sip-torture/rfc4475");
    if !dir.join("MANIFEST.tsv").exists() || !Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipped: torture messages or unshare missing");
        return;
    }
    let me = std::env::current_exe().unwrap();
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args(["-rn"])
        .arg(&me)
        .args(["--exact", "torture_in_netns", "--ignored", "--nocapture"])
        .env(TORTURE_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.process_group(0).spawn().unwrap();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let end = Instant::now() + Duration::from_secs(120);
    while !waiter.is_finished() {
        if Instant::now() > end {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            break;
        }
        sleep(Duration::from_millis(50));
    }
    let out = waiter.join().unwrap().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("unshare failed") || (!out.status.success() && text.contains("unshare:")) {
        eprintln!("skipped: cannot create a network namespace:\n{text}");
        return;
    }
    assert!(out.status.success(), "torture run failed:\n{text}");
    assert!(text.contains("torture summary"), "{text}");
}

#[test]
#[ignore = "run by rfc4475_torture_messages inside a network namespace"]
fn torture_in_netns() {
    assert_eq!(
        std::env::var(TORTURE_ENV).as_deref(),
        Ok("1"),
        "only inside unshare -n"
    );
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(up.success(), "ip link set lo up");
    let dir = shared().join("sip-torture/rfc4475");
    let manifest = fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let port = 5070;
    let cfg = r#"
loadmodule "sl"
route {
    sl_send_reply("200", "OK");
}
"#;
    let mut srv = Server::start("torture", cfg, &[format!("udp:127.0.0.1:{port}")], &[]);
    // Replies go to the source IP and the Via port (5060 when none): listen there.
    let c = UdpSocket::bind("127.0.0.1:5060").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answered_200 = 0;
    let mut valid = 0;
    let mut summary = Vec::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, expected) = (cols[0], cols.get(2).copied().unwrap_or(""));
        let Ok(bytes) = fs::read(dir.join(file)) else {
            continue;
        };
        c.send_to(&bytes, ("127.0.0.1", port)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65535];
        while let Ok((n, _)) = c.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let code: u16 = text
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            got.push(code);
        }
        let is_request = !bytes.starts_with(b"SIP/2.0 ");
        match expected {
            "valid" => {
                valid += 1;
                assert!(!got.contains(&400), "{file}: valid but answered 400");
                if is_request && got.contains(&200) {
                    answered_200 += 1;
                }
            }
            "invalid" => {
                // 400 as a rule; 505 for a bad version is as right
                assert!(
                    got.iter().all(|c| *c == 400 || *c == 505),
                    "{file}: invalid but answered {got:?}"
                );
            }
            _ => {}
        }
        summary.push(format!("{file}\t{expected}\t{got:?}"));
        assert!(srv.alive(), "ser died on {file}:\n{}", srv.log());
    }
    // still serving
    let ping = "OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKping\r\n\
                From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: ping\r\n\
                CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    c.send_to(ping.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = c.recv_from(&mut buf).expect("server still answers");
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
    println!("{}", summary.join("\n"));
    println!("torture summary: {valid} valid messages, {answered_200} valid requests answered 200");
    assert!(answered_200 >= 8, "too few valid requests processed");
}

/// TCP in, UDP out: the UAS's replies arrive at a UDP receiver, which holds
/// no connection to the UAC (the worker does) and opens its own to the UAC's
/// Via address (sipp listens there); see `ser_children::tcp_conn`.
#[test]
fn invite_from_tcp_forwarded_over_udp() {
    call_flow_mixed("tcp-udp", true, false);
}
