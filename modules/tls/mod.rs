//! `tls`: the TLS transport's parameters and RPCs (Kamailio's `tls` module).
//!
//! The transport itself lives with the TCP machinery (`ser_children::tls`,
//! on rustls); start-up reads these parameters from the loaded module and
//! builds the profiles before the fork. `config` names a tls.cfg with
//! per-domain/per-address profiles (`[server:default]`, `[client:default]`,
//! `[server:IP:PORT]`...), which override the parameters. `tls.list` is
//! served by the core (it asks the TCP workers, which hold the sessions).

use ser_fifo::{RpcRegistry, RpcValue};

use crate::iface::{Module, ModuleEnv, ParamExport};

/// The `tls` module.
pub struct Tls;

/// Kamailio's parameter names; those rustls has no use for are accepted.
static PARAMS: &[ParamExport] = &[
    ParamExport::str("tls_method", "TLSv1.2+"),
    ParamExport::str("certificate", ""),
    ParamExport::str("private_key", ""),
    ParamExport::str("ca_list", ""),
    ParamExport::str("ca_path", ""),
    ParamExport::str("crl", ""),
    ParamExport::int("verify_certificate", 0),
    ParamExport::int("verify_depth", 9),
    ParamExport::int("require_certificate", 0),
    ParamExport::str("cipher_list", ""),
    ParamExport::str("server_name", ""),
    ParamExport::str("config", ""),
    ParamExport::int("connection_timeout", 600),
    ParamExport::int("handshake_timeout", 10),
    ParamExport::int("send_timeout", 2),
    ParamExport::int("tls_log", 3),
    ParamExport::int("tls_debug", 3),
    ParamExport::int("session_cache", 0),
    ParamExport::str("session_id", ""),
    ParamExport::int("renegotiation", 0),
    ParamExport::int("tls_disable_compression", 1),
    ParamExport::int("ssl_release_buffers", -1),
    ParamExport::int("low_mem_threshold1", -1),
    ParamExport::int("low_mem_threshold2", -1),
    ParamExport::int("tls_force_run", 0),
];

/// What start-up builds the TLS profiles from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileParams {
    /// The default profile's keys in Kamailio's tls.cfg spelling (empty
    /// values left out).
    pub profile: Vec<(&'static str, String)>,
    /// `config`: the tls.cfg file name, as written.
    pub config: String,
    /// `handshake_timeout`, seconds.
    pub handshake_timeout: u64,
    /// `send_timeout`, seconds.
    pub send_timeout: u64,
}

/// The module's parameters; `core` gives SER 3.0's core `tls_*` values
/// (under the module's names), which count where the module parameter is
/// left at its default.
pub fn profile_params(env: &ModuleEnv, core: &[(&'static str, String)]) -> ProfileParams {
    let value = |k: &str| -> String {
        let own = env.str(k);
        let default = PARAMS
            .iter()
            .find(|p| p.name == k)
            .map(|p| match p.default {
                crate::iface::ParamDefault::Str(s) => s.to_string(),
                crate::iface::ParamDefault::Int(i) => i.to_string(),
            });
        match core.iter().find(|(c, _)| *c == k) {
            Some((_, v)) if default.as_deref() == Some(own.as_str()) => v.clone(),
            _ => own,
        }
    };
    let mut profile = Vec::new();
    for k in [
        "tls_method",
        "certificate",
        "private_key",
        "ca_list",
        "cipher_list",
        "server_name",
        "verify_certificate",
        "require_certificate",
    ] {
        let v = value(k);
        if !v.is_empty() {
            profile.push((k, v));
        }
    }
    let secs = |k: &str, d: u64| value(k).trim().parse::<u64>().unwrap_or(d);
    ProfileParams {
        profile,
        config: value("config"),
        handshake_timeout: secs("handshake_timeout", 10),
        send_timeout: secs("send_timeout", 2),
    }
}

impl Module for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }

    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let mut info: Vec<(String, RpcValue)> = profile_params(env, &[])
            .profile
            .into_iter()
            .map(|(k, v)| (k.to_string(), RpcValue::Str(v)))
            .collect();
        let cfg = env.str("config");
        if !cfg.is_empty() {
            info.push(("config".into(), RpcValue::Str(cfg)));
        }
        info.push(("library".into(), RpcValue::Str("rustls (ring)".into())));
        let r = reg.register(
            "tls.info",
            &["TLS settings: method, certificate, verification, library."],
            move |ctx| {
                ctx.add(RpcValue::Struct(info.clone()));
                Ok(())
            },
        );
        if let Err(e) = r {
            log::warn!("tls.info not registered: {e:?}");
        }
    }
}
