//! `xmlrpc` (SER 3.0 / Kamailio): XML-RPC management over HTTP on the SIP
//! TCP (and TLS) ports. An HTTP `POST` arrives like a SIP request (the
//! parser accepts an `HTTP/1.x` request line on a stream, see
//! `ser_sip::SipMsg::is_http`); with the `route` parameter the module runs
//! that route for it instead of the main one (SER's pre-script callback);
//! the route checks the client and calls `dispatch_rpc()`, which decodes
//! the `methodCall`, runs the method from the same RPC registry the ctl
//! process serves, and writes the HTTP 200 with the `methodResponse` back on
//! the connection, which stays open (HTTP keep-alive).
//!
//! Parameters (as Kamailio documents them): `route`, `autoconversion`
//! (0: a parameter of the wrong XML-RPC type is a fault; 1: strings and
//! numbers convert), `escape_cr`, `double_lf_to_crlf`, `mode` (1: no
//! pre-script callback, the script calls `dispatch_rpc()` itself),
//! `url_skip`, `url_match`. Functions: `dispatch_rpc()`,
//! `xmlrpc_reply(code, reason)` (answers with a fault).
//!
//! The registry is process-local (its methods are not `Send`): each SIP
//! worker installs its own with [`install_registry`] after fork.

pub mod codec;
pub mod xml;

use std::cell::RefCell;

use ser_fifo::{RpcCtx, RpcFault, RpcRegistry, RpcValue};

use crate::iface::{
    compile_regex, Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv,
    ParamExport, RouteEnd, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::transport::Dest;

use codec::DecodeOpts;

/// The `xmlrpc` module.
pub struct Xmlrpc;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("route", ""),
    ParamExport::int("autoconversion", 0),
    ParamExport::int("escape_cr", 1),
    ParamExport::int("double_lf_to_crlf", 0),
    ParamExport::int("mode", 0),
    ParamExport::str("url_skip", ""),
    ParamExport::str("url_match", ""),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "dispatch_rpc",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_dispatch,
    },
    FunctionExport {
        name: "xmlrpc_reply",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::REQUEST,
        fixup: fixup_reply,
    },
];

thread_local! {
    static REGISTRY: RefCell<Option<RpcRegistry>> = const { RefCell::new(None) };
}

/// Gives this process the RPC methods `dispatch_rpc()` serves (the SIP
/// workers' copy of the ctl registry).
pub fn install_registry(reg: RpcRegistry) {
    REGISTRY.with(|r| *r.borrow_mut() = Some(reg));
}

/// Runs `f` with this process's registry (None before [`install_registry`]);
/// jsonrpcs' `jsonrpc_dispatch()` serves the same methods.
pub fn with_registry<R>(f: impl FnOnce(Option<&RpcRegistry>) -> R) -> R {
    REGISTRY.with(|r| f(r.borrow().as_ref()))
}

/// Runs `method` on `params` with this process's registry.
fn call(method: &str, params: Vec<RpcValue>, strict: bool) -> Result<Vec<RpcValue>, RpcFault> {
    REGISTRY.with(|r| {
        let r = r.borrow();
        let reg = r
            .as_ref()
            .ok_or_else(|| RpcFault::new(500, "no RPC methods in this process"))?;
        // Kamailio's xmlrpc words it so (ctl says `command X not found`).
        if reg.lookup(method).is_none() {
            return Err(RpcFault::new(500, "Method Not Found"));
        }
        let mut ctx = Ctx {
            params,
            reply: Vec::new(),
            strict,
        };
        reg.dispatch(method, &mut ctx)?;
        Ok(ctx.reply)
    })
}

/// One call's context. Without `autoconversion` a parameter must have the
/// XML-RPC type the method reads it as (Kamailio's default).
struct Ctx {
    params: Vec<RpcValue>,
    reply: Vec<RpcValue>,
    strict: bool,
}

impl RpcCtx for Ctx {
    fn params(&self) -> &[RpcValue] {
        &self.params
    }
    fn add(&mut self, v: RpcValue) {
        self.reply.push(v);
    }
    fn scan_opt_str(&self, i: usize) -> Result<Option<String>, RpcFault> {
        match self.param(i) {
            Some(RpcValue::Str(s)) => Ok(Some(s.clone())),
            None => Ok(None),
            Some(v) if self.strict => Err(RpcFault::bad_param(
                i,
                format!("expected string, got {}", v.type_name()),
            )),
            Some(RpcValue::Int(n)) => Ok(Some(n.to_string())),
            Some(v @ RpcValue::Double(_)) => Ok(Some(v.to_string())),
            Some(RpcValue::Bytes(b)) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
            Some(v) => Err(RpcFault::bad_param(
                i,
                format!("expected string, got {}", v.type_name()),
            )),
        }
    }
    fn scan_opt_int(&self, i: usize) -> Result<Option<i32>, RpcFault> {
        match self.param(i) {
            Some(RpcValue::Int(n)) => Ok(Some(*n)),
            None => Ok(None),
            Some(v) if self.strict => Err(RpcFault::bad_param(
                i,
                format!("expected integer, got {}", v.type_name()),
            )),
            Some(RpcValue::Double(d)) if d.is_finite() && d.abs() < 2.2e9 => Ok(Some(*d as i32)),
            Some(RpcValue::Str(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RpcFault::bad_param(i, format!("expected integer, got {s:?}"))),
            Some(v) => Err(RpcFault::bad_param(
                i,
                format!("expected integer, got {}", v.type_name()),
            )),
        }
    }
    fn scan_double(&self, i: usize) -> Result<f64, RpcFault> {
        match self.param(i) {
            Some(RpcValue::Double(d)) => Ok(*d),
            Some(RpcValue::Int(n)) => Ok(f64::from(*n)),
            None => Err(RpcFault::bad_param(i, "missing number")),
            Some(v) if self.strict => Err(RpcFault::bad_param(
                i,
                format!("expected number, got {}", v.type_name()),
            )),
            Some(RpcValue::Str(s)) => s
                .trim()
                .parse()
                .map_err(|_| RpcFault::bad_param(i, format!("expected number, got {s:?}"))),
            Some(v) => Err(RpcFault::bad_param(
                i,
                format!("expected number, got {}", v.type_name()),
            )),
        }
    }
}

/// The module's settings, read once.
struct Settings {
    route: String,
    strict: bool,
    escape_cr: bool,
    decode: DecodeOpts,
    callback: bool,
    url_skip: Option<regex::Regex>,
    url_match: Option<regex::Regex>,
}

fn settings(env: &ModuleEnv) -> Option<&Settings> {
    env.state.get().and_then(|s| s.downcast_ref::<Settings>())
}

fn url_regex(env: &ModuleEnv, name: &str) -> Result<Option<regex::Regex>, String> {
    let re = env.str(name);
    if re.is_empty() {
        return Ok(None);
    }
    compile_regex(&re, false)
        .map(Some)
        .map_err(|e| format!("xmlrpc: {name}: {e}"))
}

impl Module for Xmlrpc {
    fn name(&self) -> &'static str {
        "xmlrpc"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let s = Settings {
            route: env.str("route"),
            strict: env.int("autoconversion") == 0,
            escape_cr: env.int("escape_cr") != 0,
            decode: DecodeOpts {
                double_lf_to_crlf: env.int("double_lf_to_crlf") != 0,
            },
            callback: env.int("mode") == 0,
            url_skip: url_regex(env, "url_skip")?,
            url_match: url_regex(env, "url_match")?,
        };
        let _ = env.state.set(Box::new(s));
        Ok(())
    }
    /// SER's non-SIP message callback: an HTTP GET/POST runs the `route`
    /// (unless the URL is skipped) and nothing else.
    fn on_request(&self, env: &ModuleEnv, ctx: &mut MsgCtx<'_>) -> bool {
        let Some(s) = settings(env) else { return true };
        if !s.callback || s.route.is_empty() || !ctx.msg.is_http() {
            return true;
        }
        let m = ctx.method();
        if !m.eq_ignore_ascii_case("POST") && !m.eq_ignore_ascii_case("GET") {
            return true;
        }
        let url = String::from_utf8_lossy(ctx.msg.ruri().unwrap_or_default()).into_owned();
        if s.url_skip.as_ref().is_some_and(|re| re.is_match(&url))
            || s.url_match.as_ref().is_some_and(|re| !re.is_match(&url))
        {
            return true;
        }
        let Some(runner) = env.routes.get().and_then(std::sync::Weak::upgrade) else {
            return true;
        };
        if runner.run_route(RouteMask::REQUEST, &s.route, ctx) == RouteEnd::Missing {
            log::error!("xmlrpc: route `{}` does not exist", s.route);
        }
        false
    }
}

/// `route` must name a request route; checked where the script is known.
fn check_route(fx: &FixupCtx<'_>) -> Result<(), FixupError> {
    let route = fx.module.str("route");
    if !route.is_empty() && !fx.names.has_route(RouteMask::REQUEST, &route) {
        return Err(FixupError::call(format!(
            "xmlrpc: modparam route `{route}` names no route[{route}]"
        )));
    }
    Ok(())
}

fn fixup_dispatch(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    check_route(fx)?;
    let state = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let Some(s) = state.get().and_then(|s| s.downcast_ref::<Settings>()) else {
            return Flow::False;
        };
        let answer = match codec::decode_call(ctx.msg.body(), s.decode) {
            Ok(c) => {
                log::debug!("xmlrpc: {} from {}", c.method, ctx.src);
                match call(&c.method, c.params, s.strict) {
                    Ok(values) => codec::encode_response(&values, s.escape_cr),
                    Err(f) => codec::encode_fault(&f, s.escape_cr),
                }
            }
            Err(f) => {
                log::info!("xmlrpc: bad request from {}: {}", ctx.src, f.message);
                codec::encode_fault(&f, s.escape_cr)
            }
        };
        Flow::from_bool(send_http(ctx, &answer))
    }))
}

fn fixup_reply(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    check_route(fx)?;
    let code = fx.int_arg(args, 0)?;
    let code = i32::try_from(code)
        .ok()
        .filter(|c| (100..=999).contains(c))
        .ok_or_else(|| FixupError::arg(0, format!("code {code} out of range 100..999")))?;
    let reason = fx.format_arg(args, 1)?;
    let state = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let escape_cr = state
            .get()
            .and_then(|s| s.downcast_ref::<Settings>())
            .is_none_or(|s| s.escape_cr);
        let fault = RpcFault::new(code, ctx.render(&reason));
        Flow::from_bool(send_http(ctx, &codec::encode_fault(&fault, escape_cr)))
    }))
}

/// Sends `body` as the HTTP 200 answer on the request's connection.
fn send_http(ctx: &mut MsgCtx<'_>, body: &str) -> bool {
    let first = ctx.msg.s(ctx.msg.first_line_span());
    let version = if ctx.msg.is_http() && first.ends_with(b"HTTP/1.0") {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let mut out = format!("{version} 200 OK\r\n");
    if !ctx.env.server_header.is_empty() {
        out.push_str(&ctx.env.server_header);
        out.push_str("\r\n");
    }
    out.push_str("Content-Type: text/xml; charset=utf-8\r\n");
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let dst = Dest {
        proto: ctx.proto,
        addr: ctx.src,
        send_sock: Some(ctx.local),
    };
    match ctx.env.transport.send(out.as_bytes(), &dst) {
        Ok(()) => {
            ctx.replied = Some(200);
            true
        }
        Err(e) => {
            log::warn!("xmlrpc: cannot answer {}: {e}", ctx.src);
            false
        }
    }
}

#[cfg(test)]
mod tests;
