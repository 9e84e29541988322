//! Reliability through the real `ser` binary: a dead child is replaced
//! (`child_respawn = yes`) in the same table slot within a second and the
//! server keeps answering; a crash loop stops the server cleanly; locks a
//! dead child held are released; `child_respawn = no` keeps SER's
//! stop-everything behaviour. Every test kills what it started (Drop).

mod support;

use std::fs;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use support::proc::{alive, children_of, free_port, sigkill, wait_until, Server};
use support::tmp::TmpDir;

/// A running `ser` answering on UDP `port`.
struct Ser {
    server: Server,
    port: u16,
}

impl Ser {
    /// Starts ser with `globals` prepended to a config answering every
    /// request with 200, 2 UDP receivers, a ctl socket.
    fn start(dir: &TmpDir, globals: &str, env: &[(&str, &str)]) -> Ser {
        Ser::start_with(dir, globals, env, &[])
    }

    /// [`Ser::start`] with extra command-line arguments.
    fn start_with(dir: &TmpDir, globals: &str, env: &[(&str, &str)], extra: &[&str]) -> Ser {
        let port = free_port();
        let cfg = dir.path("ser.cfg");
        let ctl = dir.path("ser_ctl");
        fs::write(
            &cfg,
            format!(
                "debug=3\n{globals}\nloadmodule \"sl\"\nloadmodule \"ctl\"\n\
                 modparam(\"ctl\", \"binrpc\", \"unixs:{}\")\n\
                 route {{ sl_send_reply(\"200\", \"alive\"); }}\n",
                ctl.display()
            ),
        )
        .unwrap();
        let listen = format!("udp:127.0.0.1:{port}");
        let server = Server::launch(&cfg, &dir.path("stderr.log"))
            .args(["-l", &listen, "-n", "2", "-dd"])
            .args(extra)
            .envs(env)
            .start();
        Ser { server, port }
    }

    fn pid(&self) -> i32 {
        self.server.pid()
    }

    fn log_text(&self) -> String {
        self.server.log_text()
    }

    /// The pid of the process whose description contains `desc`: the
    /// newest of the initial table and the respawn lines.
    fn pid_of(&self, desc: &str) -> Option<i32> {
        let mut found = None;
        for line in self.log_text().lines() {
            if let Some((_, t)) = line.split_once("process table: ") {
                let mut it = t.splitn(4, ' ');
                let _index = it.next();
                let pid = it.next().and_then(|p| p.strip_prefix("pid="));
                let _rank = it.next();
                if it.next().is_some_and(|d| d.contains(desc)) {
                    found = pid.and_then(|p| p.parse().ok());
                }
            } else if let Some((_, t)) = line.split_once("respawned '") {
                if t.split('\'').next().is_some_and(|d| d.contains(desc)) {
                    found = t
                        .rsplit("as pid ")
                        .next()
                        .and_then(|p| p.trim().parse().ok());
                }
            }
        }
        found
    }

    /// Sends an OPTIONS; the reply's first line.
    fn options(&self, call: usize) -> Result<String, String> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let me = s.local_addr().unwrap().port();
        let port = self.port;
        let msg = format!(
            "OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKrel{call}\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n\
             Call-ID: rel-{call}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Ok(text.lines().next().unwrap_or("").to_owned())
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.server.wait_exit(limit)
    }

    /// Kills the child described by `desc` and waits (at most 1 s) for its
    /// replacement; the new pid.
    fn kill_and_expect_respawn(&self, desc: &str) -> i32 {
        let old = self
            .pid_of(desc)
            .unwrap_or_else(|| panic!("no '{desc}' in\n{}", self.log_text()));
        let t0 = Instant::now();
        sigkill(old);
        let mut new = None;
        let ok = wait_until(Duration::from_secs(1), || {
            new = self.pid_of(desc).filter(|p| *p != old && alive(*p));
            new.is_some()
        });
        assert!(
            ok,
            "no replacement for '{desc}' within 1 s:\n{}",
            self.log_text()
        );
        let new = new.unwrap_or_default();
        assert!(children_of(self.pid()).contains(&new));
        assert!(!alive(old));
        eprintln!("'{desc}': {old} -> {new} in {:?}", t0.elapsed());
        new
    }
}

fn answers(ser: &Ser, calls: std::ops::Range<usize>) {
    for call in calls {
        let r = ser.options(call);
        assert_eq!(
            r.as_deref(),
            Ok("SIP/2.0 200 alive"),
            "call {call}:\n{}",
            ser.log_text()
        );
    }
}

#[test]
fn dead_receiver_timer_and_ctl_are_replaced() {
    let dir = TmpDir::new("rel-respawn");
    let ser = Ser::start(&dir, "child_respawn=yes", &[]);
    answers(&ser, 0..4);
    let before = children_of(ser.pid()).len();
    for desc in [
        "udp receiver child=0",
        "udp receiver child=1",
        "timer",
        "ctl handler",
    ] {
        ser.kill_and_expect_respawn(desc);
        answers(&ser, 10..16);
    }
    // Same number of processes, each in its old slot.
    assert_eq!(children_of(ser.pid()).len(), before);
    // The replacement ctl process serves the same socket.
    let out = Command::new("/usr/sbin/kamcmd")
        .arg("-s")
        .arg(format!("unixs:{}", dir.path("ser_ctl").display()))
        .arg("core.ps")
        .output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        let ctl = ser.pid_of("ctl handler").unwrap();
        assert!(text.contains(&ctl.to_string()), "{text}");
    }
    let log = ser.log_text();
    assert!(log.contains("exited by a signal 9"), "{log}");
    assert!(!log.contains("terminating due to SIGCHLD"), "{log}");
}

#[test]
fn a_crash_loop_stops_the_server_cleanly() {
    let dir = TmpDir::new("rel-loop");
    let mut ser = Ser::start(&dir, "child_respawn=yes", &[]);
    // 5 deaths within 10 s are tolerated, the 6th stops the server.
    for _ in 0..5 {
        ser.kill_and_expect_respawn("udp receiver child=0");
    }
    answers(&ser, 0..2);
    let main = ser.pid();
    sigkill(ser.pid_of("udp receiver child=0").unwrap());
    let code = ser.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(1), "{}", ser.log_text());
    let log = ser.log_text();
    assert!(
        log.contains("child 'udp receiver child=0 sock=127.0.0.1:")
            && log.contains("died 6 times within 10 s (crash loop): shutting down"),
        "{log}"
    );
    assert!(children_of(main).is_empty(), "{log}");
}

#[test]
fn without_respawn_a_dead_child_stops_the_server() {
    let dir = TmpDir::new("rel-norespawn");
    let mut ser = Ser::start(&dir, "child_respawn=no", &[]);
    let main = ser.pid();
    sigkill(ser.pid_of("timer").unwrap());
    assert_eq!(ser.wait_exit(Duration::from_secs(5)), Some(1));
    let log = ser.log_text();
    assert!(log.contains("terminating due to SIGCHLD"), "{log}");
    assert!(!log.contains("respawned"), "{log}");
    assert!(children_of(main).is_empty());
}

/// Debug builds only (the hook is compiled out of release builds).
#[test]
fn a_lock_held_by_a_dead_child_is_released() {
    if !cfg!(debug_assertions) {
        return;
    }
    let dir = TmpDir::new("rel-lock");
    let ser = Ser::start(
        &dir,
        "child_respawn=yes",
        &[("SER_TEST_DIE_HOLDING_LOCK", "udp receiver child=1")],
    );
    assert!(wait_until(Duration::from_secs(2), || ser
        .log_text()
        .contains("holding the test hook lock until killed")));
    ser.kill_and_expect_respawn("udp receiver child=1");
    let log = ser.log_text();
    assert!(
        log.contains("died holding the test hook lock #0: released it"),
        "{log}"
    );
    assert!(
        log.contains("shared memory check passed after lock recovery"),
        "{log}"
    );
    answers(&ser, 0..4);
}

/// One OPTIONS over a new TCP connection; the reply's first line.
fn tcp_options(port: u16, call: usize) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let me = c.local_addr().map_err(|e| e.to_string())?.port();
    let msg = format!(
        "OPTIONS sip:x@127.0.0.1:{port};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:{me};branch=z9hG4bKtcp{call}\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n\
         Call-ID: reltcp-{call}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    c.write_all(msg.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[test]
fn dead_tcp_main_and_tcp_worker_are_replaced() {
    let dir = TmpDir::new("rel-tcp");
    let tcp_port = free_port();
    let listen = format!("tcp:127.0.0.1:{tcp_port}");
    let ser = Ser::start_with(&dir, "child_respawn=yes", &[], &["-l", &listen, "-N", "1"]);
    let ok = |call| {
        assert_eq!(
            tcp_options(tcp_port, call).as_deref(),
            Ok("SIP/2.0 200 alive"),
            "{}",
            ser.log_text()
        )
    };
    ok(0);
    ser.kill_and_expect_respawn("tcp receiver");
    ok(1);
    ser.kill_and_expect_respawn("tcp main");
    ok(2);
    answers(&ser, 0..2);
}
