//! The seam between the spine and the routing engine.
//!
//! Start-up calls [`load`] once in main, after the config is parsed and the
//! globals are final, and before anything is forked (`-c` stops right after
//! it): it compiles the script with `route::load` (every fixup runs here) and
//! wraps it as the `ser_children::ChildInit` the process model drives:
//!
//! * `init_main(sockets)`: in main, after shm is mapped and the sockets are
//!   bound, before the first fork: the modules' `mod_init`;
//! * `init(rank, desc)`: in each child right after fork: the modules' child
//!   init;
//! * `handler(rank)`: the message handler of a SIP worker (parse, run the
//!   request or reply route);
//! * `timers()`: what the timer process runs;
//! * `destroy()`: in main after every child stopped;
//! * `run_ctl(stop)`: the ctl process serves the management listeners
//!   start-up bound ([`Engine::ctl`]) with the core's RPC methods
//!   ([`crate::core_rpc`]) and every loaded module's.
//!
//! Workers read `@cfg_get` values from the runtime cfg store
//! ([`crate::cfg_runtime`]), which start-up moves into shm before forking.

use std::sync::Arc;
use std::time::SystemTime;

use ser_children::Proto;
use ser_fifo::CtlConfig;
use ser_modules::ctl::ListenSpec;
use ser_parser::{Diagnostic, Parsed, Span};

use crate::cfg_runtime::RuntimeCfg;
use crate::core_rpc::CoreRpc;
use crate::globals::Globals;
use crate::listen::BindAddr;
use crate::route::serve::ScriptInit;
use crate::route::{self, Listen, LoadOptions, Myself};

/// The loaded config, ready for start-up.
pub struct Engine {
    /// What each process runs.
    pub init: ScriptInit,
    /// The runtime cfg parameters (custom ones and `core.debug`).
    pub cfg: Arc<RuntimeCfg>,
    /// The management listeners to bind before forking (none: no ctl process).
    pub ctl: Vec<ListenSpec>,
    /// How the ctl process serves them.
    pub ctl_config: CtlConfig,
}

/// Builds the per-process behaviour from the parsed config. `binds` are the
/// resolved listen addresses: with the `alias=` values they make up what
/// `myself` matches.
pub fn load(
    parsed: &Parsed,
    globals: &Globals,
    binds: &[BindAddr],
) -> Result<Engine, Vec<Diagnostic>> {
    let script = route::load(parsed, &LoadOptions::default())?;
    route::blacklist::configure(globals.use_dst_blacklist, globals.dst_blacklist_expire);
    configure_dns(globals);
    let ctl = crate::ctl::listen_specs(parsed, script.modules())
        .map_err(|e| vec![Diagnostic::error(Span::default(), e)])?;
    let ctl_config = crate::ctl::server_config(parsed, script.modules());
    let cfg = Arc::new(RuntimeCfg::new(globals.debug, &script.cfg()));
    for w in &script.warnings {
        log::warn!("{}", w.headline(&parsed.sources));
    }
    let mut myself = Myself::default();
    for b in binds {
        myself.add(&b.addr.ip().to_string(), Some(b.addr.port()));
    }
    for alias in &globals.aliases {
        for host in &alias.hosts {
            myself.add(host, alias.port);
        }
    }
    let listen = binds
        .iter()
        .map(|b| Listen {
            proto: engine_proto(b.proto),
            addr: b.addr,
            advertise: advertise_of(globals, b),
        })
        .collect();
    let core = CoreRpc {
        started: SystemTime::now(),
        cfg: cfg.clone(),
    };
    let init = ScriptInit::new(script, myself, listen)
        .with_cfg(cfg.clone())
        .with_core_rpc(Box::new(move |reg, modules| core.register(reg, modules)));
    Ok(Engine {
        init,
        cfg,
        ctl,
        ctl_config,
    })
}

/// The resolver's settings from the `dns_*` globals (fixed before forking).
fn configure_dns(g: &Globals) {
    use ser_modules::runtime::dns::{self, resolver::QueryOpts};
    let d = &g.dns_cfg;
    dns::configure(dns::Config {
        use_cache: d.use_cache,
        cache_flags: d.cache_flags,
        try_ipv6: d.try_ipv6,
        try_naptr: d.try_naptr,
        srv_lb: d.srv_lb,
        prefs: d.prefs,
        query: QueryOpts {
            retr_time: d.retr.0,
            retr_no: d.retr.1,
            servers_no: d.retr.2,
            use_search_list: d.search.0,
            search_full_match: d.search.1,
        },
        failover: d.failover,
    });
}

/// Creates the DNS cache (`use_dns_cache`) and the destination blacklist
/// (`use_dst_blacklist`) in shm: main, after shm is mapped, before forking.
pub fn attach_shm(g: &Globals) -> Result<(), String> {
    use ser_modules::runtime::dns::cache;
    let d = &g.dns_cfg;
    if d.use_cache {
        cache::attach_shm(cache::Limits {
            negative_ttl: d.ttl.0,
            min_ttl: d.ttl.1,
            max_ttl: d.ttl.2,
            mem: (d.cache_mem_kb as usize).saturating_mul(1024),
            gc_interval: d.gc_interval,
            del_nonexp: d.del_nonexp,
        })
        .map_err(|e| format!("dns cache: {e}"))?;
    }
    let (mem_kb, gc) = g.dst_blacklist_mem_gc;
    route::blacklist::attach_shm(mem_kb, gc)
}

/// What a bound socket advertises in Via/Record-Route: its listen spec's
/// `advertise host[:port]` (no port: the socket's), else the
/// `advertised_address`/`advertised_port` globals, else nothing (its own).
fn advertise_of(g: &Globals, b: &BindAddr) -> Option<(String, u16)> {
    let own = g.listen_advertise.iter().find_map(|(spec, adv)| {
        crate::listen::resolve_all(std::slice::from_ref(spec), g.port, g.disable_tcp)
            .ok()?
            .contains(b)
            .then_some(adv)
    });
    if let Some((host, port)) = own {
        return Some((host.clone(), port.unwrap_or(b.addr.port())));
    }
    if g.advertised_address.is_none() && g.advertised_port.is_none() {
        return None;
    }
    let host = g
        .advertised_address
        .clone()
        .unwrap_or_else(|| match b.addr.ip() {
            std::net::IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        });
    Some((host, g.advertised_port.unwrap_or(b.addr.port())))
}

fn engine_proto(p: Proto) -> route::Proto {
    match p {
        Proto::Udp => route::Proto::Udp,
        Proto::Tcp => route::Proto::Tcp,
        Proto::Tls => route::Proto::Tls,
        Proto::Sctp => route::Proto::Sctp,
    }
}
