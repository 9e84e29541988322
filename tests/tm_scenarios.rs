//! tm call flows with real SIP traffic: the `ser` binary as a stateful proxy
//! between sipp instances on 127.0.0.1 (UAC → ser → UAS).  Covers timer A
//! (a callee that loses the first INVITE), serial forking from a
//! failure_route, parallel forking with the losing branch cancelled, calls
//! over TCP, and a 10,000-call UDP run after which tm holds no transaction.
//! The callee scenarios live in tests/sipp/; the caller is the bench
//! scenario.  Skipped when sipp is not installed.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::proc::{free_port, Server};
use support::sipp::{
    counts, diagnostics, have_sipp, run_uac, scenario, start_uas, uas_counts, KAMCMD, UAS_BASIC,
};
use support::tmp::TmpDir;

/// The proxy config: tm with short timers, `ROUTE` as the request route
/// body and `EXTRA` (failure routes, ctl) appended.
fn proxy_cfg(listen: &str, route: &str, extra: &str) -> String {
    format!(
        r#"
debug=2
children=2
listen={listen}
loadmodule "sl"
loadmodule "tm"
modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 5000)
modparam("tm", "wt_timer", 1000)
{extra}
route {{
{route}
	exit;
}}
"#
    )
}

/// INVITEs in the callees' sipp message logs (callees send none).
fn received_invites(dir: &Path) -> usize {
    received(dir, "INVITE sip:")
}

/// Requests starting with `line` in the callees' sipp message logs.
fn received(dir: &Path, line: &str) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with(line))
                .count()
        })
        .sum()
}

#[test]
fn timer_a_retransmits_to_a_callee_that_lost_the_invite() {
    if !have_sipp() {
        return;
    }
    let dir = TmpDir::new("tmsc-timer-a");
    let (ser_port, uas_port) = (free_port(), free_port());
    let cfg = proxy_cfg(&format!("udp:127.0.0.1:{ser_port}"), "\tt_relay();", "");
    let ser = Server::launch_cfg("tmsc-timer-a-ser", &cfg).start();
    let mut uas = start_uas(
        dir.dir(),
        "uas",
        &scenario("uas_drop_first.xml"),
        uas_port,
        5,
        false,
    );
    let status = run_uac(
        dir.dir(),
        "uac",
        ser_port,
        &format!("127.0.0.1:{uas_port}"),
        5,
        &["-r", "5"],
        false,
    );
    let (ok, failed) = counts(dir.dir(), "uac");
    let (uas_ok, uas_failed) = uas_counts(&mut uas, dir.dir(), "uas");
    let invites = received_invites(dir.dir());
    assert!(
        invites >= 10,
        "timer A: the callee got {invites} INVITEs for 5 calls\n{}",
        diagnostics(dir.dir(), &ser)
    );
    assert!(
        status.success() && (ok, failed) == (5, 0) && (uas_ok, uas_failed) == (5, 0),
        "uac {status:?} {ok} ok {failed} failed; uas {uas_ok} ok {uas_failed} failed\n{}",
        diagnostics(dir.dir(), &ser)
    );
}

#[test]
fn serial_forking_from_failure_route_after_486() {
    if !have_sipp() {
        return;
    }
    let dir = TmpDir::new("tmsc-serial");
    let (ser_port, busy_port, uas2_port) = (free_port(), free_port(), free_port());
    let route = "\tif (method == \"INVITE\") t_on_failure(\"1\");\n\tt_relay();";
    let failure = format!(
        "failure_route[1] {{\n\tif (t_check_status(\"486\")) {{\n\t\t\
         rewritehostport(\"127.0.0.1:{uas2_port}\");\n\t\tt_relay();\n\t}}\n}}"
    );
    let cfg = proxy_cfg(&format!("udp:127.0.0.1:{ser_port}"), route, &failure);
    let ser = Server::launch_cfg("tmsc-serial-ser", &cfg).start();
    let mut busy = start_uas(
        dir.dir(),
        "busy",
        &scenario("uas_busy.xml"),
        busy_port,
        5,
        false,
    );
    let mut uas2 = start_uas(dir.dir(), "uas2", UAS_BASIC, uas2_port, 5, false);
    let status = run_uac(
        dir.dir(),
        "uac",
        ser_port,
        &format!("127.0.0.1:{busy_port}"),
        5,
        &["-r", "5"],
        false,
    );
    let (ok, failed) = counts(dir.dir(), "uac");
    let busy_c = uas_counts(&mut busy, dir.dir(), "busy");
    // uas2 counts a call only once ACK and BYE reached it.
    let uas2_c = uas_counts(&mut uas2, dir.dir(), "uas2");
    assert!(
        status.success() && (ok, failed) == (5, 0) && busy_c == (5, 0) && uas2_c == (5, 0),
        "uac {status:?} {ok} ok {failed} failed; busy {busy_c:?}; uas2 {uas2_c:?}\n{}",
        diagnostics(dir.dir(), &ser)
    );
}

#[test]
fn parallel_forking_cancels_the_ringing_branch() {
    if !have_sipp() {
        return;
    }
    let dir = TmpDir::new("tmsc-parallel");
    let (ser_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let route = format!(
        "\tif (method == \"INVITE\") append_branch(\"sip:x@127.0.0.1:{b_port}\");\n\tt_relay();"
    );
    let cfg = proxy_cfg(&format!("udp:127.0.0.1:{ser_port}"), &route, "");
    let ser = Server::launch_cfg("tmsc-parallel-ser", &cfg).start();
    let mut a = start_uas(
        dir.dir(),
        "a",
        &scenario("uas_answer_late.xml"),
        a_port,
        5,
        false,
    );
    let mut b = start_uas(
        dir.dir(),
        "b",
        &scenario("uas_ring_cancelled.xml"),
        b_port,
        5,
        false,
    );
    let status = run_uac(
        dir.dir(),
        "uac",
        ser_port,
        &format!("127.0.0.1:{a_port}"),
        5,
        &["-r", "5"],
        false,
    );
    let (ok, failed) = counts(dir.dir(), "uac");
    let a_c = uas_counts(&mut a, dir.dir(), "a");
    // b counts a call only after CANCEL, its 487 and the proxy's ACK.
    let b_c = uas_counts(&mut b, dir.dir(), "b");
    assert!(
        status.success() && (ok, failed) == (5, 0) && a_c == (5, 0) && b_c == (5, 0),
        "uac {status:?} {ok} ok {failed} failed; a {a_c:?}; b {b_c:?}\n{}",
        diagnostics(dir.dir(), &ser)
    );
}

/// The ringing branch's callee answers the proxy's CANCEL only after 1.2 s:
/// tm retransmits the CANCEL meanwhile (timer E), the branch still ends
/// with 487 and the proxy's ACK.
#[test]
fn cancel_is_retransmitted_to_a_callee_that_lost_it() {
    if !have_sipp() {
        return;
    }
    let dir = TmpDir::new("tmsc-cancel-retr");
    let (ser_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let route = format!(
        "\tif (method == \"INVITE\") append_branch(\"sip:x@127.0.0.1:{b_port}\");\n\tt_relay();"
    );
    // the INVITE transaction (answered by a) must outlive the late 487
    let cfg = proxy_cfg(&format!("udp:127.0.0.1:{ser_port}"), &route, "")
        .replace(r#""wt_timer", 1000"#, r#""wt_timer", 5000"#);
    let ser = Server::launch_cfg("tmsc-cancel-retr-ser", &cfg).start();
    let mut a = start_uas(
        dir.dir(),
        "a",
        &scenario("uas_answer_late.xml"),
        a_port,
        3,
        false,
    );
    let mut b = start_uas(
        dir.dir(),
        "b",
        &scenario("uas_cancel_late.xml"),
        b_port,
        3,
        false,
    );
    let status = run_uac(
        dir.dir(),
        "uac",
        ser_port,
        &format!("127.0.0.1:{a_port}"),
        3,
        &["-r", "3"],
        false,
    );
    let (ok, failed) = counts(dir.dir(), "uac");
    let a_c = uas_counts(&mut a, dir.dir(), "a");
    let b_c = uas_counts(&mut b, dir.dir(), "b");
    let cancels = received(dir.dir(), "CANCEL sip:");
    assert!(
        status.success() && (ok, failed) == (3, 0) && a_c == (3, 0) && b_c == (3, 0),
        "uac {status:?} {ok} ok {failed} failed; a {a_c:?}; b {b_c:?}\n{}",
        diagnostics(dir.dir(), &ser)
    );
    assert!(
        cancels >= 6,
        "timer E: the callee got {cancels} CANCELs for 3 calls\n{}",
        diagnostics(dir.dir(), &ser)
    );
}

#[test]
fn calls_over_tcp() {
    if !have_sipp() {
        return;
    }
    let dir = TmpDir::new("tmsc-tcp");
    let (ser_port, uas_port) = (free_port(), free_port());
    // sipp's CSV splits at ';', so the R-URI cannot carry ;transport=tcp.
    let route = format!("\tt_relay_to_tcp(\"127.0.0.1\", {uas_port});");
    let cfg = proxy_cfg(&format!("tcp:127.0.0.1:{ser_port}"), &route, "");
    let ser = Server::launch_cfg("tmsc-tcp-ser", &cfg).start();
    let mut uas = start_uas(dir.dir(), "uas", UAS_BASIC, uas_port, 200, true);
    let status = run_uac(
        dir.dir(),
        "uac",
        ser_port,
        &format!("127.0.0.1:{uas_port}"),
        200,
        &["-r", "100", "-l", "100"],
        true,
    );
    let (ok, failed) = counts(dir.dir(), "uac");
    let uas_c = uas_counts(&mut uas, dir.dir(), "uas");
    assert!(
        status.success() && (ok, failed) == (200, 0) && uas_c == (200, 0),
        "uac {status:?} {ok} ok {failed} failed; uas {uas_c:?}\n{}",
        diagnostics(dir.dir(), &ser)
    );
}

/// `current` from `kamcmd tm.stats` (None when kamcmd fails).
fn tm_current(sock: &Path) -> Option<u64> {
    let out = Command::new("timeout")
        .args(["-k", "2", "10", KAMCMD, "-s"])
        .arg(format!("unixs:{}", sock.display()))
        .arg("tm.stats")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("current:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn ten_thousand_udp_calls_leave_no_transaction() {
    if !have_sipp() {
        return;
    }
    let dir = TmpDir::new("tmsc-10k");
    let sock = dir.path("ctl.sock");
    let (ser_port, uas_port) = (free_port(), free_port());
    let ctl = format!(
        "loadmodule \"ctl\"\nmodparam(\"ctl\", \"binrpc\", \"unixs:{}\")",
        sock.display()
    );
    let cfg = proxy_cfg(&format!("udp:127.0.0.1:{ser_port}"), "\tt_relay();", &ctl);
    let ser = Server::launch_cfg("tmsc-10k-ser", &cfg).start();
    let mut uas = start_uas(dir.dir(), "uas", UAS_BASIC, uas_port, 10_000, false);
    let status = run_uac(
        dir.dir(),
        "uac",
        ser_port,
        &format!("127.0.0.1:{uas_port}"),
        10_000,
        &["-r", "500", "-l", "200"],
        false,
    );
    let (ok, failed) = counts(dir.dir(), "uac");
    // The callee's count is only informative here: its stat file may lag.
    let uas_c = uas_counts(&mut uas, dir.dir(), "uas");
    assert!(
        status.success() && (ok, failed) == (10_000, 0) && uas_c.1 == 0,
        "uac {status:?} {ok} ok {failed} failed; uas {uas_c:?}\n{}",
        diagnostics(dir.dir(), &ser)
    );
    if !Path::new(KAMCMD).exists() {
        eprintln!("kamcmd missing: tm.stats not checked");
        return;
    }
    // wt_timer is 1 s: every transaction is gone a few seconds later.
    let end = Instant::now() + Duration::from_secs(15);
    let mut current = tm_current(&sock);
    while current != Some(0) && Instant::now() < end {
        sleep(Duration::from_millis(250));
        current = tm_current(&sock);
    }
    assert_eq!(
        current,
        Some(0),
        "tm.stats current after the run\n{}",
        diagnostics(dir.dir(), &ser)
    );
}
