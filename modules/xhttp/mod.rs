//! `xhttp`: Kamailio's HTTP server on the SIP TCP (and TLS) ports.
//!
//! An HTTP request arrives on a stream like a SIP request (the parser
//! accepts an `HTTP/1.x` request line, `ser_sip::SipMsg::is_http`); this
//! module runs `event_route[xhttp:request]` for it instead of the main route
//! (unless `url_skip` matches or `url_match` does not), where the script
//! answers with `xhttp_reply(code, reason, content_type, body)` or hands
//! the request to a dispatcher such as jsonrpcs' `jsonrpc_dispatch()`.
//! `$hu` is the URL.  `event_callback` (a KEMI function) is accepted and
//! ignored.

use crate::iface::{
    compile_regex, Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv,
    ParamExport, RouteEnd, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::transport::Dest;

/// The `xhttp` module.
pub struct Xhttp;

/// The event route an HTTP request runs.
const EVENT_ROUTE: &str = "xhttp:request";

static PARAMS: &[ParamExport] = &[
    ParamExport::str("url_skip", ""),
    ParamExport::str("url_match", ""),
    ParamExport::str("event_callback", ""),
];

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "xhttp_reply",
    min_args: 4,
    max_args: 4,
    routes: RouteMask::EVENT.or(RouteMask::REQUEST),
    fixup: fixup_reply,
}];

struct Settings {
    url_skip: Option<regex::Regex>,
    url_match: Option<regex::Regex>,
}

fn url_regex(env: &ModuleEnv, name: &str) -> Result<Option<regex::Regex>, String> {
    let re = env.str(name);
    if re.is_empty() {
        return Ok(None);
    }
    compile_regex(&re, false)
        .map(Some)
        .map_err(|e| format!("xhttp: {name}: {e}"))
}

impl Module for Xhttp {
    fn name(&self) -> &'static str {
        "xhttp"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let s = Settings {
            url_skip: url_regex(env, "url_skip")?,
            url_match: url_regex(env, "url_match")?,
        };
        let _ = env.state.set(Box::new(s));
        Ok(())
    }
    /// An HTTP request runs `event_route[xhttp:request]` and nothing else.
    fn on_request(&self, env: &ModuleEnv, ctx: &mut MsgCtx<'_>) -> bool {
        if !ctx.msg.is_http() {
            return true;
        }
        let Some(s) = env.state.get().and_then(|s| s.downcast_ref::<Settings>()) else {
            return true;
        };
        let url = String::from_utf8_lossy(ctx.msg.ruri().unwrap_or_default()).into_owned();
        if s.url_skip.as_ref().is_some_and(|re| re.is_match(&url))
            || s.url_match.as_ref().is_some_and(|re| !re.is_match(&url))
        {
            return true;
        }
        let Some(runner) = env.routes.get().and_then(std::sync::Weak::upgrade) else {
            return true;
        };
        if runner.run_route(RouteMask::EVENT, EVENT_ROUTE, ctx) == RouteEnd::Missing {
            log::warn!(
                "xhttp: no event_route[{EVENT_ROUTE}]: HTTP request from {} dropped",
                ctx.src
            );
        }
        false
    }
}

fn fixup_reply(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let code = fx.int_arg(args, 0)?;
    let code = u16::try_from(code)
        .ok()
        .filter(|c| (100..=999).contains(c))
        .ok_or_else(|| FixupError::arg(0, format!("code {code} out of range 100..999")))?;
    let reason = fx.format_arg(args, 1)?;
    let ctype = fx.format_arg(args, 2)?;
    let body = fx.format_arg(args, 3)?;
    Ok(Box::new(move |ctx| {
        let (reason, ctype, body) = (ctx.render(&reason), ctx.render(&ctype), ctx.render(&body));
        Flow::from_bool(send_reply(ctx, code, &reason, &ctype, &body))
    }))
}

/// Sends an HTTP answer on the request's connection.
pub fn send_reply(ctx: &mut MsgCtx<'_>, code: u16, reason: &str, ctype: &str, body: &str) -> bool {
    let first = ctx.msg.s(ctx.msg.first_line_span());
    let version = if ctx.msg.is_http() && first.ends_with(b"HTTP/1.0") {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let mut out = format!("{version} {code} {}\r\n", clean(reason));
    if !ctx.env.server_header.is_empty() {
        out.push_str(&ctx.env.server_header);
        out.push_str("\r\n");
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Type: {}\r\n", clean(ctype)));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let dst = Dest {
        proto: ctx.proto,
        addr: ctx.src,
        send_sock: Some(ctx.local),
    };
    match ctx.env.transport.send(out.as_bytes(), &dst) {
        Ok(()) => {
            ctx.replied = Some(code);
            true
        }
        Err(e) => {
            log::warn!("xhttp: cannot answer {}: {e}", ctx.src);
            false
        }
    }
}
