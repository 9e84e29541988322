//! tm with real SIP traffic: the `ser` binary as a stateful proxy between two
//! sipp instances on 127.0.0.1 (UAC → ser → UAS): 1000 INVITE/200/ACK/BYE
//! calls, none may fail; then a callee that never answers must give the
//! caller a 408 from tm's fr_timer.  Skipped when sipp is not installed.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SIPP: &str = "/usr/bin/sipp";
const SCENARIOS: &str = "/work/shared/bench/scenarios";

/// A process stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(15070)
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ser-tm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const CFG: &str = r#"
debug=2
children=2
disable_tcp=yes
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "maxfwd.so"
modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 3000)
modparam("tm", "wt_timer", 1000)
route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
"#;

fn start_ser(dir: &Path, port: u16) -> Proc {
    let cfg = dir.join("proxy.cfg");
    std::fs::write(&cfg, CFG).unwrap();
    let log = std::fs::File::create(dir.join("ser.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ser"))
        .arg("-f")
        .arg(&cfg)
        .args([
            "-l",
            &format!("udp:127.0.0.1:{port}"),
            "-n",
            "2",
            "-m",
            "64",
            "-DD",
            "-E",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ser");
    let p = Proc(child);
    // Wait until the port is bound (bind fails while ser holds it).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "ser did not bind 127.0.0.1:{port}; log: {}",
        std::fs::read_to_string(dir.join("ser.log")).unwrap_or_default()
    );
}

fn sipp(dir: &Path, tag: &str, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", "90", SIPP]).args(args).args([
        "-nostdin",
        "-timeout",
        "60",
        "-trace_stat",
        "-stf",
    ]);
    c.arg(dir.join(format!("{tag}.csv")));
    // The error log (-trace_err) lands in `dir`, kept when an assertion fails.
    c.arg("-trace_err").current_dir(dir);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Successful and failed call counts from the last line of a sipp stat file.
fn counts(dir: &Path, tag: &str) -> (u64, u64) {
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

#[test]
fn sipp_calls_through_tm() {
    if !Path::new(SIPP).exists() || !Path::new(SCENARIOS).exists() {
        eprintln!("sipp or the bench scenarios are missing: skipped");
        return;
    }
    let dir = scratch("sipp");
    let (ser_port, uas_port, uac_port) = (free_port(), free_port(), free_port());
    let _ser = start_ser(&dir, ser_port);
    let uas = sipp(
        &dir,
        "uas",
        &[
            "-sf",
            &format!("{SCENARIOS}/uas.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
        ],
    )
    .spawn()
    .expect("start sipp uas");
    let _uas = Proc(uas);
    std::thread::sleep(Duration::from_millis(300));
    let csv = dir.join("users.csv");
    std::fs::write(&csv, format!("SEQUENTIAL\nbob;127.0.0.1:{uas_port};\n")).unwrap();
    let status = sipp(
        &dir,
        "uac",
        &[
            &format!("127.0.0.1:{ser_port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &uac_port.to_string(),
            "-sf",
            &format!("{SCENARIOS}/uac_invite.xml"),
            "-inf",
            csv.to_str().unwrap(),
            "-m",
            "1000",
            "-r",
            "250",
            "-l",
            "200",
        ],
    )
    .status()
    .expect("run sipp uac");
    let (ok, failed) = counts(&dir, "uac");
    assert!(
        status.success() && ok == 1000 && failed == 0,
        "sipp: {status:?}, {ok} successful, {failed} failed; ser log: {}",
        std::fs::read_to_string(dir.join("ser.log")).unwrap_or_default()
    );

    // A callee that never answers: tm's fr_timer (2 s) answers 408.
    let silent = dir.join("silent_uac.xml");
    std::fs::write(&silent, SILENT_UAC).unwrap();
    let dead_port = free_port(); // nobody listens there
    std::fs::write(&csv, format!("SEQUENTIAL\nbob;127.0.0.1:{dead_port};\n")).unwrap();
    let status = sipp(
        &dir,
        "noanswer",
        &[
            &format!("127.0.0.1:{ser_port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-sf",
            silent.to_str().unwrap(),
            "-inf",
            csv.to_str().unwrap(),
            "-m",
            "3",
            "-r",
            "3",
        ],
    )
    .status()
    .expect("run sipp uac");
    let (ok, failed) = counts(&dir, "noanswer");
    assert!(
        status.success() && ok == 3 && failed == 0,
        "408 scenario: {status:?}, {ok} ok, {failed} failed"
    );

    // CANCEL: the callee rings and ignores the CANCEL we pass on; the caller
    // gets 200 for its CANCEL, then 487 when fr_inv_timer ends the branch.
    let uas_xml = dir.join("ringing_uas.xml");
    std::fs::write(&uas_xml, RINGING_UAS).unwrap();
    let uac_xml = dir.join("cancel_uac.xml");
    std::fs::write(&uac_xml, CANCEL_UAC).unwrap();
    let ring_port = free_port();
    let ringing = sipp(
        &dir,
        "ringing",
        &[
            "-sf",
            uas_xml.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &ring_port.to_string(),
        ],
    )
    .spawn()
    .expect("start ringing uas");
    let _ringing = Proc(ringing);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&csv, format!("SEQUENTIAL\nbob;127.0.0.1:{ring_port};\n")).unwrap();
    let status = sipp(
        &dir,
        "cancel",
        &[
            &format!("127.0.0.1:{ser_port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-sf",
            uac_xml.to_str().unwrap(),
            "-inf",
            csv.to_str().unwrap(),
            "-m",
            "5",
            "-r",
            "5",
        ],
    )
    .status()
    .expect("run sipp uac");
    let (ok, failed) = counts(&dir, "cancel");
    assert!(
        status.success() && ok == 5 && failed == 0,
        "CANCEL scenario: {status:?}, {ok} ok, {failed} failed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Callee that rings, answers the CANCEL with 200 and never sends 487.
const RINGING_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ringing uas">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// Caller that cancels after the 180 and expects 200 (CANCEL) and 487 (INVITE).
const CANCEL_UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="cancel uac">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[field0]@[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[field1]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send>
    <![CDATA[

      CANCEL sip:[field0]@[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[field1]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[

      ACK sip:[field0]@[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-6]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[field1]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// INVITE to a host that never answers: expects 100 then 408 from the proxy, ACKs it.
const SILENT_UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="tm fr_timer 408">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[field0]@[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[field1]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="408"/>
  <send>
    <![CDATA[

      ACK sip:[field0]@[field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[field1]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;
