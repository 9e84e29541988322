//! `jsonrpcs`: Kamailio's JSON-RPC 2.0 server, the module side.
//!
//! The servers are ser-fifo's (fifo/src/jsonrpc.rs) run by the ctl process
//! like ctl's binrpc listeners; this module carries the parameters and says
//! which listeners the config asks for ([`listen_addrs`]).
//!
//! - `transport`: bitmask 1 HTTP (xhttp's `event_route[xhttp:request]`
//!   calls `jsonrpc_dispatch()`),
//!   2 FIFO, 4 datagram socket; default 6.
//! - `fifo_name` (default `kamailio_rpc.fifo`, relative to `/run/kamailio/`,
//!   Kamailio's runtime dir), `fifo_mode`, `fifo_user`, `fifo_group`,
//!   `fifo_reply_dir` (default `/tmp/`): a client writes one JSON object with
//!   an extra `"reply_name"` member and reads the reply from
//!   `fifo_reply_dir/reply_name` (what `kamctl rpc` does).
//! - `dgram_socket` (default `kamailio_rpc.sock` in the runtime dir; a path
//!   or `udp:host:port`), `dgram_mode`, `dgram_user`, `dgram_group`: the
//!   reply goes back to the sender.  `dgram_workers` is accepted (one ctl
//!   process serves every listener).
//! - `pretty_format`: indent the JSON replies.

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::registry::Modules;
use crate::runtime::flow::Flow;

/// Kamailio's default runtime directory, where relative names live.
pub const RUN_DIR: &str = "/run/kamailio";

/// The `jsonrpcs` module.
pub struct Jsonrpcs;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("transport", 6),
    ParamExport::int("pretty_format", 1),
    ParamExport::str("fifo_name", "kamailio_rpc.fifo"),
    ParamExport::int("fifo_mode", 0o660),
    ParamExport::str("fifo_user", ""),
    ParamExport::str("fifo_group", ""),
    ParamExport::str("fifo_reply_dir", "/tmp/"),
    ParamExport::str("dgram_socket", "kamailio_rpc.sock"),
    ParamExport::int("dgram_mode", 0o660),
    ParamExport::str("dgram_user", ""),
    ParamExport::str("dgram_group", ""),
    ParamExport::int("dgram_workers", 1),
    ParamExport::int("dgram_timeout", 2),
];

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "jsonrpc_dispatch",
    min_args: 0,
    max_args: 0,
    routes: RouteMask::EVENT.or(RouteMask::REQUEST),
    fixup: fixup_dispatch,
}];

impl Module for Jsonrpcs {
    fn name(&self) -> &'static str {
        "jsonrpcs"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let t = env.int("transport");
        if !(0..=7).contains(&t) {
            return Err(format!("jsonrpcs: transport {t} is not a 0..7 bitmask"));
        }
        for (p, v) in [
            ("fifo_mode", env.int("fifo_mode")),
            ("dgram_mode", env.int("dgram_mode")),
        ] {
            if !(0..=0o7777).contains(&v) {
                return Err(format!("jsonrpcs: {p}: bad file mode {v:o}"));
            }
        }
        Ok(())
    }
}

/// `jsonrpc_dispatch()` (transport bit 1, HTTP via xhttp): the request
/// body is one JSON-RPC request; the answer goes back as HTTP 200
/// `application/json` on the connection.
fn fixup_dispatch(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let pretty = fx.module.int("pretty_format") != 0;
    Ok(Box::new(move |ctx| {
        if !ctx.msg.is_http() {
            log::warn!("jsonrpc_dispatch: not an HTTP request");
            return Flow::False;
        }
        let reply = crate::xmlrpc::with_registry(|reg| {
            reg.map(|reg| ser_fifo::jsonrpc::handle(ctx.msg.body(), reg, pretty))
        });
        let Some(h) = reply else {
            log::error!("jsonrpc_dispatch: no RPC methods in this process");
            return Flow::False;
        };
        let body = h.reply.unwrap_or_default();
        Flow::from_bool(crate::xhttp::send_reply(
            ctx,
            200,
            "OK",
            "application/json",
            &body,
        ))
    }))
}

/// A name relative to the runtime dir made absolute (`udp:` addresses kept).
fn in_run_dir(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("{RUN_DIR}/{name}")
    }
}

/// One JSON-RPC listener the config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonListen {
    /// ser-fifo's address: `json:fifo:/path`, `json:unixd:/path`, `json:udp:host:port`.
    pub addr: String,
    /// File mode of the FIFO / socket.
    pub mode: i64,
    /// Owner of the file.
    pub user: Option<String>,
    /// Group of the file.
    pub group: Option<String>,
}

/// The JSON-RPC listeners `jsonrpcs`' parameters ask for.
pub fn listen_addrs(env: &ModuleEnv) -> Vec<JsonListen> {
    let opt = |p: &str| Some(env.str(p)).filter(|s| !s.is_empty());
    let t = env.int("transport");
    let mut out = Vec::new();
    let fifo = env.str("fifo_name");
    if t & 2 != 0 && !fifo.is_empty() {
        out.push(JsonListen {
            addr: format!("json:fifo:{}", in_run_dir(&fifo)),
            mode: env.int("fifo_mode"),
            user: opt("fifo_user"),
            group: opt("fifo_group"),
        });
    }
    let dgram = env.str("dgram_socket");
    if t & 4 != 0 && !dgram.is_empty() {
        let addr = if dgram.starts_with("udp:") {
            dgram.clone()
        } else {
            format!("unixd:{}", in_run_dir(dgram.trim_start_matches("unix:")))
        };
        out.push(JsonListen {
            addr: format!("json:{addr}"),
            mode: env.int("dgram_mode"),
            user: opt("dgram_user"),
            group: opt("dgram_group"),
        });
    }
    out
}

/// `fifo_reply_dir` and `pretty_format` of the loaded `jsonrpcs`.
pub fn settings(modules: &Modules) -> Option<(String, bool)> {
    modules
        .iter()
        .find(|l| l.module.name() == "jsonrpcs")
        .map(|l| (l.env.str("fifo_reply_dir"), l.env.int("pretty_format") != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::ParamValue;

    #[test]
    fn default_and_configured_listeners() {
        let mut env = ModuleEnv::new(&Jsonrpcs);
        let a: Vec<String> = listen_addrs(&env).into_iter().map(|l| l.addr).collect();
        assert_eq!(
            a,
            [
                "json:fifo:/run/kamailio/kamailio_rpc.fifo",
                "json:unixd:/run/kamailio/kamailio_rpc.sock"
            ]
        );
        let none = |_: &str| None;
        env.set_param(
            &Jsonrpcs,
            "dgram_socket",
            ParamValue::Str("udp:127.0.0.1:9999".into()),
            &none,
        )
        .unwrap();
        env.set_param(
            &Jsonrpcs,
            "fifo_name",
            ParamValue::Str("/tmp/x.fifo".into()),
            &none,
        )
        .unwrap();
        let a: Vec<String> = listen_addrs(&env).into_iter().map(|l| l.addr).collect();
        assert_eq!(a, ["json:fifo:/tmp/x.fifo", "json:udp:127.0.0.1:9999"]);
        env.set_param(&Jsonrpcs, "transport", ParamValue::Int(1), &none)
            .unwrap();
        assert!(listen_addrs(&env).is_empty());
    }
}
