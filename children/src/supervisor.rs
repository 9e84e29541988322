//! Forking by the plan and supervising the children (SER's `main_loop` and
//! `handle_sigs`).
//!
//! Signals: before the first fork main blocks SIGTERM, SIGINT, SIGCHLD,
//! SIGHUP, SIGUSR1 and ignores SIGPIPE. Each child sets its own dispositions
//! and unblocks; main installs its handlers only after the last fork (no
//! thread is ever started: signal-hook's `Signals` is a self-pipe read by
//! this thread) and then unblocks, so nothing that arrived meanwhile is lost.
//!
//! A child that dies unexpectedly: main first releases the shm locks the
//! dead pid held ([`ser_shm::release_locks_of`], then [`ser_shm::check`]),
//! then either stops everything (SER's behaviour, `child_respawn = no`) or
//! forks a replacement into the same table slot, with the same rank,
//! sockets and per-child init ([`Respawn`]). A slot that keeps dying
//! ([`CrashGuard`]) stops the server.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use crate::daemon::StartNotice;
use crate::handler::ChildInit;
use crate::plan::{ProcKind, ProcSpec, SpawnPlan};
use crate::socket::{ListenSocket, Proto};
use crate::sys::{self, fork_checked, Forked};
use crate::{table, tcp, timer, udp, Error};

/// Everything [`run`] needs.
pub struct Setup<'a> {
    /// The plan (entry 0 = this process).
    pub plan: &'a SpawnPlan,
    /// All bound sockets; plan socket indices refer to the UDP ones in order.
    pub sockets: &'a [ListenSocket],
    /// Per-child init and handler factory.
    pub init: &'a dyn ChildInit,
    /// How long children get between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The TCP settings (`tcp_*` core parameters) every process, respawned
    /// ones too, works with.
    pub tcp: crate::tcp_conn::TcpConfig,
    /// Run on SIGUSR1 in main (SER logs memory statistics).
    pub on_usr1: &'a dyn Fn(),
    /// Lets a waiting daemon creator exit once everything is forked.
    pub notice: StartNotice,
    /// What to do when a child dies.
    pub respawn: Respawn,
}

/// What main does when a child dies (`child_respawn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Respawn {
    /// Fork a replacement; false stops the whole server (SER's default).
    pub enabled: bool,
    /// More deaths than this of one process slot ...
    pub max_deaths: usize,
    /// ... within this window stop the server (a crash loop).
    pub window: Duration,
}

impl Respawn {
    /// SER's behaviour: any death stops the server.
    pub const OFF: Respawn = Respawn {
        enabled: false,
        max_deaths: 5,
        window: Duration::from_secs(10),
    };
    /// Replace dead children; more than 5 deaths of one slot in 10 s stop
    /// the server.
    pub const ON: Respawn = Respawn {
        enabled: true,
        ..Respawn::OFF
    };
}

impl Default for Respawn {
    fn default() -> Self {
        Respawn::OFF
    }
}

/// Counts recent deaths per process slot to catch a crash loop.
#[derive(Debug)]
pub struct CrashGuard {
    policy: Respawn,
    deaths: Vec<VecDeque<Instant>>,
}

impl CrashGuard {
    /// A guard for a plan of `slots` processes.
    pub fn new(slots: usize, policy: Respawn) -> Self {
        CrashGuard {
            policy,
            deaths: vec![VecDeque::new(); slots],
        }
    }

    /// Records a death of `slot` at `now`; the number of deaths within the
    /// window when that exceeds the limit (stop), `None` otherwise.
    pub fn record(&mut self, slot: usize, now: Instant) -> Option<usize> {
        let window = self.policy.window;
        let q = self.deaths.get_mut(slot)?;
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            q.pop_front();
        }
        q.push_back(now);
        (q.len() > self.policy.max_deaths).then_some(q.len())
    }
}

/// Why main stopped supervising.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT: orderly shutdown.
    Signal(i32),
    /// A child died: the server was shut down (SER's default).
    ChildDied {
        /// The dead child's description.
        desc: String,
    },
    /// One process slot died too often in a short time.
    CrashLoop {
        /// The dead child's description.
        desc: String,
    },
    /// Shared memory failed its check after a dead child's locks were
    /// released.
    ShmCorrupt {
        /// What [`ser_shm::check`] found.
        msg: String,
    },
}

impl Exit {
    /// Process exit code for this reason.
    pub fn code(&self) -> i32 {
        match self {
            Exit::Signal(_) => 0,
            Exit::ChildDied { .. } | Exit::CrashLoop { .. } | Exit::ShmCorrupt { .. } => 1,
        }
    }
}

/// What the operator reads in `ser exiting: ...`.
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Signal(sig) => match Signal::try_from(*sig) {
                Ok(s) => write!(f, "signal {sig} ({})", s.as_str()),
                Err(_) => write!(f, "signal {sig}"),
            },
            Exit::ChildDied { desc } => write!(f, "child process '{desc}' died"),
            Exit::CrashLoop { desc } => {
                write!(f, "child process '{desc}' died too often, not respawned")
            }
            Exit::ShmCorrupt { msg } => write!(f, "shared memory corrupt: {msg}"),
        }
    }
}

const MAIN_SIGNALS: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGCHLD,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn main_sigset() -> SigSet {
    let mut set = SigSet::empty();
    for s in MAIN_SIGNALS {
        set.add(s);
    }
    set
}

/// What a forked child needs from [`Setup`].
#[derive(Clone, Copy)]
struct ChildEnv<'a> {
    sockets: &'a [ListenSocket],
    init: &'a dyn ChildInit,
    tcp_lifetime: Duration,
}

/// The unix sockets linking tcp main and its workers: main keeps them when
/// respawning, so a replacement inherits the very same sockets (connections
/// queued for a dead worker wait in its link for the replacement).
struct Links {
    workers: Vec<(UnixStream, UnixStream)>,
}

/// The UDP sockets, in the order plan indices refer to.
fn udp_sockets(sockets: &[ListenSocket]) -> Vec<&ListenSocket> {
    sockets.iter().filter(|s| s.proto() == Proto::Udp).collect()
}

/// Creates the process table, forks every planned process and supervises
/// them until a signal or a child's death ends the server. Returns in main
/// only; children exit inside.
pub fn run(setup: Setup<'_>) -> Result<Exit, Error> {
    sys::ensure_single_threaded()?;
    setup.notice.release_stderr()?;
    sys::ignore_signal(Signal::SIGPIPE)?;
    main_sigset()
        .thread_block()
        .map_err(|e| Error::io("block signals", e.into()))?;
    table::create(setup.plan)?;
    table::set_pid(0, nix::unistd::getpid().as_raw());

    // One socketpair per TCP worker, made before any fork so tcp main and
    // the worker both inherit their ends.
    let workers: Vec<usize> = setup.plan.tcp_workers().collect();
    let mut links = Vec::with_capacity(workers.len());
    for _ in &workers {
        links.push(UnixStream::pair().map_err(|e| Error::io("socketpair", e))?);
    }
    // Fixed before the fork: every child, respawned ones too, inherits the
    // settings and the shared connection table.
    let tcp_lifetime = setup.tcp.lifetime;
    crate::tcp_conn::configure(setup.tcp.clone());
    if !workers.is_empty() {
        crate::tcp_table::init();
    }

    let hold_hook = test_hook::install();
    let env = ChildEnv {
        sockets: setup.sockets,
        init: setup.init,
        tcp_lifetime,
    };
    for (index, spec) in setup.plan.procs.iter().enumerate().skip(1) {
        match fork_checked()? {
            Forked::Child => {
                table::set_pid(index, nix::unistd::getpid().as_raw());
                test_hook::maybe_hold(hold_hook, &spec.desc);
                let code = child_main(env, spec, links);
                std::process::exit(code);
            }
            Forked::Parent(pid) => {
                table::set_pid(index, pid.as_raw());
                log::debug!("forked '{}' pid {pid}", spec.desc);
            }
        }
    }
    let mut kept = if setup.respawn.enabled {
        Some(Links { workers: links })
    } else {
        drop(links);
        None
    };
    for p in table::process_table() {
        log::debug!(
            "process table: {} pid={} rank={} {}",
            p.index,
            p.pid,
            p.rank,
            p.desc
        );
    }
    let Setup {
        plan,
        sockets,
        init,
        grace,
        on_usr1,
        notice,
        respawn,
        ..
    } = setup;

    // In an Option so a respawned child can drop main's copy (and with it
    // the handlers that would forward its signals to main's self-pipe).
    let mut signals = Some(
        Signals::new([SIGTERM, SIGINT, SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(|e| Error::io("install signal handlers", e))?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    main_sigset()
        .thread_unblock()
        .map_err(|e| Error::io("unblock signals", e.into()))?;

    if plan
        .procs
        .first()
        .map(|p| p.desc.starts_with("main process - udp"))
        == Some(true)
    {
        // -D: main is the only receiver of the first UDP socket.
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, stop.clone())
                .map_err(|e| Error::io("install signal handlers", e))?;
        }
        notice.started();
        log::info!("ser started: {} processes, main receives", plan.len());
        if let Some(sock) = udp_sockets(sockets).first() {
            init.init(plan.procs[0].rank, &plan.procs[0].desc)
                .map_err(|msg| Error::ChildInit {
                    desc: plan.procs[0].desc.clone(),
                    msg,
                })?;
            let mut handler = init.handler(plan.procs[0].rank);
            udp::receive_loop(sock, handler.as_mut(), &stop);
        }
        shutdown_children(grace);
        return Ok(Exit::Signal(SIGTERM));
    }

    notice.started();
    log::info!("ser started: {} processes", plan.len());
    let mut guard = CrashGuard::new(plan.len(), respawn);
    loop {
        let Some(sigs) = signals.as_mut() else {
            // infallible in main: only a respawned child takes it.
            return Err(Error::io("signals", std::io::ErrorKind::Other.into()));
        };
        // A child that died before the handlers existed left SIGCHLD
        // pending; it is delivered now and handled like any other.
        // Handle a batch with SIGTERM/SIGINT first: on Ctrl-C the children
        // stop too, and their SIGCHLD must not turn an orderly stop into a
        // "child died" exit.
        let mut batch: Vec<i32> = sigs.wait().collect();
        batch.sort_by_key(|s| !matches!(*s, SIGTERM | SIGINT));
        for sig in batch {
            match sig {
                SIGTERM | SIGINT => {
                    log::info!("signal {sig} received, shutting down");
                    shutdown_children(grace);
                    return Ok(Exit::Signal(sig));
                }
                SIGCHLD => {
                    for dead in reap_dead() {
                        if let Some(exit) = recover_locks(&dead) {
                            shutdown_children(grace);
                            return Ok(exit);
                        }
                        // its connections died with it
                        tcp::live_forget(crate::tcp_table::remove_owner(dead.pid));
                        if !respawn.enabled {
                            log::info!("terminating due to SIGCHLD");
                            shutdown_children(grace);
                            return Ok(Exit::ChildDied { desc: dead.desc });
                        }
                        if let Some(n) = guard.record(dead.index, Instant::now()) {
                            log::error!(
                                "child '{}' died {n} times within {} s (crash loop): \
                                 shutting down",
                                dead.desc,
                                respawn.window.as_secs()
                            );
                            shutdown_children(grace);
                            return Ok(Exit::CrashLoop { desc: dead.desc });
                        }
                        let Some(spec) = plan.procs.get(dead.index) else {
                            continue;
                        };
                        // Blocked across the fork: until the child has its
                        // own handlers, a signal to it must wait.
                        let _ = main_sigset().thread_block();
                        let forked = fork_checked();
                        if !matches!(forked, Ok(Forked::Child)) {
                            let _ = main_sigset().thread_unblock();
                        }
                        match forked {
                            Ok(Forked::Child) => {
                                // Main's signal handlers and pipe are not ours.
                                drop(signals.take());
                                table::set_pid(dead.index, nix::unistd::getpid().as_raw());
                                let links = kept.take().unwrap_or(Links {
                                    workers: Vec::new(),
                                });
                                let code = child_main(env, spec, links.workers);
                                std::process::exit(code);
                            }
                            Ok(Forked::Parent(pid)) => {
                                table::set_pid(dead.index, pid.as_raw());
                                log::warn!(
                                    "respawned '{}' (rank {}) as pid {pid}",
                                    spec.desc,
                                    spec.rank.as_i32()
                                );
                            }
                            Err(e) => {
                                log::error!("cannot respawn '{}': {e}", spec.desc);
                                shutdown_children(grace);
                                return Ok(Exit::ChildDied { desc: dead.desc });
                            }
                        }
                    }
                }
                SIGHUP => log::info!("SIGHUP received, ignoring it"),
                SIGUSR1 => on_usr1(),
                _ => log::info!("signal {sig} received, ignoring it"),
            }
        }
    }
}

/// Debug builds only: `SER_TEST_DIE_HOLDING_LOCK=<desc>` makes the first
/// child whose description contains `<desc>` take a registered shm lock and
/// keep it forever, so a test can kill it while it holds the lock (the
/// replacement does not take it again).
mod test_hook {
    use ser_shm::{LockSet, ShmBox};

    /// The lock and the description to match, made in main before fork.
    pub type Hook = Option<(&'static LockSet, String)>;

    const VAR: &str = "SER_TEST_DIE_HOLDING_LOCK";

    pub fn install() -> Hook {
        if !cfg!(debug_assertions) {
            return None;
        }
        let want = std::env::var(VAR).ok().filter(|v| !v.is_empty())?;
        let set: &'static LockSet = ShmBox::leak(ShmBox::new(LockSet::new(1).ok()?).ok()?);
        ser_shm::register_locks("test hook", set.iter());
        Some((set, want))
    }

    pub fn maybe_hold(hook: Hook, desc: &str) {
        if let Some((set, want)) = hook {
            if desc.contains(want.as_str()) {
                log::warn!("{desc}: holding the test hook lock until killed");
                std::mem::forget(set.get(0).lock());
            }
        }
    }
}

/// A planned child that died.
struct Dead {
    index: usize,
    pid: i32,
    desc: String,
}

/// Releases the shm locks `dead` held and checks the heap afterwards; the
/// exit when shared memory can no longer be trusted.
fn recover_locks(dead: &Dead) -> Option<Exit> {
    // SAFETY: `dead.pid` was just reaped by waitpid, so it is gone and can
    // never touch shm again; what it left half-done is checked below.
    let released = unsafe { ser_shm::release_locks_of(dead.pid) };
    if released.is_empty() {
        return None;
    }
    for r in &released {
        log::error!(
            "child {} [{}] died holding the {} lock #{}: released it; \
             its last change there may be half done",
            dead.pid,
            dead.desc,
            r.group,
            r.index
        );
    }
    match ser_shm::check() {
        Ok(()) => {
            log::info!("shared memory check passed after lock recovery");
            None
        }
        Err(msg) => {
            log::error!(
                "shared memory is corrupt after child {} died: {msg}",
                dead.pid
            );
            Some(Exit::ShmCorrupt { msg })
        }
    }
}

/// Reaps every dead child, logging each; returns the planned ones (their
/// table slots cleared).
fn reap_dead() -> Vec<Dead> {
    let mut found = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                let index = table::index_of(pid.as_raw());
                let desc = index
                    .map(table::desc_of)
                    .unwrap_or_else(|| "unknown".into());
                match status {
                    WaitStatus::Exited(_, code) => {
                        log::error!("child process {pid} [{desc}] exited normally, status={code}")
                    }
                    WaitStatus::Signaled(_, sig, core) => log::error!(
                        "child process {pid} [{desc}] exited by a signal {}{}",
                        sig as i32,
                        if core { " (core dumped)" } else { "" }
                    ),
                    _ => continue,
                }
                if let Some(index) = index {
                    table::set_pid(index, 0);
                    found.push(Dead {
                        index,
                        pid: pid.as_raw(),
                        desc,
                    });
                }
            }
        }
    }
}

/// SIGTERM to every child in the table, wait up to `grace`, then SIGKILL the
/// rest and reap them.
pub fn shutdown_children(grace: Duration) {
    let me = nix::unistd::getpid().as_raw();
    let alive = || -> Vec<Pid> {
        table::process_table()
            .filter(|p| p.pid > 0 && p.pid != me)
            .map(|p| Pid::from_raw(p.pid))
            .collect()
    };
    for pid in alive() {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        reap_quiet();
        if alive().is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in alive() {
        log::warn!("child {pid} did not stop in time, killing it");
        let _ = kill(pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while !alive().is_empty() && Instant::now() < deadline {
        reap_quiet();
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn reap_quiet() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        let Some(pid) = status.pid() else { break };
        if let Some(i) = table::index_of(pid.as_raw()) {
            table::set_pid(i, 0);
        }
    }
}

/// Body of a forked child: signals, per-child init, then its loop.
fn child_main(setup: ChildEnv<'_>, spec: &ProcSpec, links: Vec<(UnixStream, UnixStream)>) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            log::error!("{}: cannot install signal handler: {e}", spec.desc);
            return 1;
        }
    }
    // Terminal hang-ups and SIGUSR1/2 are main's business.
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        let _ = sys::ignore_signal(sig);
    }
    let _ = sys::default_signal(Signal::SIGCHLD);
    if let Err(e) = main_sigset().thread_unblock() {
        log::error!("{}: cannot unblock signals: {e}", spec.desc);
        return 1;
    }
    if let Err(msg) = setup.init.init(spec.rank, &spec.desc) {
        log::error!(
            "init of '{}' (rank {}) failed: {msg}",
            spec.desc,
            spec.rank.as_i32()
        );
        return 1;
    }
    match &spec.kind {
        ProcKind::Main => {}
        ProcKind::UdpReceiver { sock, .. } => {
            drop(links);
            let Some(s) = udp_sockets(setup.sockets).get(*sock).copied() else {
                log::error!("{}: no udp socket #{sock}", spec.desc);
                return 1;
            };
            let mut handler = setup.init.handler(spec.rank);
            udp::receive_loop(s, handler.as_mut(), &stop);
        }
        ProcKind::SctpReceiver { sock, .. } => {
            drop(links);
            let mut handler = setup.init.handler(spec.rank);
            if !crate::sctp::run_receiver(setup.sockets, *sock, handler.as_mut(), &stop) {
                log::error!("{}: no sctp socket #{sock}", spec.desc);
                return 1;
            }
        }
        ProcKind::Timer => {
            drop(links);
            timer::run(setup.init.timers(), &stop);
        }
        ProcKind::Ctl => {
            drop(links);
            setup.init.run_ctl(&stop);
        }
        ProcKind::TcpMain => {
            let mains = links.into_iter().map(|(m, _)| m).collect();
            tcp::main_loop(setup.sockets, mains, &stop);
        }
        ProcKind::TcpReceiver { child } => {
            let Some(link) = links.into_iter().nth(*child).map(|(_, w)| w) else {
                log::error!("{}: no tcp link", spec.desc);
                return 1;
            };
            let mut handler = setup.init.handler(spec.rank);
            tcp::worker_loop(
                setup.sockets,
                link,
                handler.as_mut(),
                setup.tcp_lifetime,
                &stop,
            );
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_read_well() {
        assert_eq!(Exit::Signal(15).to_string(), "signal 15 (SIGTERM)");
        assert_eq!(Exit::Signal(2).to_string(), "signal 2 (SIGINT)");
        assert_eq!(
            Exit::ChildDied {
                desc: "timer".into()
            }
            .to_string(),
            "child process 'timer' died"
        );
    }

    #[test]
    fn crash_guard_counts_deaths_per_slot_within_the_window() {
        let mut g = CrashGuard::new(3, Respawn::ON);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(g.record(1, t0 + Duration::from_secs(i)), None);
        }
        // Another slot has its own count.
        assert_eq!(g.record(2, t0), None);
        assert_eq!(g.record(1, t0 + Duration::from_secs(5)), Some(6));
        // Deaths older than the window are forgotten.
        let mut g = CrashGuard::new(2, Respawn::ON);
        for i in 0..20 {
            assert_eq!(g.record(1, t0 + Duration::from_secs(3 * i)), None);
        }
        assert_eq!(g.record(7, t0), None);
    }

    #[test]
    fn respawn_is_off_by_default_as_in_ser() {
        assert_eq!(Respawn::default(), Respawn::OFF);
        const { assert!(Respawn::ON.enabled) };
        assert_eq!(
            Exit::CrashLoop {
                desc: "timer".into()
            }
            .code(),
            1
        );
    }
}
