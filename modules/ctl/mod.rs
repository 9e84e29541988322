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
        Ok(())
    }
}

/// `loadmodule "mi_fifo"`: `modparam("mi_fifo", "fifo_name", "/tmp/kamailio_fifo")`.
pub struct MiFifo;

static MI_FIFO_PARAMS: &[ParamExport] = &[
    ParamExport::str("fifo_name", "/tmp/kamailio_fifo"),
    ParamExport::int("fifo_mode", 0o660),
    ParamExport::str("reply_dir", "/tmp/"),
];

impl Module for MiFifo {
    fn name(&self) -> &'static str {
        "mi_fifo"
    }
    fn params(&self) -> &'static [ParamExport] {
        MI_FIFO_PARAMS
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
    let mut out = Vec::new();
    for l in modules.iter() {
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
    }
    out
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
