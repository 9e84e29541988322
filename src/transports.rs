//! TLS and SCTP at start-up: SER 3.0's core parameters (`enable_tls`,
//! `tls_port_no`, `tls_*`, `disable_sctp`, `sctp_children`, `-S`, `-Q`),
//! which listen addresses they add or drop, and the TLS profiles built
//! before the fork.
//!
//! SER's rules: `enable_tls=yes` makes every listen address given without
//! protocol (or every interface, without `listen`) listen on TLS too, on
//! `tls_port_no`; with TLS enabled but no tls module loaded, TLS is turned
//! off with a warning; `enable_tls=no` leaves `tls:` addresses out, saying
//! so. The core `tls_*` parameters are the tls module's defaults: a module
//! parameter left at its default takes the core's value. SCTP is "auto" by
//! default: addresses without protocol get SCTP only when the kernel has it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ser_children::{ListenSocket, Proto};
use ser_parser::ast::{Item, Value, ValueKind};
use ser_parser::{Diagnostic, Parsed};

use crate::flags::CmdLine;
use crate::globals::Globals;
use crate::listen::{self, BindAddr, Extra};

/// The TLS and SCTP core settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportGlobals {
    /// `enable_tls=`/`tls_enable=` (`disable_tls=` inverted); `None`: not
    /// said (`tls:` addresses work when the tls module is loaded).
    pub enable_tls: Option<bool>,
    /// `tls_port_no=` (5061).
    pub tls_port: u16,
    /// The core `tls_*` values, under the tls module's parameter names.
    pub tls_core: Vec<(&'static str, String)>,
    /// `enable_sctp=`/`disable_sctp=`, `-S`; `None`: auto (SCTP where the
    /// kernel has it).
    pub enable_sctp: Option<bool>,
    /// `sctp_children=`, `-Q`; `None`: `children`.
    pub sctp_children: Option<u32>,
}

impl Default for TransportGlobals {
    fn default() -> Self {
        TransportGlobals {
            enable_tls: None,
            tls_port: listen::TLS_PORT,
            tls_core: Vec::new(),
            enable_sctp: None,
            sctp_children: None,
        }
    }
}

/// The core parameter and the tls module parameter it gives a default to.
const TLS_CORE: &[(&str, &str)] = &[
    ("tls_method", "tls_method"),
    ("tls_verify", "verify_certificate"),
    ("tls_require_certificate", "require_certificate"),
    ("tls_certificate", "certificate"),
    ("tls_private_key", "private_key"),
    ("tls_ca_list", "ca_list"),
    ("tls_handshake_timeout", "handshake_timeout"),
    ("tls_send_timeout", "send_timeout"),
];

fn boolean(v: &Value) -> Result<bool, Diagnostic> {
    match &v.kind {
        ValueKind::Bool(b) => Ok(*b),
        ValueKind::Int(n) => Ok(*n != 0),
        _ => Err(Diagnostic::error(v.span, "yes/no expected")),
    }
}

fn text(v: &Value) -> Result<String, Diagnostic> {
    match &v.kind {
        ValueKind::Str(s) | ValueKind::Ident(s) => Ok(s.clone()),
        ValueKind::Int(n) => Ok(n.to_string()),
        ValueKind::Bool(b) => Ok(u8::from(*b).to_string()),
        _ => Err(Diagnostic::error(v.span, "string expected")),
    }
}

fn number<T: TryFrom<i64>>(v: &Value) -> Result<T, Diagnostic> {
    match &v.kind {
        ValueKind::Int(n) => {
            T::try_from(*n).map_err(|_| Diagnostic::error(v.span, "number out of range"))
        }
        _ => Err(Diagnostic::error(v.span, "number expected")),
    }
}

impl TransportGlobals {
    /// Reads the config's core assignments of TLS and SCTP settings.
    pub fn from_config(items: &[Item]) -> (TransportGlobals, Vec<Diagnostic>) {
        let mut t = TransportGlobals::default();
        let mut errors = Vec::new();
        for item in items {
            let Item::Assign { name, value, .. } = item else {
                continue;
            };
            let r = (|| -> Result<(), Diagnostic> {
                match name.as_str() {
                    "enable_tls" | "tls_enable" => t.enable_tls = Some(boolean(value)?),
                    "disable_tls" | "tls_disable" => t.enable_tls = Some(!boolean(value)?),
                    "tls_port_no" => t.tls_port = number(value)?,
                    "enable_sctp" => t.enable_sctp = Some(boolean(value)?),
                    "disable_sctp" => t.enable_sctp = Some(!boolean(value)?),
                    "sctp_children" => t.sctp_children = Some(number(value)?),
                    n => {
                        if let Some((_, key)) = TLS_CORE.iter().find(|(c, _)| *c == n) {
                            let v = text(value)?;
                            t.tls_core.retain(|(k, _)| k != key);
                            t.tls_core.push((key, v));
                        }
                    }
                }
                Ok(())
            })();
            if let Err(mut d) = r {
                d.message = format!("{name}: {}", d.message);
                errors.push(d);
            }
        }
        (t, errors)
    }

    /// `-S`, `-Q`: the command line wins.
    pub fn apply_cmdline(&mut self, cl: &CmdLine) {
        if cl.disable_sctp {
            self.enable_sctp = Some(false);
        }
        if let Some(n) = cl.sctp_children {
            self.sctp_children = Some(n);
        }
    }

    /// SCTP receivers per SCTP socket.
    pub fn sctp_workers(&self, g: &Globals) -> u32 {
        self.sctp_children.unwrap_or(g.children)
    }
}

/// Whether the config loads module `name` (`loadmodule "tls"`,
/// `"tls.so"`, `"/path/tls.so"`).
pub fn loads_module(parsed: &Parsed, name: &str) -> bool {
    parsed.config.items().iter().any(|i| match i {
        Item::LoadModule { path, .. } => {
            let file = path.rsplit('/').next().unwrap_or(path);
            file.strip_suffix(".so").unwrap_or(file) == name
        }
        _ => false,
    })
}

/// The sockets to bind: the listen specs resolved with SER's TLS and
/// SCTP rules (see the module doc). `tls_module`: the tls module is loaded.
pub fn resolve_binds(
    g: &Globals,
    t: &TransportGlobals,
    tls_module: bool,
) -> Result<Vec<BindAddr>, String> {
    let tls = match t.enable_tls {
        Some(true) if !tls_module => {
            log::warn!(
                "tls support enabled (enable_tls), but the tls module is not loaded \
                 (loadmodule \"tls\"): tls disabled"
            );
            false
        }
        Some(on) => on,
        None => false,
    };
    let sctp = match t.enable_sctp {
        Some(false) => false,
        Some(true) => {
            ser_children::sctp::check_kernel().map_err(|e| format!("enable_sctp: {e}"))?;
            true
        }
        None => ser_children::sctp::check_kernel().is_ok(),
    };
    let extra = Extra {
        tls_port: t.tls_port,
        tls,
        sctp,
    };
    let binds = listen::resolve_all_with(&g.listen, g.port, g.disable_tcp, extra)?;
    let tls_off = t.enable_tls == Some(false) || (t.enable_tls == Some(true) && !tls);
    Ok(binds
        .into_iter()
        .filter(|b| match b.proto {
            Proto::Tls if tls_off => {
                log::warn!(
                    "listen tls:{} ignored: tls is disabled (enable_tls=no, or no tls module)",
                    b.addr
                );
                false
            }
            Proto::Sctp if t.enable_sctp == Some(false) => {
                log::info!(
                    "listen sctp:{} ignored: sctp is disabled (-S, disable_sctp)",
                    b.addr
                );
                false
            }
            _ => true,
        })
        .collect())
}

/// Builds the TLS profiles from the `tls` module's parameters (the core
/// `tls_*` values where they are left at their defaults) and its `config`
/// tls.cfg, before the fork. Relative file names are relative to the main
/// config file's directory. Listening on TLS needs the module.
pub fn configure_tls(
    init: &crate::route::serve::ScriptInit,
    sockets: &[ListenSocket],
    t: &TransportGlobals,
    cfg_file: &Path,
) -> Result<(), String> {
    let tls_listen: Vec<SocketAddr> = sockets
        .iter()
        .filter(|s| s.proto() == Proto::Tls)
        .map(ListenSocket::addr)
        .collect();
    let modules = init.script().modules();
    let Some(tls) = modules.iter().find(|l| l.module.name() == "tls") else {
        return match tls_listen.is_empty() {
            false => Err("listening on tls needs the tls module (loadmodule \"tls\")".into()),
            true => Ok(()),
        };
    };
    let cfg_dir = cfg_file.parent().unwrap_or(Path::new(""));
    let params = ser_modules::tls::profile_params(&tls.env, &t.tls_core);
    let mut base = ser_children::tls::Profile::default();
    for (k, v) in &params.profile {
        base.set(k, v).map_err(|e| format!("tls: {e}"))?;
    }
    base.resolve_paths(cfg_dir);
    let tls_cfg = (!params.config.is_empty())
        .then(|| ser_children::tls_profile::resolve_path(Path::new(&params.config), cfg_dir));
    ser_children::tls::configure(
        &base,
        tls_cfg.as_deref(),
        cfg_dir,
        &tls_listen,
        Duration::from_secs(params.handshake_timeout.max(1)),
        Duration::from_secs(params.send_timeout.max(1)),
    )?;
    for line in ser_children::tls::profiles().map_or(&[][..], |p| &p.summary[..]) {
        log::info!("tls profile {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals(cfg: &str) -> (TransportGlobals, Vec<Diagnostic>) {
        let parsed =
            ser_parser::parse_str("t.cfg", cfg, &Default::default()).expect("config parses");
        TransportGlobals::from_config(parsed.config.items())
    }

    #[test]
    fn tls_and_sctp_decide_the_listen_addresses() {
        let spec = |s: &str| listen::ListenSpec::parse(s).unwrap();
        let names = |b: Vec<BindAddr>| -> Vec<String> {
            b.iter()
                .map(|b| format!("{}:{}", b.proto, b.addr))
                .collect()
        };
        let g = Globals {
            listen: vec![
                spec("127.0.0.1"),
                spec("tls:127.0.0.2:5071"),
                spec("sctp:127.0.0.3"),
            ],
            ..Globals::default()
        };
        let on = TransportGlobals {
            enable_tls: Some(true),
            enable_sctp: Some(false),
            ..TransportGlobals::default()
        };
        // enable_tls=yes: the address without protocol gets TLS on 5061
        assert_eq!(
            names(resolve_binds(&g, &on, true).unwrap()),
            [
                "udp:127.0.0.1:5060",
                "tcp:127.0.0.1:5060",
                "tls:127.0.0.1:5061",
                "tls:127.0.0.2:5071",
            ]
        );
        // ... but not without the tls module: tls off, tls: addresses too
        assert_eq!(
            names(resolve_binds(&g, &on, false).unwrap()),
            ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
        );
        let off = TransportGlobals {
            enable_tls: Some(false),
            ..on.clone()
        };
        assert_eq!(
            names(resolve_binds(&g, &off, true).unwrap()),
            ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
        );
        // unset: tls: addresses as given, nothing added
        let unset = TransportGlobals {
            enable_tls: None,
            ..on.clone()
        };
        assert_eq!(
            names(resolve_binds(&g, &unset, true).unwrap()),
            [
                "udp:127.0.0.1:5060",
                "tcp:127.0.0.1:5060",
                "tls:127.0.0.2:5071"
            ]
        );
        // enable_sctp=yes needs the kernel's SCTP
        let sctp = TransportGlobals {
            enable_sctp: Some(true),
            ..unset
        };
        match ser_children::sctp::check_kernel() {
            Ok(()) => assert!(resolve_binds(&g, &sctp, true).is_ok()),
            Err(_) => {
                let e = resolve_binds(&g, &sctp, true).unwrap_err();
                assert!(e.contains("modprobe sctp"), "{e}");
            }
        }
    }

    #[test]
    fn core_tls_and_sctp_parameters() {
        let (t, errors) = globals(
            "enable_tls=yes\ntls_port_no=5071\ntls_verify=1\ntls_certificate=\"c.pem\"\n\
             tls_method=TLSv1.2\ntls_handshake_timeout=5\ndisable_sctp=yes\nsctp_children=3\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(t.enable_tls, Some(true));
        assert_eq!(t.tls_port, 5071);
        assert_eq!(t.enable_sctp, Some(false));
        assert_eq!(t.sctp_children, Some(3));
        let core: Vec<(&str, &str)> = t.tls_core.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            core,
            [
                ("verify_certificate", "1"),
                ("certificate", "c.pem"),
                ("tls_method", "TLSv1.2"),
                ("handshake_timeout", "5"),
            ]
        );
        let (t, _) = globals("disable_tls=1\n");
        assert_eq!(t.enable_tls, Some(false));
        let (_, errors) = globals("tls_port_no=\"x\"\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("tls_port_no:"), "{errors:?}");
    }
}
