//! Helpers for tests that fork real processes.

// Each test binary compiles this module and uses a different subset.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Serialises the tests of one binary that fork (cargo runs tests on
/// threads; a fork while another test is mid-way would copy its state).
static FORK_MTX: Mutex<()> = Mutex::new(());

pub fn fork_lock() -> MutexGuard<'static, ()> {
    FORK_MTX.lock().unwrap_or_else(|p| p.into_inner())
}

/// Initialises the global segment once per test binary.
pub fn setup(size: usize) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| ser_shm::init(size).expect("shm init"));
}

/// Makes `n` processes start together: each arrives, then waits (yielding)
/// until all have. `count` must live in shm and start at 0.
pub fn barrier(count: &std::sync::atomic::AtomicUsize, n: usize) {
    use std::sync::atomic::Ordering;
    count.fetch_add(1, Ordering::SeqCst);
    while count.load(Ordering::SeqCst) < n {
        std::thread::yield_now();
    }
}

/// Forks `n` children running `f(i)`, then waits for them (see
/// [`wait_children`]).
pub fn run_children(
    n: usize,
    limit: Duration,
    f: impl FnMut(usize) -> bool,
) -> Vec<Result<(), String>> {
    let pids = spawn_children(n, f);
    wait_children(pids, limit)
}

/// Forks `n` children running `f(i)`; each exits 0 if `f` returned true.
pub fn spawn_children(n: usize, mut f: impl FnMut(usize) -> bool) -> Vec<libc::pid_t> {
    let mut pids = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY (test): the children only touch shm, the stack and plain
        // libc calls before `_exit`; glibc's fork keeps malloc usable.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let ok = catch_unwind(AssertUnwindSafe(|| f(i))).unwrap_or(false);
                // SAFETY (test): leave without running the harness's atexit
                // handlers or destructors of the parent's state.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            pid => pids.push(pid),
        }
    }
    pids
}

/// Waits at most `limit` for the children (then kills the rest) and returns
/// each one's outcome (`Err` text for a child that failed or hung).
pub fn wait_children(pids: Vec<libc::pid_t>, limit: Duration) -> Vec<Result<(), String>> {
    let n = pids.len();
    let deadline = Instant::now() + limit;
    let mut results: Vec<Option<Result<(), String>>> = vec![None; n];
    while results.iter().any(Option::is_none) {
        for (i, &pid) in pids.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let mut status = 0;
            // SAFETY (test): our own child, WNOHANG.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                results[i] = Some(
                    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                        Ok(())
                    } else {
                        Err(format!(
                            "child {i} (pid {pid}) ended with status {status:#x}"
                        ))
                    },
                );
            }
        }
        if Instant::now() > deadline {
            for (i, &pid) in pids.iter().enumerate() {
                if results[i].is_none() {
                    // SAFETY (test): killing and reaping our own child.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                    results[i] = Some(Err(format!("child {i} timed out (killed)")));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    results.into_iter().flatten().collect()
}

pub fn assert_all_ok(results: &[Result<(), String>]) {
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "children failed: {failed:?}");
}
