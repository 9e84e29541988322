//! tm with real SIP traffic: the `ser` binary as a stateful proxy between two
//! sipp instances on 127.0.0.1 (UAC → ser → UAS): 1000 INVITE/200/ACK/BYE
//! calls, none may fail; then a callee that never answers must give the
//! caller a 408 from tm's fr_timer.  Skipped when sipp is not installed.

mod support;

use std::path::Path;

use support::proc::{free_port, Server};
use support::sipp::{counts, have_sipp, run_uac, sipp, start_uas, UAS_BASIC};
use support::tmp::TmpDir;

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

fn start_ser(port: u16) -> Server {
    Server::launch_cfg("tm-sipp", CFG)
        .args([
            "-l",
            &format!("udp:127.0.0.1:{port}"),
            "-n",
            "2",
            "-m",
            "64",
        ])
        .start()
}

/// A caller running scenario `xml` (`calls` calls at that rate) against
/// sip:bob@`target` through ser; its exit status and counts.
fn uac(
    dir: &Path,
    tag: &str,
    xml: &Path,
    ser_port: u16,
    target: u16,
    calls: u32,
) -> (bool, u64, u64) {
    let csv = dir.join(format!("{tag}-users.csv"));
    std::fs::write(&csv, format!("SEQUENTIAL\nbob;127.0.0.1:{target};\n")).unwrap();
    let calls = calls.to_string();
    let status = sipp(
        dir,
        tag,
        90,
        &[
            &format!("127.0.0.1:{ser_port}"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-sf",
            xml.to_str().unwrap(),
            "-inf",
            csv.to_str().unwrap(),
            "-m",
            &calls,
            "-r",
            &calls,
        ],
    )
    .status()
    .expect("run sipp uac");
    let (ok, failed) = counts(dir, tag);
    (status.success(), ok, failed)
}

#[test]
fn sipp_calls_through_tm() {
    if !have_sipp() {
        return;
    }
    let tmp = TmpDir::new("tm-sipp");
    let dir = tmp.dir();
    let ser_port = free_port();
    let ser = start_ser(ser_port);
    let uas_port = free_port();
    let _uas = start_uas(dir, "uas", UAS_BASIC, uas_port, 1000, false);
    let target = format!("127.0.0.1:{uas_port}");
    let status = run_uac(
        dir,
        "uac",
        ser_port,
        &target,
        1000,
        &["-r", "250", "-l", "200"],
        false,
    );
    let (ok, failed) = counts(dir, "uac");
    assert!(
        status.success() && ok == 1000 && failed == 0,
        "sipp: {status:?}, {ok} successful, {failed} failed; ser log: {}",
        ser.log_text()
    );

    // A callee that never answers: tm's fr_timer (2 s) answers 408.
    let silent = dir.join("silent_uac.xml");
    std::fs::write(&silent, SILENT_UAC).unwrap();
    let dead_port = free_port(); // nobody listens there
    let (done, ok, failed) = uac(dir, "noanswer", &silent, ser_port, dead_port, 3);
    assert!(
        done && ok == 3 && failed == 0,
        "408 scenario: {ok} ok, {failed} failed"
    );

    // CANCEL: the callee rings and ignores the CANCEL we pass on; the caller
    // gets 200 for its CANCEL, then 487 when fr_inv_timer ends the branch.
    let uas_xml = dir.join("ringing_uas.xml");
    std::fs::write(&uas_xml, RINGING_UAS).unwrap();
    let uac_xml = dir.join("cancel_uac.xml");
    std::fs::write(&uac_xml, CANCEL_UAC).unwrap();
    let ring_port = free_port();
    let _ringing = start_uas(
        dir,
        "ringing",
        uas_xml.to_str().unwrap(),
        ring_port,
        5,
        false,
    );
    let (done, ok, failed) = uac(dir, "cancel", &uac_xml, ser_port, ring_port, 5);
    assert!(
        done && ok == 5 && failed == 0,
        "CANCEL scenario: {ok} ok, {failed} failed"
    );
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
