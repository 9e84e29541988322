//! The core's RPC methods, served by the ctl process next to the modules'
//! (Kamailio's `core_cmd.c`, the cfg framework's `cfg_rpc` and kex's
//! `stats.*`): `core.*`, `corex.debug`, `stats.get_statistics`, and `cfg.*`
//! when `cfg_rpc` is loaded.  Reply shapes follow Kamailio 5.6 as `kamcmd`
//! prints them.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ser_children::{process_table, Proto};
use ser_fifo::{RpcCtx, RpcFault, RpcRegistry, RpcValue};
use ser_modules::registry::Modules;
use ser_modules::Value;

use crate::cfg_runtime::{Change, RuntimeCfg, SetError};

/// What the core methods need to know.
pub struct CoreRpc {
    /// When the server started (`core.uptime`).
    pub started: SystemTime,
    /// The runtime cfg store (`cfg.*`, `corex.debug`).
    pub cfg: Arc<RuntimeCfg>,
}

fn reg_or_log(
    reg: &mut RpcRegistry,
    name: &'static str,
    doc: &'static [&'static str],
    f: impl Fn(&mut dyn RpcCtx) -> Result<(), RpcFault> + 'static,
) {
    if let Err(e) = reg.register(name, doc, f) {
        log::error!("core: cannot register {name}: {e}");
    }
}

impl CoreRpc {
    /// Registers the core methods in `reg`; `modules` are the loaded modules
    /// (their `*.stats` methods feed `stats.get_statistics`; `cfg_rpc` adds
    /// the `cfg.*` methods).
    pub fn register(&self, reg: &mut RpcRegistry, modules: &Modules) {
        self.register_core(reg, modules);
        self.register_stats(reg, modules);
        // SER's dns cache and dst blacklist (they fault when turned off)
        ser_modules::runtime::dns::rpc::register_dns(reg);
        ser_modules::runtime::dns::rpc::register_blacklist(reg);
        if modules.iter().any(|l| l.module.name() == "cfg_rpc") {
            register_cfg(reg, self.cfg.clone());
        }
    }

    fn register_core(&self, reg: &mut RpcRegistry, modules: &Modules) {
        // Kamailio lists the most recently loaded module first.
        let mut names: Vec<&'static str> = modules.iter().map(|l| l.module.name()).collect();
        names.reverse();
        reg_or_log(reg, "core.modules", &["List loaded modules"], move |c| {
            for n in &names {
                c.add(RpcValue::from(*n));
            }
            Ok(())
        });
        reg_or_log(reg, "core.flags", &["Returns the compile flags."], |c| {
            c.add(RpcValue::Str(crate::version::BUILD_FLAGS.join(", ")));
            Ok(())
        });
        reg_or_log(
            reg,
            "core.arg",
            &["Returns the list of command line arguments used on startup."],
            |c| {
                for a in std::env::args() {
                    c.add(RpcValue::Str(a));
                }
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.version",
            &["Returns the version string of the server."],
            |c| {
                c.add(RpcValue::Str(version_string()));
                Ok(())
            },
        );
        let started = self.started;
        reg_or_log(
            reg,
            "core.uptime",
            &["Returns uptime of SIP server."],
            move |c| {
                let now = SystemTime::now();
                let up = now.duration_since(started).unwrap_or_default().as_secs();
                c.add(RpcValue::structure([
                    ("now", RpcValue::Str(ctime(now))),
                    ("up_since", RpcValue::Str(ctime(started))),
                    ("uptime", RpcValue::from(up)),
                ]));
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.ps",
            &["Returns the description of running processes."],
            |c| {
                for p in process_table().filter(|p| p.pid > 0) {
                    c.add(RpcValue::Int(p.pid));
                    c.add(RpcValue::Str(p.desc));
                }
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.psx",
            &["Returns the detailed description of running processes."],
            |c| {
                for p in process_table().filter(|p| p.pid > 0) {
                    c.add(RpcValue::structure([
                        ("IDX", RpcValue::from(p.index)),
                        ("PID", RpcValue::Int(p.pid)),
                        ("DSC", RpcValue::Str(p.desc)),
                    ]));
                }
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.pwd",
            &["Returns the working directory of server."],
            |c| {
                let dir = std::env::current_dir()
                    .map_err(|e| RpcFault::new(500, format!("getcwd failed: {e}")))?;
                c.add(RpcValue::Str(dir.display().to_string()));
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.shmmem",
            &["Returns shared memory info. It has an optional parameter that specifies the measuring unit: b - bytes (default), k or kb, m or mb, g or gb. Note: when using something different from bytes, the value is truncated."],
            |c| {
                let shift = match c.scan_opt_str(0)?.as_deref().map(str::to_ascii_lowercase) {
                    None => 0,
                    Some(u) => match u.as_str() {
                        "b" => 0,
                        "k" | "kb" => 10,
                        "m" | "mb" => 20,
                        "g" | "gb" => 30,
                        _ => return Err(RpcFault::new(500, "bad param, (use b|k|m|g)")),
                    },
                };
                let s = ser_shm::stats();
                let v = |n: usize| RpcValue::long(i64::try_from(n >> shift).unwrap_or(i64::MAX));
                c.add(RpcValue::structure([
                    ("total", v(s.total)),
                    ("free", v(s.free)),
                    ("used", v(s.used)),
                    ("real_used", v(s.real_used)),
                    ("max_used", v(s.max_used)),
                    ("fragments", RpcValue::long(i64::try_from(s.fragments).unwrap_or(i64::MAX))),
                ]));
                Ok(())
            },
        );
        reg_or_log(reg, "core.info", &["Verbose info, including version number, compile flags, compiler,repository hash a.s.o."], |c| {
            c.add(RpcValue::structure([
                ("version", RpcValue::Str(format!("ser {}", env!("CARGO_PKG_VERSION")))),
                ("id", RpcValue::from(option_env!("SER_GIT_ID").unwrap_or("unknown"))),
                ("compiler", RpcValue::from(option_env!("SER_RUSTC_VERSION").unwrap_or("rustc"))),
                ("compiled", RpcValue::from(option_env!("SER_BUILD_DATE").unwrap_or(""))),
                ("flags", RpcValue::Str(crate::version::BUILD_FLAGS.join(", "))),
            ]));
            Ok(())
        });
        reg_or_log(
            reg,
            "core.sockets_list",
            &["List local SIP server listen sockets"],
            |c| {
                let members = ser_children::socket::all()
                    .iter()
                    .map(|s| {
                        let a = s.addr();
                        (
                            "socket".to_owned(),
                            RpcValue::structure([
                                ("proto", RpcValue::from(s.proto().as_str())),
                                ("address", RpcValue::Str(a.ip().to_string())),
                                ("port", RpcValue::from(u32::from(a.port()))),
                                ("mcast", RpcValue::from("no")),
                                ("mhomed", RpcValue::from("no")),
                                ("virtual", RpcValue::from("no")),
                            ]),
                        )
                    })
                    .collect();
                c.add(RpcValue::Struct(members));
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.udp_info",
            &["Returns udp related info: sockets and receiver processes."],
            |c| {
                let sockets = ser_children::socket::all()
                    .iter()
                    .filter(|s| s.proto() == Proto::Udp)
                    .count();
                let receivers = process_table()
                    .filter(|p| p.desc.starts_with("udp receiver"))
                    .count();
                c.add(RpcValue::structure([
                    ("sockets", RpcValue::from(sockets)),
                    ("receivers", RpcValue::from(receivers)),
                ]));
                Ok(())
            },
        );
        reg_or_log(reg, "core.tcp_info", &["Returns tcp related info."], |c| {
            let readers = process_table()
                .filter(|p| p.desc.starts_with("tcp receiver"))
                .count();
            let cfg = ser_children::tcp_conn::config();
            c.add(RpcValue::structure([
                ("readers", RpcValue::from(readers)),
                ("max_connections", RpcValue::from(cfg.max_connections)),
                (
                    "opened_connections",
                    RpcValue::from(ser_children::tcp::open_connections()),
                ),
            ]));
            Ok(())
        });
        // From the shared connection table: each connection with the worker
        // holding it and its aliases (Via sent-by names).
        reg_or_log(
            reg,
            "core.tcp_list",
            &["Returns tcp connections details."],
            |c| {
                let names = ser_children::tcp_conn::list_all();
                for (peer, id, pid, _) in names.iter().filter(|n| !n.3) {
                    let aliases: Vec<RpcValue> = names
                        .iter()
                        .filter(|n| n.3 && n.1 == *id)
                        .map(|n| RpcValue::from(n.0.to_string()))
                        .collect();
                    c.add(RpcValue::structure([
                        ("id", RpcValue::from(format!("{id:x}"))),
                        ("type", RpcValue::from("TCP")),
                        ("src_ip", RpcValue::from(peer.ip().to_string())),
                        ("src_port", RpcValue::from(u32::from(peer.port()))),
                        ("pid", RpcValue::from(*pid)),
                        ("aliases", RpcValue::from(aliases)),
                    ]));
                }
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.kill",
            &["Sends the given signal to server."],
            |c| {
                let sig = c.scan_opt_int(0)?.unwrap_or(libc::SIGTERM);
                let sig = nix::sys::signal::Signal::try_from(sig)
                    .map_err(|_| RpcFault::new(400, format!("bad signal {sig}")))?;
                let main = process_table()
                    .next()
                    .filter(|p| p.pid > 0)
                    .ok_or_else(|| RpcFault::new(500, "no main process"))?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(main.pid), sig)
                    .map_err(|e| RpcFault::new(500, format!("kill failed: {e}")))?;
                Ok(())
            },
        );
        reg_or_log(reg, "core.echo", &["Returns back its parameters."], |c| {
            for p in c.params().to_vec() {
                c.add(p);
            }
            Ok(())
        });
        reg_or_log(
            reg,
            "core.printi",
            &["Returns the integers given as parameters."],
            |c| {
                for i in 0..c.params().len().max(1) {
                    let n = c.scan_int(i)?;
                    c.add(RpcValue::Int(n));
                }
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "core.prints",
            &["Returns the strings given as parameters."],
            |c| {
                for i in 0..c.params().len().max(1) {
                    let s = c.scan_str(i)?;
                    c.add(RpcValue::Str(s));
                }
                Ok(())
            },
        );
        reg_or_log(
            reg,
            "corex.list_sockets",
            &["List listening sockets"],
            |c| {
                let rows = ser_children::socket::all()
                    .iter()
                    .map(|s| {
                        let ip = s.addr().ip().to_string();
                        RpcValue::structure([
                            ("PROTO", RpcValue::from(s.proto().as_str())),
                            ("NAME", RpcValue::Str(ip.clone())),
                            ("ADDRLIST", RpcValue::structure([("ADDR", ip)])),
                            ("PORT", RpcValue::Str(s.addr().port().to_string())),
                            ("MCAST", RpcValue::from("no")),
                            ("MHOMED", RpcValue::from("no")),
                            ("VIRTUAL", RpcValue::from("no")),
                            ("SOCKNAME", RpcValue::from("-")),
                            ("ADVERTISE", RpcValue::from("-")),
                        ])
                    })
                    .collect();
                c.add(RpcValue::Array(rows));
                Ok(())
            },
        );
        let cfg = self.cfg.clone();
        reg_or_log(
            reg,
            "corex.debug",
            &["Control the global level of debug"],
            move |c| {
                let old = match cfg.current("core", "debug") {
                    Some(Value::Int(n)) => n,
                    _ => 0,
                };
                match c.scan_opt_int(0)? {
                    None => c.add(RpcValue::structure([("debug", RpcValue::from(old))])),
                    Some(new) => {
                        cfg.set("core", "debug", Value::Int(i64::from(new)))
                            .map_err(|_| RpcFault::new(500, "cannot set the debug level"))?;
                        c.add(RpcValue::structure([
                            ("old", RpcValue::from(old)),
                            ("new", RpcValue::Int(new)),
                        ]));
                    }
                }
                Ok(())
            },
        );
    }

    /// `stats.get_statistics`: the core's `shmem:` group and every module's
    /// `<module>.stats` struct as group `<module>`.
    fn register_stats(&self, reg: &mut RpcRegistry, modules: &Modules) {
        // The modules' own methods, in a registry of this handler's own (a
        // method cannot call the registry it is registered in).
        let mut side = RpcRegistry::new();
        modules.register_rpc(&mut side);
        let side = Rc::new(side);
        reg_or_log(
            reg,
            "stats.get_statistics",
            &["get core and modules stats"],
            move |c| {
                if c.params().is_empty() {
                    return Err(RpcFault::new(400, "Please provide which stats to retrieve"));
                }
                let all = statistics(&side);
                for i in 0..c.params().len() {
                    let want = c.scan_str(i)?;
                    for (group, name, value) in &all {
                        let hit = match want.strip_suffix(':') {
                            _ if want == "all" => true,
                            Some(g) => g == group,
                            None => want == *name || want == format!("{group}:{name}"),
                        };
                        if hit {
                            c.add(RpcValue::Str(format!("{group}:{name} = {value}")));
                        }
                    }
                }
                Ok(())
            },
        );
    }
}

/// Every statistic as `(group, name, value)`, groups and names sorted.
fn statistics(side: &RpcRegistry) -> Vec<(String, String, String)> {
    let s = ser_shm::stats();
    let mut out: Vec<(String, String, String)> = [
        ("fragments", s.fragments),
        ("free_size", s.free),
        ("max_used_size", s.max_used),
        ("real_used_size", s.real_used),
        ("total_size", s.total),
        ("used_size", s.used),
    ]
    .into_iter()
    .map(|(n, v)| ("shmem".to_owned(), n.to_owned(), v.to_string()))
    .collect();
    let methods: Vec<&str> = side.list().filter(|m| m.ends_with(".stats")).collect();
    for m in methods {
        // Groups are named after the module, as Kamailio's (`ul.*` is usrloc's).
        let group = match m.trim_end_matches(".stats") {
            "ul" => "usrloc",
            g => g,
        };
        let Ok(values) = side.call(m, Vec::new()) else {
            continue;
        };
        let mut members: Vec<(String, String, String)> = values
            .into_iter()
            .flat_map(|v| match v {
                RpcValue::Struct(ms) => ms,
                _ => Vec::new(),
            })
            .filter(|(_, v)| !matches!(v, RpcValue::Struct(_) | RpcValue::Array(_)))
            .map(|(n, v)| (group.to_owned(), n, v.to_string()))
            .collect();
        members.sort();
        out.extend(members);
    }
    out
}

fn cfg_fault(e: SetError) -> RpcFault {
    match e {
        SetError::NoMemory => RpcFault::new(500, "out of shared memory"),
        _ => RpcFault::new(400, "Failed to set the variable"),
    }
}

fn cfg_value(v: Value) -> RpcValue {
    match v {
        Value::Int(n) => i32::try_from(n).map_or(RpcValue::long(n), RpcValue::Int),
        other => RpcValue::Str(other.as_str().into_owned()),
    }
}

/// The cfg framework's methods (Kamailio's `cfg_rpc` module): changes are
/// committed at once; every process takes them up at its next message.
fn register_cfg(reg: &mut RpcRegistry, cfg: Arc<RuntimeCfg>) {
    type Conv = fn(&dyn RpcCtx, usize) -> Result<Value, RpcFault>;
    let as_int: Conv = |c, i| Ok(Value::Int(i64::from(c.scan_int(i)?)));
    let as_str: Conv = |c, i| Ok(Value::Str(c.scan_str(i)?));
    let as_any: Conv = |c, i| match c.param(i) {
        Some(RpcValue::Int(n)) => Ok(Value::Int(i64::from(*n))),
        _ => Ok(Value::Str(c.scan_str(i)?)),
    };
    const SET_NOW: &[&str] =
        &["Set the value of a configuration variable and commit the change immediately"];
    const SET_DELAYED: &[&str] =
        &["Prepare the change of a configuration variable, but does not commit the new value yet"];
    let setters: [(&'static str, &'static [&'static str], Conv, bool); 8] = [
        ("cfg.set_now_int", SET_NOW, as_int, false),
        ("cfg.set_now_string", SET_NOW, as_str, false),
        ("cfg.set", SET_NOW, as_any, false),
        ("cfg.seti", SET_NOW, as_int, false),
        ("cfg.sets", SET_NOW, as_str, false),
        ("cfg.set_delayed", SET_DELAYED, as_any, true),
        ("cfg.set_delayed_int", SET_DELAYED, as_int, true),
        ("cfg.set_delayed_string", SET_DELAYED, as_str, true),
    ];
    // Prepared changes of the ctl process (Kamailio keeps one list per
    // cfg_rpc context, shared by every client too).
    let pending: Rc<RefCell<Vec<Change>>> = Rc::default();
    for (name, doc, conv, delayed) in setters {
        let cfg = cfg.clone();
        let pending = pending.clone();
        reg_or_log(reg, name, doc, move |c| {
            let group = c.scan_str(0)?;
            let var = c.scan_str(1)?;
            let value = conv(c, 2)?;
            let change = cfg.check(&group, &var, value).map_err(cfg_fault)?;
            if delayed {
                let mut p = pending.borrow_mut();
                p.retain(|old| {
                    cfg.describe_change(old).0 != group || cfg.describe_change(old).1 != var
                });
                p.push(change);
                Ok(())
            } else {
                cfg.commit(vec![change]).map_err(cfg_fault)
            }
        });
    }
    let (c2, p2) = (cfg.clone(), pending.clone());
    reg_or_log(
        reg,
        "cfg.commit",
        &["Commit the previously prepared configuration changes"],
        move |_| {
            let changes = std::mem::take(&mut *p2.borrow_mut());
            c2.commit(changes).map_err(cfg_fault)
        },
    );
    let p2 = pending.clone();
    reg_or_log(
        reg,
        "cfg.rollback",
        &["Drop the prepared configuration changes"],
        move |_| {
            p2.borrow_mut().clear();
            Ok(())
        },
    );
    let (c2, p2) = (cfg.clone(), pending);
    reg_or_log(
        reg,
        "cfg.diff",
        &["List the pending configuration changes that have not been committed yet"],
        move |c| {
            for change in p2.borrow().iter() {
                let (group, name, new) = c2.describe_change(change);
                let old = c2.current(group, name).unwrap_or_default();
                c.add(RpcValue::structure([
                    ("group name", RpcValue::from(group)),
                    ("variable name", RpcValue::from(name)),
                    ("old value", cfg_value(old)),
                    ("new value", cfg_value(new.clone())),
                ]));
            }
            Ok(())
        },
    );
    let c2 = cfg.clone();
    reg_or_log(
        reg,
        "cfg.get",
        &["Get the value of a configuration variable"],
        move |c| {
            let group = c.scan_str(0)?;
            match c.scan_opt_str(1)? {
                Some(var) => {
                    let v = c2
                        .current(&group, &var)
                        .ok_or_else(|| RpcFault::new(400, "Failed to get the variable"))?;
                    c.add(cfg_value(v));
                }
                None => {
                    let members: Vec<(String, RpcValue)> = c2
                        .names()
                        .filter(|(g, _)| *g == group)
                        .filter_map(|(g, n)| Some((n.to_owned(), cfg_value(c2.current(g, n)?))))
                        .collect();
                    if members.is_empty() {
                        return Err(RpcFault::new(400, "Failed to get the variable"));
                    }
                    c.add(RpcValue::Struct(members));
                }
            }
            Ok(())
        },
    );
    let c2 = cfg.clone();
    reg_or_log(
        reg,
        "cfg.help",
        &["Print the description of a configuration variable"],
        move |c| {
            let group = c.scan_str(0)?;
            let var = c.scan_str(1)?;
            let (desc, int) = c2
                .describe(&group, &var)
                .ok_or_else(|| RpcFault::new(400, "Failed to get the variable description"))?;
            c.add(RpcValue::Str(desc.to_owned()));
            let kind = if int { "integer" } else { "string" };
            c.add(RpcValue::Str(format!("(parameter type is {kind})")));
            Ok(())
        },
    );
    reg_or_log(
        reg,
        "cfg.list",
        &["List the configuration variables"],
        move |c| {
            for (g, n) in cfg.names() {
                c.add(RpcValue::Str(format!("{g}: {n}")));
            }
            Ok(())
        },
    );
}

/// `ser 3.0.0 (x86_64/linux)`, as `core.version` answers.
pub fn version_string() -> String {
    format!(
        "ser {} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// `Sun Nov 29 17:23:30 2026`: C's `ctime` without the newline, in UTC.
pub fn ctime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WDAY: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {day:2} {:02}:{:02}:{:02} {year}",
        WDAY[usize::try_from(days.rem_euclid(7)).unwrap_or(0)],
        MON[usize::try_from(month - 1).unwrap_or(0)],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_like_c() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_973_010);
        assert_eq!(ctime(t), "Sun Nov 29 17:23:30 2026");
        assert_eq!(ctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
    }

    #[test]
    fn cfg_methods_and_stats() {
        let mut custom = ser_modules::runtime::cfg::StaticCfg::default();
        custom.declare(
            "pstn",
            "gw_ip",
            Value::Str(String::new()),
            "PSTN GW Address",
        );
        let core = CoreRpc {
            started: SystemTime::now(),
            cfg: Arc::new(RuntimeCfg::new(0, &custom)),
        };
        let mut modules = Modules::default();
        modules.load("cfg_rpc").unwrap();
        let mut reg = RpcRegistry::new();
        core.register(&mut reg, &modules);
        let s = |v: &str| RpcValue::Str(v.into());
        reg.call(
            "cfg.set_now_string",
            vec![s("pstn"), s("gw_ip"), s("1.2.3.4")],
        )
        .unwrap();
        assert_eq!(
            reg.call("cfg.get", vec![s("pstn"), s("gw_ip")]).unwrap(),
            [s("1.2.3.4")]
        );
        assert_eq!(
            reg.call("cfg.get", vec![s("nope"), s("x")]).unwrap_err(),
            RpcFault::new(400, "Failed to get the variable")
        );
        assert_eq!(
            reg.call("cfg.seti", vec![s("core"), s("debug"), s("x")])
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            reg.call("cfg.help", vec![s("pstn"), s("gw_ip")]).unwrap(),
            [s("PSTN GW Address"), s("(parameter type is string)")]
        );
        reg.call(
            "cfg.set_delayed_string",
            vec![s("pstn"), s("gw_ip"), s("9.9.9.9")],
        )
        .unwrap();
        assert_eq!(
            reg.call("cfg.get", vec![s("pstn"), s("gw_ip")]).unwrap(),
            [s("1.2.3.4")]
        );
        assert_eq!(
            reg.call("cfg.diff", vec![]).unwrap(),
            [RpcValue::structure([
                ("group name", s("pstn")),
                ("variable name", s("gw_ip")),
                ("old value", s("1.2.3.4")),
                ("new value", s("9.9.9.9")),
            ])]
        );
        reg.call("cfg.commit", vec![]).unwrap();
        assert_eq!(
            reg.call("cfg.get", vec![s("pstn"), s("gw_ip")]).unwrap(),
            [s("9.9.9.9")]
        );
        assert!(reg.call("cfg.diff", vec![]).unwrap().is_empty());
        reg.call("cfg.set_delayed", vec![s("pstn"), s("gw_ip"), s("x")])
            .unwrap();
        reg.call("cfg.rollback", vec![]).unwrap();
        reg.call("cfg.commit", vec![]).unwrap();
        assert_eq!(
            reg.call("cfg.get", vec![s("pstn"), s("gw_ip")]).unwrap(),
            [s("9.9.9.9")]
        );
        assert_eq!(
            reg.call(
                "cfg.set_delayed_int",
                vec![s("nope"), s("x"), RpcValue::Int(1)]
            )
            .unwrap_err(),
            RpcFault::new(400, "Failed to set the variable")
        );
        assert_eq!(
            reg.call("cfg.list", vec![]).unwrap(),
            [s("core: debug"), s("pstn: gw_ip")]
        );
        let stats = reg.call("stats.get_statistics", vec![s("shmem:")]).unwrap();
        assert_eq!(stats.len(), 6);
        assert!(stats[0].as_str().unwrap().starts_with("shmem:fragments = "));
        assert_eq!(
            reg.call("stats.get_statistics", vec![s("free_size")])
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            reg.call("stats.get_statistics", vec![]).unwrap_err().code,
            400
        );
        assert_eq!(
            reg.call("core.printi", vec![RpcValue::Int(3)]).unwrap(),
            [RpcValue::Int(3)]
        );
        assert_eq!(reg.call("core.shmmem", vec![s("x")]).unwrap_err().code, 500);
    }
}
