//! Management modules: `ctl` (binrpc listeners, SER FIFO), `mi_fifo`
//! (Kamailio's FIFO), `mi_rpc` and `cfg_rpc`.  The servers themselves are
//! ser-fifo's and the core binds and serves them (src/ctl.rs, the ctl
//! process); these modules carry the script-side parameters
//! ([`listen_specs`]), and `cfg_rpc` switches on the core's `cfg.*` methods
//! (src/core_rpc.rs), whose values live in the core's runtime cfg store.

use ser_fifo::{CtlAddr, RpcRegistry, RpcValue};

use crate::iface::{Module, ModuleEnv, ParamExport, ParamValue};
use crate::registry::Modules;

/// `loadmodule "ctl"`: `modparam("ctl", "binrpc", "unixs:/tmp/ser_ctl")`,
/// `modparam("ctl", "fifo", "fifo:/tmp/ser_fifo")` (both may repeat).
pub struct Ctl;

static CTL_PARAMS: &[ParamExport] = &[
    ParamExport::str_multi("binrpc", "unixs:/tmp/ser_ctl"),
    ParamExport::str_multi("fifo", ""),
    // `0600` in the config is octal (the lexer reads a leading 0 as octal).
    ParamExport::int("mode", 0o600),
    ParamExport::str("user", ""),
    ParamExport::str("group", ""),
];

impl Module for Ctl {
    fn name(&self) -> &'static str {
        "ctl"
    }
    fn params(&self) -> &'static [ParamExport] {
        CTL_PARAMS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        for a in addrs(env, "binrpc").iter().chain(addrs(env, "fifo").iter()) {
            CtlAddr::parse(a).map_err(|e| format!("ctl: {e}"))?;
        }
        mode_of(env.int("mode")).map(|_| ())
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let mut rows = Vec::new();
        for a in addrs(env, "binrpc").into_iter().chain(
            addrs(env, "fifo")
                .into_iter()
                .map(|f| format!("fifo:{}", f.trim_start_matches("fifo:"))),
        ) {
            if let Ok(addr) = CtlAddr::parse(&a) {
                rows.push(listen_row(&addr));
            }
        }
        let r = reg.register("ctl.listen", &["list ctl listen sockets"], move |ctx| {
            for row in &rows {
                for v in row {
                    ctx.add(v.clone());
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            log::error!("ctl: cannot register ctl.listen: {e}");
        }
    }
}

/// What `ctl.listen` says of a listener, as Kamailio's ctl: protocol,
/// transport, address, port (empty for files).
fn listen_row(addr: &CtlAddr) -> [RpcValue; 4] {
    let s = |t: &str| RpcValue::Str(t.to_owned());
    match addr {
        CtlAddr::UnixStream(p) => [
            s("binrpc"),
            s("unix_stream"),
            s(&p.to_string_lossy()),
            s(""),
        ],
        CtlAddr::UnixDgram(p) => [s("binrpc"), s("unix_dgram"), s(&p.to_string_lossy()), s("")],
        CtlAddr::Fifo(p) => [s("fifo"), s("fifo"), s(&p.to_string_lossy()), s("")],
        CtlAddr::Json(inner) => {
            let mut row = listen_row(inner);
            row[0] = s("jsonrpc");
            row
        }
        CtlAddr::Tcp { host, port } => [
            s("binrpc"),
            s("tcp"),
            s(host),
            RpcValue::Int(i32::from(*port)),
        ],
        CtlAddr::Udp { host, port } => [
            s("binrpc"),
            s("udp"),
            s(host),
            RpcValue::Int(i32::from(*port)),
        ],
    }
}

/// `loadmodule "mi_fifo"`: `modparam("mi_fifo", "fifo_name", "/tmp/kamailio_fifo")`.
pub struct MiFifo;

static MI_FIFO_PARAMS: &[ParamExport] = &[
    ParamExport::str("fifo_name", "/tmp/kamailio_fifo"),
    ParamExport::int("fifo_mode", 0o660),
    ParamExport::str("fifo_user", ""),
    ParamExport::str("fifo_group", ""),
    ParamExport::str("reply_dir", "/tmp/"),
];

impl Module for MiFifo {
    fn name(&self) -> &'static str {
        "mi_fifo"
    }
    fn params(&self) -> &'static [ParamExport] {
        MI_FIFO_PARAMS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        mode_of(env.int("fifo_mode")).map(|_| ())
    }
}

/// `loadmodule "mi_rpc"`: MI commands over RPC are the same registry here.
pub struct MiRpc;

impl Module for MiRpc {
    fn name(&self) -> &'static str {
        "mi_rpc"
    }
}

/// `loadmodule "cfg_rpc"`: the cfg framework's RPCs (`cfg.get`, `cfg.list`,
/// `cfg.help`, `cfg.set_now_*`, `cfg.seti`/`sets`), registered by the core
/// when this module is loaded.
pub struct CfgRpc;

impl Module for CfgRpc {
    fn name(&self) -> &'static str {
        "cfg_rpc"
    }
}

/// A file mode parameter: 0..=0o7777.
fn mode_of(v: i64) -> Result<u32, String> {
    u32::try_from(v)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("bad file mode {v:o} (octal expected, e.g. 0660)"))
}

fn owner(env: &ModuleEnv, param: &str) -> Option<String> {
    Some(env.str(param)).filter(|s| !s.is_empty())
}

fn addrs(env: &ModuleEnv, param: &str) -> Vec<String> {
    env.all(param)
        .iter()
        .filter_map(|v| match v {
            ParamValue::Str(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// The management addresses the loaded modules ask for, in ser-fifo's
/// syntax (`unixs:/tmp/ser_ctl`, `fifo:/tmp/ser_fifo`).
pub fn listen_addrs(modules: &Modules) -> Vec<String> {
    modules.iter().flat_map(module_addrs).collect()
}

fn module_addrs(l: &crate::registry::Loaded) -> Vec<String> {
    let mut out = Vec::new();
    match l.module.name() {
        "ctl" => {
            out.extend(addrs(&l.env, "binrpc"));
            out.extend(addrs(&l.env, "fifo").into_iter().map(|f| {
                if f.starts_with("fifo:") {
                    f
                } else {
                    format!("fifo:{f}")
                }
            }));
        }
        "mi_fifo" => {
            let name = l.env.str("fifo_name");
            if !name.is_empty() {
                out.push(format!("fifo:{name}"));
            }
        }
        _ => {}
    }
    out
}

/// One management listener the loaded modules ask for: the address and the
/// permissions of its socket/FIFO file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The address, as [`listen_addrs`] gives it.
    pub addr: CtlAddr,
    /// Mode and owner of a Unix socket or FIFO file.
    pub perms: ser_fifo::SocketPerms,
}

/// [`listen_addrs`] parsed, with ctl's `mode`/`user`/`group` (mi_fifo: its
/// `fifo_mode`, `fifo_user`, `fifo_group`).  Errors name the bad address or mode.
pub fn listen_specs(modules: &Modules) -> Result<Vec<ListenSpec>, String> {
    let mut out = Vec::new();
    for l in modules.iter() {
        if l.module.name() == "jsonrpcs" {
            for j in crate::jsonrpcs::listen_addrs(&l.env) {
                let addr = CtlAddr::parse(&j.addr).map_err(|e| format!("jsonrpcs: {e}"))?;
                let perms = ser_fifo::SocketPerms {
                    mode: mode_of(j.mode).map_err(|e| format!("jsonrpcs: {e}"))?,
                    user: j.user,
                    group: j.group,
                };
                out.push(ListenSpec { addr, perms });
            }
            continue;
        }
        let (mode, user, group) = match l.module.name() {
            "ctl" => (
                l.env.int("mode"),
                owner(&l.env, "user"),
                owner(&l.env, "group"),
            ),
            "mi_fifo" => (
                l.env.int("fifo_mode"),
                owner(&l.env, "fifo_user"),
                owner(&l.env, "fifo_group"),
            ),
            _ => continue,
        };
        let perms = ser_fifo::SocketPerms {
            mode: mode_of(mode).map_err(|e| format!("{}: {e}", l.module.name()))?,
            user,
            group,
        };
        for a in module_addrs(l) {
            let addr = CtlAddr::parse(&a).map_err(|e| format!("{}: {e}", l.module.name()))?;
            out.push(ListenSpec {
                addr,
                perms: perms.clone(),
            });
        }
    }
    Ok(out)
}

/// The reply directory of FIFO clients: mi_fifo's `reply_dir`, else `/tmp/`.
pub fn fifo_reply_dir(modules: &Modules) -> String {
    modules
        .iter()
        .find(|l| l.module.name() == "mi_fifo")
        .map(|l| l.env.str("reply_dir"))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/tmp/".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_params() {
        let mut m = Modules::default();
        m.load("ctl").unwrap();
        m.load("mi_fifo.so").unwrap();
        let none = |_: &str| None;
        assert_eq!(
            listen_addrs(&m),
            vec!["unixs:/tmp/ser_ctl", "fifo:/tmp/kamailio_fifo"]
        );
        m.modparam(
            "ctl",
            "binrpc",
            &ParamValue::Str("tcp:127.0.0.1:2046".into()),
            &none,
        )
        .unwrap();
        m.modparam(
            "ctl",
            "binrpc",
            &ParamValue::Str("unixs:/tmp/x".into()),
            &none,
        )
        .unwrap();
        m.modparam(
            "ctl",
            "fifo",
            &ParamValue::Str("fifo:/tmp/ser_fifo".into()),
            &none,
        )
        .unwrap();
        assert_eq!(
            listen_addrs(&m),
            vec![
                "tcp:127.0.0.1:2046",
                "unixs:/tmp/x",
                "fifo:/tmp/ser_fifo",
                "fifo:/tmp/kamailio_fifo"
            ]
        );
        m.modparam("ctl", "mode", &ParamValue::Int(0o640), &none)
            .unwrap();
        let specs = listen_specs(&m).unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!(specs[0].perms.mode, 0o640);
        assert_eq!(specs[3].perms.mode, 0o660);
        assert_eq!(fifo_reply_dir(&m), "/tmp/");

        let mut reg = RpcRegistry::new();
        m.register_rpc(&mut reg);
        let rows = reg.call("ctl.listen", vec![]).unwrap();
        let s = |t: &str| RpcValue::Str(t.into());
        assert_eq!(
            rows,
            [
                s("binrpc"),
                s("tcp"),
                s("127.0.0.1"),
                RpcValue::Int(2046),
                s("binrpc"),
                s("unix_stream"),
                s("/tmp/x"),
                s(""),
                s("fifo"),
                s("fifo"),
                s("/tmp/ser_fifo"),
                s("")
            ]
        );
        m.modparam("ctl", "mode", &ParamValue::Int(0o17777), &none)
            .unwrap();
        assert!(listen_specs(&m).is_err());
    }
}
