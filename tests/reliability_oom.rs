//! Shared-memory exhaustion through the real `ser` binary: with `-m 1` a
//! REGISTER flood of distinct AORs fills usrloc, after which every save is
//! answered 500 (no crash, no dead child), and tm's transaction creation
//! fails the same way.

use std::collections::BTreeMap;
use std::fs;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

const SER: &str = env!("CARGO_BIN_EXE_ser");

struct Ser {
    child: Child,
    dir: PathBuf,
}

impl Drop for Ser {
    fn drop(&mut self) {
        let main = self.child.id() as i32;
        if main > 1 {
            let _ = killpg(Pid::from_raw(main), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Ser {
    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

fn start(cfg: &str, tag: &str) -> (Ser, u16) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("ser-oom-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ser.cfg"), cfg).unwrap();
    let child = Command::new(SER)
        .arg("-f")
        .arg(dir.join("ser.cfg"))
        .args([
            "-l",
            &format!("udp:127.0.0.1:{port}"),
            "-n",
            "2",
            "-m",
            "1",
            "-E",
            "-DD",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let ser = Ser { child, dir };
    let end = Instant::now() + Duration::from_secs(10);
    while !ser.log().contains("ser started") {
        assert!(Instant::now() < end, "ser did not start:\n{}", ser.log());
        sleep(Duration::from_millis(20));
    }
    (ser, port)
}

const CFG: &str = "debug=2\nloadmodule \"sl\"\nloadmodule \"tm\"\n\
    loadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
    route {\n  if (method == \"REGISTER\") {\n    if (!save(\"location\")) { sl_reply_error(); }\n    exit;\n  }\n\
    if (!t_relay()) { sl_reply_error(); }\n}\n";

/// Sends `n` requests made by `make` one at a time; counts the final
/// status codes (0 = no final reply within 300 ms).
fn flood(port: u16, n: usize, make: impl Fn(u16, usize) -> String) -> BTreeMap<u16, usize> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let me = s.local_addr().unwrap().port();
    let mut codes = BTreeMap::new();
    let mut buf = [0u8; 4096];
    for i in 0..n {
        s.send_to(make(me, i).as_bytes(), ("127.0.0.1", port))
            .unwrap();
        let code = loop {
            let Ok(len) = s.recv(&mut buf) else { break 0 };
            let text = String::from_utf8_lossy(&buf[..len]);
            let code: u16 = text
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            if code >= 200 {
                break code;
            }
        };
        *codes.entry(code).or_insert(0) += 1;
    }
    codes
}

fn children_alive(ser: &Ser, want: usize) -> bool {
    let main = ser.child.id();
    let Ok(text) = fs::read_to_string(format!("/proc/{main}/task/{main}/children")) else {
        return false;
    };
    text.split_whitespace().count() == want
}

#[test]
fn register_flood_on_one_megabyte_gets_500_not_a_crash() {
    let (mut ser, port) = start(CFG, "reg");
    let pad = "x".repeat(200);
    let codes = flood(port, 3000, |me, i| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKoom{i}\r\n\
             From: <sip:user{i}@127.0.0.1>;tag={i}\r\nTo: <sip:user{i}@127.0.0.1>\r\n\
             Call-ID: oom{i}\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:user{i}@127.0.0.1:5555;p={pad}>;expires=3600\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    });
    let log = ser.log();
    assert!(
        codes.get(&200).copied().unwrap_or(0) > 100,
        "{codes:?}\n{log}"
    );
    assert!(
        codes.get(&500).copied().unwrap_or(0) > 100,
        "{codes:?}\n{log}"
    );
    assert_eq!(codes.get(&0), None, "unanswered: {codes:?}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("out of shared memory"), "{log}");
    // main + 2 receivers + timer, all still there.
    assert!(children_alive(&ser, 3), "{log}");
    assert!(ser.child.try_wait().unwrap().is_none());
}

#[test]
fn invite_flood_on_one_megabyte_gets_500_not_a_crash() {
    let (mut ser, port) = start(CFG, "tm");
    // Nobody listens on the destination: transactions stay until fr_timer.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pad = "x".repeat(300);
    let codes = flood(port, 700, |me, i| {
        format!(
            "INVITE sip:bob@127.0.0.1:{dead} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKtm{i}\r\n\
             From: <sip:a@127.0.0.1>;tag={i}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: tm{i}-{pad}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    });
    let log = ser.log();
    assert!(
        codes.get(&500).copied().unwrap_or(0) > 100,
        "{codes:?}\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(children_alive(&ser, 3), "{log}");
    assert!(ser.child.try_wait().unwrap().is_none());
}
