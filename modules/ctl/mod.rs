//! Management modules: `ctl` (binrpc listeners, SER FIFO), `mi_fifo`
//! (Kamailio's FIFO), `mi_rpc` and `cfg_rpc`.  The servers themselves are
//! ser-fifo's; these modules carry the script-side parameters and the
//! `cfg.*` RPCs, and the ctl process serves every module's RPCs on
//! [`listen_addrs`].

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
            ser_fifo::CtlAddr::parse(a).map_err(|e| format!("ctl: {e}"))?;
        }
        mode_of(env.int("mode")).map(|_| ())
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

/// `loadmodule "cfg_rpc"`: the cfg framework's RPCs (`cfg.get` reads the
/// custom parameters; runtime changes come with the shm cfg store).
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
    pub addr: ser_fifo::CtlAddr,
    /// Mode and owner of a Unix socket or FIFO file.
    pub perms: ser_fifo::SocketPerms,
}

/// [`listen_addrs`] parsed, with ctl's `mode`/`user`/`group` (mi_fifo: its
/// `fifo_mode`, `fifo_user`, `fifo_group`).  Errors name the bad address or mode.
pub fn listen_specs(modules: &Modules) -> Result<Vec<ListenSpec>, String> {
    let mut out = Vec::new();
    for l in modules.iter() {
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
            let addr =
                ser_fifo::CtlAddr::parse(&a).map_err(|e| format!("{}: {e}", l.module.name()))?;
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
    }
}
