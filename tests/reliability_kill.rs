//! `kill -9` under load (issue 10): sipp REGISTER and call load through a
//! stateful ser (usrloc + tm `t_relay`) while each kind of child is killed
//! in turn — a UDP receiver, a TCP worker, the timer, the ctl process — and
//! one UDP receiver is killed while it holds a usrloc bucket lock (debug
//! builds: the `SER_TEST_HOLD_USRLOC_LOCK` hook in modules/usrloc/store.rs
//! makes it sleep there). Afterwards: under 1 % failed calls, every
//! registration found by `ul.dump`, every process of `core.psx` alive and
//! the server answering. Skipped without sipp/kamcmd.

mod reliability_load;
mod support;

use std::time::{Duration, Instant};

use reliability_load::{
    diagnostics, have_tools, start_calls, start_registers, start_uas, user, Proxy,
};
use support::proc::{alive, free_udp_port, sigkill, wait_until};
use support::sipp::counts;

/// The pid of the newest process `core.psx` describes with `desc`.
fn pid_of(p: &Proxy, desc: &str) -> Option<i32> {
    let text = p.rpc(&["core.psx"]).ok()?;
    let mut pid = None;
    let mut found = None;
    for l in text.lines().map(str::trim) {
        if let Some(v) = l.strip_prefix("PID:") {
            pid = v.trim().parse().ok();
        } else if let Some(d) = l.strip_prefix("DSC:") {
            if d.contains(desc) {
                found = pid;
            }
        }
    }
    found
}

/// Kills the child described by `desc` and waits (5 s at most) for its
/// replacement to show up in `core.psx`.
fn kill_and_wait_respawn(p: &Proxy, desc: &str) {
    let old = pid_of(p, desc).unwrap_or_else(|| panic!("no '{desc}':\n{}", diagnostics(p)));
    sigkill(old);
    let ok = wait_until(Duration::from_secs(5), || {
        pid_of(p, desc).is_some_and(|new| new != old && alive(new))
    });
    assert!(ok, "'{desc}' ({old}) not replaced:\n{}", diagnostics(p));
    eprintln!("killed '{desc}' ({old}), replaced");
}

#[test]
fn kill_each_child_kind_under_sipp_load() {
    if !have_tools() {
        return;
    }
    let hold_user = user(150);
    let marker = std::env::temp_dir().join(format!("ser-rel-kill-{}.held", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let hook = format!("{hold_user}:{}", marker.display());
    let p = Proxy::start("rel-kill", 64, &[("SER_TEST_HOLD_USRLOC_LOCK", &hook)]);
    let uas_port = free_udp_port();
    let _uas = start_uas(p.dir.dir(), uas_port, 120);
    const CALLS: u64 = 1200;
    const USERS: usize = 300;
    let mut calls = start_calls(&p, uas_port, CALLS, 40, 100);
    let mut regs = start_registers(&p, USERS, 15, 100);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    for desc in [
        "udp receiver child=0",
        "tcp receiver",
        "timer",
        "ctl handler",
    ] {
        kill_and_wait_respawn(&p, desc);
        std::thread::sleep(Duration::from_secs(2));
    }
    // The lock hook fires when user0150 registers (about 10 s in).
    if cfg!(debug_assertions) {
        let mut holder = None;
        let ok = wait_until(Duration::from_secs(30), || {
            holder = p
                .server
                .log_text()
                .lines()
                .find(|l| l.contains("holding the usrloc bucket lock"))
                .and_then(|l| l.split("pid ").nth(1)?.split(':').next()?.parse().ok());
            holder.is_some()
        });
        assert!(ok, "the lock hook did not fire:\n{}", diagnostics(&p));
        let holder: i32 = holder.unwrap_or_default();
        std::thread::sleep(Duration::from_millis(300));
        sigkill(holder);
        eprintln!("killed {holder} holding a usrloc bucket lock");
        assert!(wait_until(Duration::from_secs(5), || !alive(holder)));
    }
    let done = |g: &mut support::proc::Group| g.wait_exit(Duration::from_secs(90));
    let calls_exit = done(&mut calls);
    let regs_exit = done(&mut regs);
    eprintln!("load ran {:?}", t0.elapsed());
    let (ok, failed) = counts(p.dir.dir(), "calls");
    let (reg_ok, reg_failed) = counts(p.dir.dir(), "registers");
    eprintln!("calls: {ok} ok, {failed} failed; registers: {reg_ok} ok, {reg_failed} failed");
    assert!(
        ok + failed == CALLS && failed * 100 < CALLS,
        "calls {ok} ok {failed} failed (sipp {calls_exit:?}):\n{}",
        diagnostics(&p)
    );
    assert!(
        reg_ok == USERS as u64 && reg_failed == 0,
        "registers {reg_ok} ok {reg_failed} failed (sipp {regs_exit:?}):\n{}",
        diagnostics(&p)
    );
    // Every registration is still there.
    let dump = p.rpc(&["ul.dump"]).unwrap_or_else(|e| panic!("{e}"));
    let missing: Vec<String> = (0..USERS)
        .map(user)
        .filter(|u| !dump.contains(&format!("{u}\n")) && !dump.contains(&format!("{u}@")))
        .collect();
    assert!(missing.is_empty(), "missing after the kills: {missing:?}");
    // No process stuck: all listed, alive, and the server answers.
    let pids = p.pids();
    assert!(pids.len() >= 10, "core.psx: {pids:?}");
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");
    assert_eq!(p.options_answered(40), 40, "{}", diagnostics(&p));
    let log = p.server.log_text();
    assert!(!log.contains("panicked"), "{}", diagnostics(&p));
    assert!(!log.contains("corrupt"), "{}", diagnostics(&p));
    if cfg!(debug_assertions) {
        assert!(
            log.contains("died holding the usrloc lock")
                || log.contains("took over a shm lock held by dead process"),
            "{}",
            diagnostics(&p)
        );
    }
    let _ = std::fs::remove_file(&marker);
}
