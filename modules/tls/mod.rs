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

/// The parameters that make a profile, as `(key, value)` in Kamailio's
/// tls.cfg spelling (empty values left out): what start-up builds the
/// default profiles from.
pub fn profile_params(env: &ModuleEnv) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for k in [
        "tls_method",
        "certificate",
        "private_key",
        "ca_list",
        "cipher_list",
        "server_name",
    ] {
        let v = env.str(k);
        if !v.is_empty() {
            out.push((k, v));
        }
    }
    for k in ["verify_certificate", "require_certificate"] {
        out.push((k, env.int(k).to_string()));
    }
    out
}

impl Module for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }

    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let mut info: Vec<(String, RpcValue)> = profile_params(env)
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
