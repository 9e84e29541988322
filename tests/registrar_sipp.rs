//! The real `ser` binary as a registrar: sipp registers 500 unique users
//! (the bench's uac_register.xml scenario) → all 200; then requests to
//! some of them, each read by whichever UDP worker gets it, find the
//! contact another worker saved (the location table is in shm).  Skipped
//! when sipp is not installed.

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

fn scenario() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../shared/bench/scenarios/uac_register.xml"),
        PathBuf::from("/work/shared/bench/scenarios/uac_register.xml"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn have_sipp() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ser` running in the foreground; its process group is killed on drop.
struct Ser {
    child: Child,
    dir: PathBuf,
}

impl Drop for Ser {
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id()).unwrap_or(0);
        if pid > 1 {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const CFG: &str = "debug=2\nchildren=2\ndisable_tcp=yes\n\
loadmodule \"sl\"\nloadmodule \"maxfwd\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
modparam(\"usrloc\", \"db_mode\", 0)\n\
route {\n\
  if (!mf_process_maxfwd_header(\"10\")) { sl_send_reply(\"483\", \"Too Many Hops\"); exit; }\n\
  if (method==\"REGISTER\") { if (!save(\"location\")) { sl_reply_error(); } exit; }\n\
  if (lookup(\"location\")) { sl_send_reply(\"299\", \"$ru\"); exit; }\n\
  sl_send_reply(\"404\", \"Not Found\");\n\
}\n";

#[test]
fn sipp_registers_500_users_and_every_worker_finds_them() {
    let Some(scn) = scenario() else {
        eprintln!("SKIP: bench scenario uac_register.xml not found");
        return;
    };
    if !have_sipp() {
        eprintln!("SKIP: sipp not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ser-reg-sipp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ser.cfg"), CFG).unwrap();
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..500 {
        csv.push_str(&format!("user{i};127.0.0.1:5999;\n"));
    }
    fs::write(dir.join("users.csv"), csv).unwrap();
    let port = free_udp_port();
    let log = fs::File::create(dir.join("ser.log")).unwrap();
    let child = Command::new(SER)
        .args([
            "-f",
            dir.join("ser.cfg").to_str().unwrap(),
            "-l",
            &format!("udp:127.0.0.1:{port}"),
            "-n",
            "3",
        ])
        .args(["-m", "64", "-DD", "-E"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let ser = Ser {
        child,
        dir: dir.clone(),
    };
    let started = (0..250).any(|_| {
        sleep(Duration::from_millis(20));
        fs::read_to_string(ser.dir.join("ser.log")).is_ok_and(|l| l.contains("ser started"))
    });
    assert!(
        started,
        "ser did not start:\n{}",
        fs::read_to_string(dir.join("ser.log")).unwrap_or_default()
    );

    let status = Command::new("timeout")
        .args(["60", "sipp", "-sf"])
        .arg(&scn)
        .arg("-inf")
        .arg(dir.join("users.csv"))
        .args([
            "-m",
            "500",
            "-r",
            "250",
            "-i",
            "127.0.0.1",
            "-timeout",
            "40",
            "-nostdin",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "sipp: not every REGISTER got a 200 ({status})"
    );

    // Requests to registered users, from a plain UDP socket.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in [0, 1, 2, 3, 250, 499, 777] {
        let req = format!(
            "MESSAGE sip:user{i}@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-look-{i};rport\r\n\
             From: <sip:tester@127.0.0.1>;tag=t{i}\r\n\
             To: <sip:user{i}@127.0.0.1>\r\n\
             Call-ID: look-{i}@127.0.0.1\r\n\
             CSeq: 1 MESSAGE\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let mut reply = None;
        while reply.is_none() && Instant::now() < deadline {
            sock.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                reply = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        let first = reply
            .expect("a reply")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        if i < 500 {
            assert_eq!(first, format!("SIP/2.0 299 sip:user{i}@127.0.0.1:5999"));
        } else {
            assert_eq!(first, "SIP/2.0 404 Not Found");
        }
    }
}
