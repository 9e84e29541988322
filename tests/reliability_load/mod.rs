//! What the reliability load tests (`reliability_kill`, `reliability_soak`)
//! share: a stateful ser (usrloc + registrar + tm's `t_relay`, a ctl
//! socket), sipp callers/callees/registrars around it, and the readings
//! taken from it (kamcmd RPCs, /proc).

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::proc::{free_port, free_udp_port, Group, Server};
use crate::support::tmp::TmpDir;

use crate::support::sipp::{KAMCMD, SIPP};

const SCENARIOS: &str = "/work/shared/bench/scenarios";

/// Whether sipp, kamcmd and the bench scenarios are installed (else the
/// test is skipped, saying so).
pub fn have_tools() -> bool {
    let ok = [SIPP, KAMCMD, SCENARIOS]
        .iter()
        .all(|p| Path::new(p).exists());
    if !ok {
        eprintln!("sipp, kamcmd or the bench scenarios are missing: skipped");
    }
    ok
}

/// Registrar and stateful proxy: REGISTER → `save`, OPTIONS → 200,
/// everything else → `t_relay` to the R-URI (the sipp callee).
const CFG: &str = r#"
debug=2
child_respawn=yes
loadmodule "sl"
loadmodule "tm"
loadmodule "maxfwd"
loadmodule "usrloc"
loadmodule "registrar"
loadmodule "ctl"
modparam("ctl", "binrpc", "unixs:CTL")
modparam("tm", "fr_timer", 3000)
modparam("tm", "fr_inv_timer", 5000)
modparam("tm", "wt_timer", 1000)
route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (method == "REGISTER") {
		if (!save("location")) { sl_reply_error(); }
		exit;
	}
	if (method == "OPTIONS") {
		sl_send_reply("200", "alive");
		exit;
	}
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
"#;

/// A running ser with its ports and scratch directory.
pub struct Proxy {
    pub server: Server,
    pub dir: TmpDir,
    pub udp: u16,
    pub tcp: u16,
}

impl Proxy {
    /// ser with 4 UDP receivers, 2 TCP workers, `mb` MB of shm and `env`.
    pub fn start(tag: &str, mb: u32, env: &[(&str, &str)]) -> Proxy {
        let dir = TmpDir::new(tag);
        let cfg = dir.path("ser.cfg");
        let ctl = dir.path("ctl");
        fs::write(&cfg, CFG.replace("CTL", &ctl.display().to_string())).unwrap();
        let (udp, tcp) = (free_udp_port(), free_port());
        let server = Server::launch(&cfg, &dir.path("ser.log"))
            .args(["-l", &format!("udp:127.0.0.1:{udp}")])
            .args(["-l", &format!("tcp:127.0.0.1:{tcp}")])
            .args(["-n", "4", "-N", "2", "-m", &mb.to_string()])
            .envs(env)
            .start();
        Proxy {
            server,
            dir,
            udp,
            tcp,
        }
    }

    /// `kamcmd <args>` on the ctl socket: its stdout, or why it failed.
    pub fn rpc(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("timeout")
            .args(["10", KAMCMD, "-s"])
            .arg(format!("unixs:{}", self.dir.path("ctl").display()))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kamcmd {args:?}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `used` bytes from `core.shmmem`.
    pub fn shm_used(&self) -> u64 {
        let text = self.rpc(&["core.shmmem"]).unwrap_or_default();
        rpc_field(&text, "used").unwrap_or(0)
    }

    /// Every pid `core.psx` lists.
    pub fn pids(&self) -> Vec<i32> {
        let text = self.rpc(&["core.psx"]).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("PID:"))
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    }

    /// OPTIONS to the UDP port `n` times; how many got the 200.
    pub fn options_answered(&self, n: usize) -> usize {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let me = s.local_addr().unwrap().port();
        let mut ok = 0;
        let mut buf = [0u8; 4096];
        for i in 0..n {
            let msg = format!(
                "OPTIONS sip:ping@127.0.0.1:{} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKping{i}\r\n\
                 From: <sip:t@127.0.0.1>;tag=p{i}\r\nTo: <sip:ping@127.0.0.1>\r\n\
                 Call-ID: ping-{i}-{me}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n",
                self.udp
            );
            s.send_to(msg.as_bytes(), ("127.0.0.1", self.udp)).unwrap();
            if let Ok(len) = s.recv(&mut buf) {
                ok += usize::from(buf[..len].starts_with(b"SIP/2.0 200"));
            }
        }
        ok
    }
}

/// The number after `name:` in kamcmd's text output.
pub fn rpc_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .find(|(k, _)| k.trim() == name)
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// [`crate::support::sipp::sipp`] with large socket buffers: at thousands
/// of calls/s sipp's default ones overflow (lost datagrams, then ser's sends
/// fail with EAGAIN).
pub fn sipp(dir: &Path, tag: &str, limit_s: u64, args: &[&str]) -> Command {
    let limit_s = u32::try_from(limit_s).unwrap_or(u32::MAX);
    let mut c = crate::support::sipp::sipp(dir, tag, limit_s, args);
    c.args(["-buff_size", "4194304"]);
    c
}

/// The callee: answers every INVITE with 200 and the BYE with 200.
pub fn start_uas(dir: &Path, port: u16, limit_s: u64) -> Group {
    let xml = format!("{SCENARIOS}/uas.xml");
    let port = port.to_string();
    let args = ["-sf", &xml, "-i", "127.0.0.1", "-p", &port];
    let g = Group::spawn(&mut sipp(dir, "uas", limit_s, &args)).expect("start sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    g
}

/// A caller making `calls` INVITE/ACK/BYE calls to the callee through ser
/// at `rate` calls/s; started, not waited for.
pub fn start_calls(p: &Proxy, uas_port: u16, calls: u64, rate: u64, limit_s: u64) -> Group {
    let csv = inf(
        p.dir.path("callee.csv"),
        |_| format!("bob;127.0.0.1:{uas_port};"),
        1,
    );
    let args = caller_args(p, "uac_invite.xml", &csv, calls, rate);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Group::spawn(&mut sipp(p.dir.dir(), "calls", limit_s, &args)).expect("start sipp uac")
}

/// A registrar load: one REGISTER for each of `users` users `user0000`…
/// at `rate`/s; started, not waited for.
pub fn start_registers(p: &Proxy, users: usize, rate: u64, limit_s: u64) -> Group {
    let csv = inf(
        p.dir.path("users.csv"),
        |i| format!("{};127.0.0.1:5099;", user(i)),
        users,
    );
    let args = caller_args(p, "uac_register.xml", &csv, users as u64, rate);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Group::spawn(&mut sipp(p.dir.dir(), "registers", limit_s, &args)).expect("start sipp registers")
}

/// The AOR of user `i` of [`start_registers`].
pub fn user(i: usize) -> String {
    format!("user{i:04}")
}

fn inf(path: PathBuf, line: impl Fn(usize) -> String, n: usize) -> PathBuf {
    let mut text = String::from("SEQUENTIAL\n");
    for i in 0..n {
        text.push_str(&line(i));
        text.push('\n');
    }
    fs::write(&path, text).unwrap();
    path
}

fn caller_args(p: &Proxy, xml: &str, csv: &Path, calls: u64, rate: u64) -> Vec<String> {
    [
        format!("127.0.0.1:{}", p.udp),
        "-sf".into(),
        format!("{SCENARIOS}/{xml}"),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_udp_port().to_string(),
        "-inf".into(),
        csv.display().to_string(),
        "-m".into(),
        calls.to_string(),
        "-r".into(),
        rate.to_string(),
        "-l".into(),
        (rate * 4).max(50).to_string(),
    ]
    .into()
}

/// VmRSS of `pid` in kB (0 if it is gone).
pub fn rss_kb(pid: i32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// RssAnon of `pid` in kB: its private memory. VmRSS also counts the
/// pages of the shm segment the process has touched, which grow towards
/// the segment's size as allocations move around it; a leak shows here.
pub fn private_kb(pid: i32) -> u64 {
    status_kb(pid, "RssAnon:")
}

fn status_kb(pid: i32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// sipp's error files and the tail of ser's log, for a failing assertion.
pub fn diagnostics(p: &Proxy) -> String {
    let mut out = String::new();
    if let Ok(rd) = fs::read_dir(p.dir.dir()) {
        for e in rd.flatten() {
            let name = e.path().display().to_string();
            if name.contains("_errors") {
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                let head: String = text.chars().take(2000).collect();
                out.push_str(&format!("--- {name}\n{head}\n"));
            }
        }
    }
    let log = p.server.log_text();
    let start = log.len().saturating_sub(6000);
    out.push_str(&format!(
        "--- ser log (tail)\n{}",
        log.get(start..).unwrap_or("")
    ));
    out
}
