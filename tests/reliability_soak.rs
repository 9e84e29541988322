//! Soak (issue 10): sipp calls through a stateful ser at a steady rate for
//! `SER_SOAK_SECS` seconds (default 60; the real run is 600 at 80 % of the
//! measured maximum, `SER_SOAK_RATE` calls/s, default 100), plus a REGISTER
//! load. Asserts 0 failed calls, shm `used` back to its baseline once the
//! transactions are gone, and every process's private memory (RssAnon)
//! flat: first vs last sample within 5 % (or 64 kB for the small ones).
//! VmRSS is printed too; it also counts the shm pages a process has touched,
//! which grow with the segment's high-water mark, not with leaks. Prints
//! the figures. Skipped without sipp/kamcmd.

mod reliability_load;
mod support;

use std::time::{Duration, Instant};

use reliability_load::{
    diagnostics, have_tools, private_kb, rss_kb, start_calls, start_registers, start_uas, Proxy,
};
use support::proc::{children_of, free_udp_port, wait_until};
use support::sipp::counts;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (pid, RssAnon kB, VmRSS kB) of main and every child.
fn rss_all(main: i32) -> Vec<(i32, u64, u64)> {
    let mut pids = children_of(main);
    pids.push(main);
    pids.into_iter()
        .map(|p| (p, private_kb(p), rss_kb(p)))
        .collect()
}

#[test]
fn soak_at_a_steady_rate() {
    if !have_tools() {
        return;
    }
    let secs = env_u64("SER_SOAK_SECS", 60).max(20);
    let rate = env_u64("SER_SOAK_RATE", 100).max(1);
    let calls = secs * rate;
    let p = Proxy::start("rel-soak", 64, &[]);
    let main = p.server.pid();
    let uas_port = free_udp_port();
    let _uas = start_uas(p.dir.dir(), uas_port, secs + 60);
    // Let start-up allocations settle, then take the baseline.
    std::thread::sleep(Duration::from_secs(1));
    let base_shm = p.shm_used();
    let t0 = Instant::now();
    let mut uac = start_calls(&p, uas_port, calls, rate, secs + 60);
    // Registrations: 1 per second for the whole run (kept: they stay in shm).
    let users = secs as usize;
    let mut regs = start_registers(&p, users, 1, secs + 60);
    // First RSS sample after a warm-up of a tenth of the run (the heap and
    // caches of each process reach their working size), the last at the end.
    std::thread::sleep(Duration::from_secs((secs / 10).max(10)));
    let first = rss_all(main);
    let mut last = first.clone();
    while uac.try_wait().is_none() && t0.elapsed() < Duration::from_secs(secs + 60) {
        std::thread::sleep(Duration::from_millis(500));
        if t0.elapsed() < Duration::from_secs(secs) {
            last = rss_all(main);
        }
    }
    let ran = t0.elapsed();
    let _ = regs.wait_exit(Duration::from_secs(30));
    let (ok, failed) = counts(p.dir.dir(), "calls");
    let (reg_ok, reg_failed) = counts(p.dir.dir(), "registers");
    // Transactions leave after wt_timer; registrations stay: compare shm
    // with the baseline plus what the registrations hold.
    let aor_bytes = 1024 * users as u64;
    let mut after_shm = u64::MAX;
    wait_until(Duration::from_secs(15), || {
        after_shm = p.shm_used();
        after_shm <= base_shm + aor_bytes
    });
    eprintln!(
        "soak: {secs} s at {rate} calls/s, ran {ran:?}: {ok} calls ok, {failed} failed; \
         {reg_ok} registrations ok, {reg_failed} failed; shm used {base_shm} -> {after_shm} \
         bytes ({users} AORs kept)"
    );
    let mut grown = Vec::new();
    for (pid, anon, rss) in &first {
        let (end_anon, end_rss) = last
            .iter()
            .find(|(p, _, _)| p == pid)
            .map_or((0, 0), |(_, a, r)| (*a, *r));
        let growth = (end_anon as f64 - *anon as f64) / (*anon).max(1) as f64 * 100.0;
        if end_anon > anon + (anon / 20).max(64) {
            grown.push((*pid, *anon, end_anon));
        }
        eprintln!(
            "soak: pid {pid} RssAnon {anon} kB -> {end_anon} kB ({growth:+.1} %), \
             VmRSS {rss} kB -> {end_rss} kB"
        );
    }
    assert!(
        ok == calls && failed == 0,
        "{ok} of {calls} calls ok, {failed} failed:\n{}",
        diagnostics(&p)
    );
    assert!(reg_failed == 0, "{}", diagnostics(&p));
    assert!(
        after_shm <= base_shm + aor_bytes,
        "shm used {base_shm} -> {after_shm}:\n{}",
        diagnostics(&p)
    );
    assert!(grown.is_empty(), "private memory grew: {grown:?}");
    assert!(!p.server.log_text().contains("panicked"));
}
