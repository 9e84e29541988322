//! Start-up in SER's order (`main.c:main`): command line, config, globals,
//! logging, the routing engine, `-c`, daemon, shared memory, sockets,
//! privilege drop, then the fork plan and the supervisor.

use std::time::Duration;

use ser_children::daemon::{self, ForkMode};
use ser_children::plan::{PlanInput, ProcKind};
use ser_children::supervisor::{self, Setup};
use ser_children::{ChildInit, ListenSocket, Proto, SpawnPlan};

use crate::flags::{self, Action};
use crate::globals::Globals;
use crate::transports::{self, TransportGlobals};
use crate::{config, ctl, engine, listen, logging, version};

/// How long children get to stop after SIGTERM before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1000);

/// Exit status of a refused command line or config.
const EXIT_ERROR: i32 = 1;

/// Runs `ser` with the arguments after the program name; returns the exit
/// status.
pub fn run(args: Vec<String>) -> i32 {
    logging::install();
    let cl = match flags::parse(args) {
        Ok(cl) => cl,
        Err(e) => {
            eprintln!("ser: {e}\nUse -h for help");
            return EXIT_ERROR;
        }
    };
    match cl.action {
        Action::Help => {
            print!("{}", flags::help_text());
            return 0;
        }
        Action::Version => {
            print!("{}", version::version_text());
            return 0;
        }
        Action::Run | Action::Check => {}
    }

    // Defaults, then the config file, then the command line.
    let mut g = Globals::default();
    if let Some(f) = &cl.cfg_file {
        g.cfg_file = f.into();
    }
    let parsed = match config::parse(&g.cfg_file, &cl.defines) {
        Ok(p) => p,
        Err(text) => {
            eprint!("{text}");
            eprintln!("ser: bad config file ({})", g.cfg_file.display());
            return EXIT_ERROR;
        }
    };
    let errors = g.apply_config(parsed.config.items());
    if !errors.is_empty() {
        eprint!("{}", config::render_all(&parsed.sources, &errors));
        eprintln!("ser: bad config file ({})", g.cfg_file.display());
        return EXIT_ERROR;
    }
    let (mut tg, errors) = TransportGlobals::from_config(parsed.config.items());
    if !errors.is_empty() {
        eprint!("{}", config::render_all(&parsed.sources, &errors));
        eprintln!("ser: bad config file ({})", g.cfg_file.display());
        return EXIT_ERROR;
    }
    g.apply_cmdline(&cl);
    tg.apply_cmdline(&cl);
    if let Err(e) = logging::configure(g.debug, g.log_stderr, &g.log_facility) {
        eprintln!("ser: {e}");
        return EXIT_ERROR;
    }
    let tls_module = transports::loads_module(&parsed, "tls");
    let binds = match transports::resolve_binds(&g, &tg, tls_module) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ser: {e}");
            return EXIT_ERROR;
        }
    };
    let engine = match engine::load(&parsed, &g, &binds) {
        Ok(engine) => engine,
        Err(diags) => {
            eprint!("{}", config::render_all(&parsed.sources, &diags));
            eprintln!("ser: bad config file ({})", g.cfg_file.display());
            return EXIT_ERROR;
        }
    };
    if cl.action == Action::Check {
        println!("{}", config::summary(&parsed));
        return 0;
    }
    serve(&g, &tg, &binds, &engine)
}

/// Everything after the checks: becomes a daemon, maps shm, binds, forks,
/// supervises, cleans up.
fn serve(
    g: &Globals,
    tg: &TransportGlobals,
    binds: &[listen::BindAddr],
    engine: &engine::Engine,
) -> i32 {
    let init = &engine.init;
    log::info!(
        "{} starting",
        version::version_line().trim_start_matches("version: ")
    );
    // Names are resolved before chroot hides /etc/passwd.
    let (uid, gid) = match daemon::resolve_ids(g.user.as_deref(), g.group.as_deref()) {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("ser: {e}");
            return EXIT_ERROR;
        }
    };
    let dopts = g.daemon_options();
    let notice = match daemon::detach(&dopts) {
        Ok(n) => n,
        Err(e) => {
            log::error!("{e}");
            eprintln!("ser: {e}");
            return EXIT_ERROR;
        }
    };
    let fail = |e: &dyn std::fmt::Display| {
        log::error!("{e}");
        if !g.log_stderr {
            // Still the terminal's stderr (a daemon releases it only when
            // forking the children).
            eprintln!("ser: {e}");
        }
        daemon::remove_pid_files(&dopts);
        EXIT_ERROR
    };
    let shm_bytes = usize::try_from(g.shm_mb)
        .unwrap_or(usize::MAX)
        .saturating_mul(1 << 20);
    if let Err(e) = ser_shm::init(shm_bytes) {
        return fail(&format!("shared memory ({} MB): {e}", g.shm_mb));
    }
    if let Err(e) = engine.cfg.attach_shm() {
        return fail(&format!("runtime cfg: {e}"));
    }
    if let Err(e) = engine::attach_shm(g) {
        return fail(&e);
    }
    let rcvbuf = usize::try_from(g.rcvbuf_max).unwrap_or(usize::MAX);
    let mut sockets = Vec::with_capacity(binds.len());
    for b in binds {
        match ListenSocket::bind(b.proto, b.addr, rcvbuf) {
            Ok(s) => {
                log::info!("listening on {s}");
                sockets.push(s);
            }
            Err(e) => return fail(&e),
        }
    }
    let sockets = match ser_children::socket::install(sockets) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Err(e) = init.init_main(sockets) {
        return fail(&format!("module init: {e}"));
    }
    // Management sockets: bound before the privilege drop, served by the
    // ctl process, removed when their listeners drop.
    let listeners = match ctl::bind(&engine.ctl, g.user.as_deref(), g.group.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let has_ctl = !listeners.is_empty();
    if has_ctl {
        init.set_ctl(listeners, engine.ctl_config.clone());
    }
    // certificates and keys are read while still privileged (keys are
    // often readable by root only)
    if let Err(e) = transports::configure_tls(&engine.init, sockets, tg, &g.cfg_file) {
        return fail(&e);
    }
    if let Err(e) = daemon::drop_privileges(uid, gid) {
        return fail(&e);
    }
    let has_tcp = sockets.iter().any(|s| s.is_stream());
    if has_tcp && g.tcp_workers() == 0 {
        return fail(&"listening on tcp needs at least one tcp worker (-N, tcp_children)");
    }
    ser_children::tcp::init_live_count();
    log::info!("tcp poll method: {}", g.poll_method().name());
    let plan = SpawnPlan::new(&PlanInput {
        udp_sockets: sockets
            .iter()
            .filter(|s| s.proto() == Proto::Udp)
            .map(|s| s.name().to_string())
            .collect(),
        sctp_sockets: sockets
            .iter()
            .filter(|s| s.proto() == Proto::Sctp)
            .map(|s| s.name().to_string())
            .collect(),
        sctp_children: tg.sctp_workers(g) as usize,
        tcp: has_tcp,
        children: g.children as usize,
        tcp_children: g.tcp_workers() as usize,
        dont_fork: g.fork_mode() == ForkMode::NoFork,
        ctl: has_ctl,
    });
    log::info!("{}", children_summary(&plan));
    log::debug!("fork plan:\n{plan}");
    let usr1 = || {
        let s = ser_shm::stats();
        log::info!(
            "shm stats: total={} free={} used={} real_used={} max_used={} fragments={} \
             largest_free={}",
            s.total,
            s.free,
            s.used,
            s.real_used,
            s.max_used,
            s.fragments,
            s.largest_free
        );
    };
    let result = supervisor::run(Setup {
        plan: &plan,
        sockets,
        init,
        grace: SHUTDOWN_GRACE,
        tcp: g.tcp_config(has_tcp),
        on_usr1: &usr1,
        notice,
        respawn: if g.child_respawn {
            supervisor::Respawn::ON
        } else {
            supervisor::Respawn::OFF
        },
    });
    init.destroy();
    daemon::remove_pid_files(&dopts);
    match result {
        Ok(exit) => {
            log::info!("ser exiting: {exit}");
            exit.code()
        }
        Err(e) => fail(&e),
    }
}

/// `udp receivers: 8 per socket on 2 sockets, tcp workers: 8, timer: 1, ctl: 1`:
/// the processes main forks, by kind.
fn children_summary(plan: &SpawnPlan) -> String {
    let mut sockets = std::collections::BTreeSet::new();
    let (mut udp, mut tcp, mut timer, mut ctl, mut sctp) = (0, 0, 0, 0, 0);
    for p in &plan.procs {
        match p.kind {
            ProcKind::UdpReceiver { sock, .. } => {
                udp += 1;
                sockets.insert(sock);
            }
            ProcKind::TcpReceiver { .. } => tcp += 1,
            ProcKind::SctpReceiver { .. } => sctp += 1,
            ProcKind::Timer => timer += 1,
            ProcKind::Ctl => ctl += 1,
            ProcKind::Main | ProcKind::TcpMain => {}
        }
    }
    // -D: the main process itself receives on the first UDP socket.
    let main_receives = plan
        .procs
        .first()
        .is_some_and(|p| p.desc.starts_with("main process - udp"));
    let udp = match sockets.len() {
        0 if main_receives => "udp receiver: the main process".to_owned(),
        0 => "udp receivers: 0".to_owned(),
        1 => format!("udp receivers: {udp} on 1 socket"),
        n => format!("udp receivers: {} per socket on {n} sockets", udp / n),
    };
    let sctp = match sctp {
        0 => String::new(),
        n => format!(", sctp receivers: {n}"),
    };
    format!("{udp}{sctp}, tcp workers: {tcp}, timer: {timer}, ctl: {ctl}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_counted_by_kind() {
        let plan = SpawnPlan::new(&PlanInput {
            udp_sockets: vec!["127.0.0.1:5060".into(), "127.0.0.2:5060".into()],
            tcp: true,
            children: 8,
            tcp_children: 4,
            dont_fork: false,
            ctl: true,
            sctp_sockets: vec!["127.0.0.1:5060".into()],
            sctp_children: 2,
        });
        assert_eq!(
            children_summary(&plan),
            "udp receivers: 8 per socket on 2 sockets, sctp receivers: 2, tcp workers: 4, \
             timer: 1, ctl: 1"
        );
        let plan = SpawnPlan::new(&PlanInput {
            udp_sockets: vec!["127.0.0.1:5060".into()],
            children: 8,
            dont_fork: true,
            ..PlanInput::default()
        });
        assert_eq!(
            children_summary(&plan),
            "udp receiver: the main process, tcp workers: 0, timer: 1, ctl: 0"
        );
    }
}
