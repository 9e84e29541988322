//! sipp, the real SIP peer of the integration tests: paths of the binary and
//! the scenarios, callers and callees started with bounded run times, and
//! their statistics files read back.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::Duration;

use super::proc::{free_port, Group, Server};

pub const SIPP: &str = "/usr/bin/sipp";
pub const KAMCMD: &str = "/usr/sbin/kamcmd";
pub const UAC_INVITE: &str = "/work/shared/bench/scenarios/uac_invite.xml";
pub const UAS_BASIC: &str = "/work/shared/bench/scenarios/uas.xml";

pub fn have_sipp() -> bool {
    let ok = Path::new(SIPP).exists() && Path::new(UAC_INVITE).exists();
    if !ok {
        eprintln!("sipp or the bench scenarios are missing: skipped");
    }
    ok
}

/// A callee scenario of ours (tests/sipp/NAME).
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
        .display()
        .to_string()
}

/// A sipp run writing its statistics to `<tag>.csv` and errors into `dir`.
pub fn sipp(dir: &Path, tag: &str, limit_s: u32, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &limit_s.to_string(), SIPP])
        .args(args)
        .args(["-nostdin", "-timeout", &limit_s.to_string(), "-trace_stat"])
        .args(["-fd", "1", "-trace_err", "-stf"])
        .arg(dir.join(format!("{tag}.csv")))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A callee: sipp `-sf xml` on 127.0.0.1:`port`, ending after `calls`.
pub fn start_uas(dir: &Path, tag: &str, xml: &str, port: u16, calls: u32, tcp: bool) -> Group {
    let port = port.to_string();
    let calls = calls.to_string();
    let mut args = vec!["-sf", xml, "-i", "127.0.0.1", "-p", &port, "-m", &calls];
    if calls.len() < 3 {
        // Few calls: log the messages received, to count retransmissions.
        args.push("-trace_msg");
    }
    if tcp {
        args.extend(["-t", "t1"]);
    }
    let g = Group::spawn(&mut sipp(dir, tag, 120, &args)).expect("start sipp uas");
    sleep(Duration::from_millis(300));
    g
}

/// The caller: `calls` INVITE/200/ACK/BYE calls to sip:bob@`target` via ser.
pub fn run_uac(
    dir: &Path,
    tag: &str,
    ser_port: u16,
    target: &str,
    calls: u32,
    rate: &[&str],
    tcp: bool,
) -> ExitStatus {
    let csv = dir.join(format!("{tag}-users.csv"));
    std::fs::write(&csv, format!("SEQUENTIAL\nbob;{target};\n")).unwrap();
    let (proxy, port, calls) = (
        format!("127.0.0.1:{ser_port}"),
        free_port().to_string(),
        calls.to_string(),
    );
    let mut args = vec![
        proxy.as_str(),
        "-sf",
        UAC_INVITE,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-inf",
        csv.to_str().unwrap(),
        "-m",
        &calls,
    ];
    args.extend(rate);
    if tcp {
        args.extend(["-t", "t1"]);
    }
    sipp(dir, tag, 120, &args).status().expect("run sipp uac")
}

/// Successful and failed call counts from the last line of a stat file.
pub fn counts(dir: &Path, tag: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(dir.join(format!("{tag}.csv"))).unwrap_or_default();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or("").split(';').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (col("SuccessfulCall(C)"), col("FailedCall(C)"))
}

/// Waits (bounded) for a callee to finish its calls; its counts.
pub fn uas_counts(uas: &mut Group, dir: &Path, tag: &str) -> (u64, u64) {
    uas.wait_exit(Duration::from_secs(15));
    counts(dir, tag)
}

/// Everything sipp and ser said, for a failing assertion.
pub fn diagnostics(dir: &Path, ser: &Server) -> String {
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let name = p.display().to_string();
            if name.contains("_errors") || name.ends_with(".log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: String = text.chars().take(3000).collect();
                out.push_str(&format!("--- {name}\n{tail}\n"));
            }
        }
    }
    let log = ser.log_text();
    let start = log.len().saturating_sub(4000);
    out.push_str(&format!(
        "--- ser log (tail)\n{}",
        log.get(start..).unwrap_or("")
    ));
    out
}
