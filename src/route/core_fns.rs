//! Core script functions (SER `route_struct.h` action types that look like
//! calls, and Kamailio core exports), as a `core` pseudo-module so they go
//! through the same fixup/arity/route-type checks as module functions.

use std::net::SocketAddr;

use ser_modules::iface::{
    Arg, FixupCtx, FixupError, FixupFn, FunctionExport, Handler, Module, RouteMask, RouteRunner,
};
use ser_modules::runtime::access::{set_uri_part, uri_part};
use ser_modules::runtime::avp::AvpRef;
use ser_modules::runtime::ctx::{Branch, MsgCtx, ProcessingError};
use ser_modules::runtime::flags::Flags;
use ser_modules::runtime::format::Piece;
use ser_modules::runtime::pvar::{parse_pv, Pv, UriPart};
use ser_modules::runtime::transport::Proto;
use ser_modules::Flow;

use super::expr::MAX_LEN;

/// The `core` pseudo-module.
pub struct Core;

impl Module for Core {
    fn name(&self) -> &'static str {
        "core"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        CORE
    }
}

const ANY: RouteMask = RouteMask::ANY;
const REQ: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH)
    .or(RouteMask::ONSEND);
const FWD: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

const fn f(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    routes: RouteMask,
    fixup: FixupFn,
) -> FunctionExport {
    FunctionExport::new(name, min_args, max_args, routes, fixup)
}

static CORE: &[FunctionExport] = &[
    f("forward", 0, 2, FWD, fx_forward),
    f("forward_udp", 0, 2, FWD, fx_forward_udp),
    f("forward_tcp", 0, 2, FWD, fx_forward_tcp),
    f("forward_tls", 0, 2, FWD, fx_forward_tls),
    f("send", 0, 2, FWD, fx_send),
    f("log", 1, 2, ANY, fx_log),
    f("error", 2, 2, ANY, fx_error),
    f("setflag", 1, 1, ANY, fx_setflag),
    f("resetflag", 1, 1, ANY, fx_resetflag),
    f("isflagset", 1, 1, ANY, fx_isflagset),
    f("setbflag", 1, 2, ANY, fx_setbflag),
    f("resetbflag", 1, 2, ANY, fx_resetbflag),
    f("isbflagset", 1, 2, ANY, fx_isbflagset),
    f("rewritehost", 1, 1, REQ, fx_sethost),
    f("sethost", 1, 1, REQ, fx_sethost),
    f("rewritehostport", 1, 1, REQ, fx_sethostport),
    f("sethostport", 1, 1, REQ, fx_sethostport),
    f("rewriteuser", 1, 1, REQ, fx_setuser),
    f("setuser", 1, 1, REQ, fx_setuser),
    f("rewriteuserpass", 1, 1, REQ, fx_setuserpass),
    f("setuserpass", 1, 1, REQ, fx_setuserpass),
    f("rewriteport", 1, 1, REQ, fx_setport),
    f("setport", 1, 1, REQ, fx_setport),
    f("rewriteuri", 1, 1, REQ, fx_seturi),
    f("seturi", 1, 1, REQ, fx_seturi),
    f("revert_uri", 0, 0, REQ, fx_revert_uri),
    f("prefix", 1, 1, REQ, fx_prefix),
    f("strip", 1, 1, REQ, fx_strip),
    f("strip_tail", 1, 1, REQ, fx_strip_tail),
    f("append_branch", 0, 2, REQ, fx_append_branch),
    f("len_gt", 1, 1, ANY, fx_len_gt),
    f("force_rport", 0, 0, ANY, fx_force_rport),
    f("add_rport", 0, 0, ANY, fx_force_rport),
    f("add_local_rport", 0, 0, ANY, fx_add_local_rport),
    f("force_tcp_alias", 0, 1, ANY, fx_force_tcp_alias),
    f("force_send_socket", 1, 1, ANY, fx_force_send_socket),
    f("set_advertised_address", 1, 1, ANY, fx_set_adv_address),
    f("set_advertised_port", 1, 1, ANY, fx_set_adv_port),
    f("strempty", 1, 1, ANY, fx_strempty),
    f("isdsturiset", 0, 0, ANY, fx_isdsturiset),
    f("setdsturi", 1, 1, ANY, fx_setdsturi),
    f("resetdsturi", 0, 0, ANY, fx_resetdsturi),
    f("setavpflag", 2, 2, ANY, fx_setavpflag),
    f("isavpflagset", 2, 2, ANY, fx_isavpflagset),
    f("resetavpflag", 2, 2, ANY, fx_resetavpflag),
    f("set_reply_no_connect", 0, 0, ANY, fx_no_connect),
    f("set_forward_no_connect", 0, 0, ANY, fx_no_connect),
    f("set_reply_close", 0, 0, ANY, fx_no_connect),
    f("set_forward_close", 0, 0, ANY, fx_no_connect),
];

/// Kamailio's `set_reply_no_connect()` / `set_forward_no_connect()` (send on
/// an existing TCP connection only) and `set_reply_close()` /
/// `set_forward_close()` (close it after the send).  Accepted and true; the
/// send path has no per-message hook for them yet, so a closed peer
/// connection is reopened and a used one stays open until idle.
fn fx_no_connect(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|_ctx| Flow::True))
}

// ---- forwarding --------------------------------------------------------

type HostPort = Option<(String, Option<u16>)>;

/// `forward(host[, port])`; SER 0.8's `uri:host` / `uri:port` mean "from the
/// R-URI", which is what no argument means too.
fn host_port_args(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<HostPort, FixupError> {
    let is = |i: usize, w: &str| matches!(args.get(i), Some(Arg::Ident(s)) if s == w);
    if args.is_empty() || (is(0, "uri:host") && (args.len() == 1 || is(1, "uri:port"))) {
        return Ok(None);
    }
    if is(0, "uri:host") || is(1, "uri:port") {
        return Err(FixupError::call(
            "mixing uri:host/uri:port with a literal is not supported",
        ));
    }
    let host = fx.str_arg(args, 0)?;
    if host.is_empty() {
        return Err(FixupError::arg(0, "empty host"));
    }
    let port = if args.len() == 2 {
        let p = fx.int_arg(args, 1)?;
        let port = u16::try_from(p).ok().filter(|p| *p != 0);
        Some(port.ok_or_else(|| FixupError::arg(1, format!("bad port {p}")))?)
    } else {
        None
    };
    Ok(Some((host, port)))
}

/// Forward the current request statelessly (`add_via`: our Via on top; `send`
/// sends it as it is).
pub fn forward(
    ctx: &mut MsgCtx<'_>,
    host: Option<(&str, Option<u16>)>,
    proto: Option<Proto>,
    add_via: bool,
    runner: Option<&dyn RouteRunner>,
) -> Flow {
    let dests = match ctx.forward_dests(host, proto) {
        Ok(d) => d,
        Err(e) => {
            log::error!("forward: {e}");
            ctx.last_error = Some(ProcessingError {
                code: 478,
                reason: "Unresolvable destination".into(),
            });
            return Flow::False;
        }
    };
    // use_dns_failover: a failed send moves on to the next DNS target
    let tries = if ser_modules::runtime::dns::config().failover {
        dests.len()
    } else {
        1
    };
    for dst in dests.iter().take(tries) {
        let built = if add_via {
            ctx.build_forward(dst.proto)
        } else {
            ser_sip::apply(&ctx.msg, &ctx.lumps).map_err(|e| e.to_string())
        };
        let buf = match built {
            Ok(b) => b,
            Err(e) => {
                log::error!("forward: cannot build the request: {e}");
                ctx.last_error = Some(ProcessingError {
                    code: 500,
                    reason: "Server Internal Error".into(),
                });
                return Flow::False;
            }
        };
        if ctx.is_request() && !ctx.onsend_allows(runner, &buf, dst) {
            return Flow::False;
        }
        match ctx.env.transport.send(&buf, dst) {
            Ok(()) => return Flow::True,
            Err(e) => log::error!("forward to {} failed: {e}", dst.addr),
        }
    }
    ctx.last_error = Some(ProcessingError {
        code: 500,
        reason: "Send failed".into(),
    });
    Flow::False
}

fn forward_fixup(
    fx: &FixupCtx<'_>,
    args: &[Arg],
    proto: Option<Proto>,
    via: bool,
) -> Result<Handler, FixupError> {
    let hp = host_port_args(fx, args)?;
    let routes = fx.module.routes.clone();
    Ok(Box::new(move |ctx| {
        let runner = routes.get().and_then(std::sync::Weak::upgrade);
        forward(
            ctx,
            hp.as_ref().map(|(h, p)| (h.as_str(), *p)),
            proto,
            via,
            runner.as_deref(),
        )
    }))
}

fn fx_forward(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    forward_fixup(fx, a, None, true)
}
fn fx_forward_udp(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    forward_fixup(fx, a, Some(Proto::Udp), true)
}
fn fx_forward_tcp(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    forward_fixup(fx, a, Some(Proto::Tcp), true)
}
fn fx_forward_tls(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    forward_fixup(fx, a, Some(Proto::Tls), true)
}
fn fx_send(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    forward_fixup(fx, a, None, false)
}

// ---- logging -----------------------------------------------------------

fn fx_log(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let (level, mi) = if args.len() == 2 {
        let level = match fx.int_arg(args, 0)? {
            i64::MIN..=-1 => log::Level::Error,
            0 => log::Level::Warn,
            1 | 2 => log::Level::Info,
            _ => log::Level::Debug,
        };
        (level, 1)
    } else {
        (log::Level::Error, 0)
    };
    let text = fx.str_arg(args, mi)?;
    Ok(Box::new(move |_| {
        log::log!(level, "{}", text.trim_end_matches('\n'));
        Flow::True
    }))
}

fn fx_error(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let a = fx.str_arg(args, 0)?;
    let b = fx.str_arg(args, 1)?;
    Ok(Box::new(move |_| {
        log::error!("error(\"{a}\", \"{b}\") called from the script");
        Flow::True
    }))
}

// ---- flags -------------------------------------------------------------

fn fx_setflag(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let bit = fx.flag_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        ctx.flags.set(bit);
        Flow::True
    }))
}
fn fx_resetflag(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let bit = fx.flag_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        ctx.flags.reset(bit);
        Flow::True
    }))
}
fn fx_isflagset(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let bit = fx.flag_arg(a, 0)?;
    Ok(Box::new(move |ctx| Flow::from_bool(ctx.flags.is_set(bit))))
}

/// `setbflag(flag)` or `setbflag(branch, flag)`: (branch index, bit).
fn bflag_args(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<(usize, u32), FixupError> {
    if a.len() == 2 {
        let br = fx.int_arg(a, 0)?;
        let br = usize::try_from(br)
            .map_err(|_| FixupError::arg(0, format!("bad branch index {br}")))?;
        Ok((br, fx.flag_arg(a, 1)?))
    } else {
        Ok((0, fx.flag_arg(a, 0)?))
    }
}

fn bflags_of<'a>(ctx: &'a mut MsgCtx<'_>, branch: usize) -> Option<&'a mut Flags> {
    if branch == 0 {
        Some(&mut ctx.bflags)
    } else {
        ctx.branches.get_mut(branch - 1).map(|b| &mut b.bflags)
    }
}

fn fx_setbflag(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (br, bit) = bflag_args(fx, a)?;
    Ok(Box::new(move |ctx| match bflags_of(ctx, br) {
        Some(f) => {
            f.set(bit);
            Flow::True
        }
        None => Flow::False,
    }))
}
fn fx_resetbflag(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (br, bit) = bflag_args(fx, a)?;
    Ok(Box::new(move |ctx| match bflags_of(ctx, br) {
        Some(f) => {
            f.reset(bit);
            Flow::True
        }
        None => Flow::False,
    }))
}
fn fx_isbflagset(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (br, bit) = bflag_args(fx, a)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(bflags_of(ctx, br).is_some_and(|f| f.is_set(bit)))
    }))
}

// ---- R-URI rewriting ---------------------------------------------------

fn rewrite(ctx: &mut MsgCtx<'_>, f: impl FnOnce(&str) -> Result<String, String>) -> Flow {
    let Some(cur) = ctx.ruri() else {
        return Flow::False;
    };
    match f(&cur) {
        Ok(new) => {
            ctx.new_uri = Some(new);
            Flow::True
        }
        Err(e) => {
            log::error!("cannot rewrite the R-URI: {e}");
            Flow::False
        }
    }
}

fn fx_sethost(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let host = fx.str_arg(a, 0)?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@' || c == ';') {
        return Err(FixupError::arg(0, format!("bad host `{host}`")));
    }
    Ok(Box::new(move |ctx| {
        rewrite(ctx, |u| set_uri_part(u, UriPart::Host, Some(&host)))
    }))
}

fn split_host_port(hp: &str) -> Result<(String, Option<String>), String> {
    // `[v6]:port`, `host:port`, or a bare host / v6 reference
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (format!("[{h}]"), p.strip_prefix(':')),
            None => return Err(format!("bad host `{hp}`")),
        }
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hp.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    match port {
        Some(p) => p
            .parse::<u16>()
            .map(|p| (host, Some(p.to_string())))
            .map_err(|_| format!("bad port in `{hp}`")),
        None => Ok((host, None)),
    }
}

fn fx_sethostport(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let hp = fx.str_arg(a, 0)?;
    let (host, port) = split_host_port(&hp).map_err(|e| FixupError::arg(0, e))?;
    Ok(Box::new(move |ctx| {
        rewrite(ctx, |u| {
            let u = set_uri_part(u, UriPart::Host, Some(&host))?;
            set_uri_part(&u, UriPart::Port, port.as_deref())
        })
    }))
}

fn fx_setuser(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let user = fx.str_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        let v = if user.is_empty() {
            None
        } else {
            Some(user.as_str())
        };
        rewrite(ctx, |u| set_uri_part(u, UriPart::User, v))
    }))
}

fn fx_setuserpass(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let pass = fx.str_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        rewrite(ctx, |u| {
            let user = uri_part(u, UriPart::User);
            let base = user.as_str().split(':').next().unwrap_or("").to_owned();
            let new = if pass.is_empty() {
                base
            } else {
                format!("{base}:{pass}")
            };
            set_uri_part(u, UriPart::User, Some(&new))
        })
    }))
}

fn fx_setport(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let p = fx.str_arg(a, 0)?;
    if !p.is_empty() && p.parse::<u16>().is_err() {
        return Err(FixupError::arg(0, format!("bad port `{p}`")));
    }
    Ok(Box::new(move |ctx| {
        rewrite(ctx, |u| set_uri_part(u, UriPart::Port, Some(&p)))
    }))
}

fn fx_seturi(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let uri = fx.str_arg(a, 0)?;
    ser_sip::parse_uri(uri.as_bytes())
        .map_err(|e| FixupError::arg(0, format!("bad URI `{uri}`: {e}")))?;
    Ok(Box::new(move |ctx| {
        ctx.new_uri = Some(uri.clone());
        Flow::True
    }))
}

fn fx_revert_uri(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        ctx.new_uri = None;
        Flow::True
    }))
}

fn user_edit(ctx: &mut MsgCtx<'_>, f: impl FnOnce(&str) -> Option<String>) -> Flow {
    rewrite(ctx, |u| {
        let user = uri_part(u, UriPart::User);
        let cur = if user.is_null() {
            String::new()
        } else {
            user.as_str().into_owned()
        };
        let new = f(&cur).ok_or("user part too short")?;
        set_uri_part(
            u,
            UriPart::User,
            if new.is_empty() { None } else { Some(&new) },
        )
    })
}

fn fx_prefix(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let p = fx.str_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        user_edit(ctx, |u| Some(format!("{p}{u}")))
    }))
}

fn count_arg(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<usize, FixupError> {
    let n = fx.int_arg(a, 0)?;
    usize::try_from(n).map_err(|_| FixupError::arg(0, format!("negative count {n}")))
}

fn fx_strip(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let n = count_arg(fx, a)?;
    Ok(Box::new(move |ctx| {
        user_edit(ctx, |u| u.get(n..).map(str::to_owned))
    }))
}

fn fx_strip_tail(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let n = count_arg(fx, a)?;
    Ok(Box::new(move |ctx| {
        user_edit(ctx, |u| {
            u.len()
                .checked_sub(n)
                .and_then(|k| u.get(..k))
                .map(str::to_owned)
        })
    }))
}

/// Most branches a message may have (SER `MAX_BRANCHES`).
const MAX_BRANCHES: usize = 12;

fn fx_append_branch(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let uri = if a.is_empty() {
        None
    } else {
        Some(fx.format_arg(a, 0)?)
    };
    let of_ruri = a.is_empty();
    Ok(Box::new(move |ctx| {
        let uri = match &uri {
            Some(f) => ctx.render(f),
            // no argument: the current R-URI and dst-uri become a new branch
            None => match ctx.ruri() {
                Some(u) => u,
                None => return Flow::False,
            },
        };
        if ctx.branches.len() >= MAX_BRANCHES {
            log::error!("append_branch: too many branches");
            return Flow::False;
        }
        let dst_uri = ctx.dst_uri.clone();
        let bflags = ctx.bflags;
        if of_ruri {
            ctx.ruri_consumed = Some((uri.clone(), dst_uri.clone()));
        }
        ctx.branches.push(Branch {
            uri,
            dst_uri,
            bflags,
        });
        Flow::True
    }))
}

fn fx_len_gt(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let n = match &a[0] {
        Arg::Ident(s) if s == "max_len" => MAX_LEN,
        _ => fx.int_arg(a, 0)?,
    };
    Ok(Box::new(move |ctx| {
        Flow::from_bool(ctx.msg_len() as i64 > n)
    }))
}

fn fx_force_rport(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        // As if the sender's Via had `rport`: replies go to the source port,
        // and the relayed request records it (`;rport=<port>`, Kamailio).
        if !ctx.force_rport && ctx.is_request() {
            if let Ok(v) = ctx.msg.via1() {
                if v.rport.is_none() {
                    let (at, rport) = (v.params_end as usize, format!(";rport={}", ctx.src.port()));
                    ctx.lumps.insert(&ctx.msg, at, rport.as_bytes());
                }
            }
        }
        ctx.force_rport = true;
        Flow::True
    }))
}

fn fx_add_local_rport(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        ctx.local_rport = true;
        Flow::True
    }))
}

fn fx_force_send_socket(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let s = fx.str_arg(a, 0)?;
    let text = match s.split_once(':') {
        Some((p, rest)) if Proto::from_name(p).is_some() => rest,
        _ => s.as_str(),
    };
    let addr: SocketAddr = text
        .parse()
        .or_else(|_| format!("{text}:5060").parse())
        .map_err(|_| FixupError::arg(0, format!("bad socket `{s}` (want [proto:]ip[:port])")))?;
    Ok(Box::new(move |ctx| {
        if !ctx.env.listen.is_empty() && !ctx.env.listen.iter().any(|l| l.addr == addr) {
            log::warn!("force_send_socket: {addr} is not one of our sockets");
            return Flow::False;
        }
        ctx.send_socket = Some(addr);
        Flow::True
    }))
}

fn fx_set_adv_address(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let h = fx.str_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        ctx.advertised.0 = Some(h.clone());
        Flow::True
    }))
}

/// `force_tcp_alias([port])`: the connection a request came in on also
/// stands for the sender's address with `port` (default: the top Via's
/// port), so later requests and replies to that address reuse it.  Aliases
/// from the Via are recorded for every stream request anyway; on UDP it
/// does nothing.
fn fx_force_tcp_alias(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let port = match a.first() {
        None => None,
        Some(_) => {
            let p = fx.int_arg(a, 0)?;
            Some(u16::try_from(p).map_err(|_| FixupError::arg(0, format!("bad port {p}")))?)
        }
    };
    Ok(Box::new(move |ctx| {
        let tls = match ctx.proto {
            Proto::Tcp => false,
            Proto::Tls => true,
            _ => return Flow::True,
        };
        let via_port = ctx
            .msg
            .via1()
            .ok()
            .map(|v| v.port.unwrap_or(if tls { 5061 } else { 5060 }));
        let Some(port) = port.or(via_port) else {
            return Flow::False;
        };
        let alias = SocketAddr::new(ctx.src.ip(), port);
        if tls {
            ser_children::tls::add_alias(alias, ctx.src);
        } else {
            ser_children::tcp_conn::add_alias(alias, ctx.src);
        }
        Flow::True
    }))
}

fn fx_set_adv_port(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let p = fx.int_arg(a, 0)?;
    let p = u16::try_from(p).map_err(|_| FixupError::arg(0, format!("bad port {p}")))?;
    Ok(Box::new(move |ctx| {
        ctx.advertised.1 = Some(p);
        Flow::True
    }))
}

fn fx_strempty(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        let empty = match f.pieces.as_slice() {
            [Piece::Pv(pv)] => ctx.get_pv(pv).is_empty(),
            _ => ctx.render(&f).is_empty(),
        };
        Flow::from_bool(empty)
    }))
}

fn fx_isdsturiset(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| Flow::from_bool(ctx.dst_uri.is_some())))
}

fn fx_setdsturi(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let uri = fx.str_arg(a, 0)?;
    ser_sip::parse_uri(uri.as_bytes())
        .map_err(|e| FixupError::arg(0, format!("bad URI `{uri}`: {e}")))?;
    Ok(Box::new(move |ctx| {
        ctx.dst_uri = Some(uri.clone());
        Flow::True
    }))
}

fn fx_resetdsturi(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        ctx.dst_uri = None;
        Flow::True
    }))
}

fn avpflag_args(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<(AvpRef, u32), FixupError> {
    let avp = match &a[0] {
        Arg::Pv(Pv::Avp(r)) => r.clone(),
        Arg::Str(s) | Arg::Ident(s) => match parse_pv(s) {
            Ok(Pv::Avp(r)) => r,
            _ => AvpRef::named(s.trim_start_matches('$')),
        },
        _ => return Err(FixupError::arg(0, "expected an AVP")),
    };
    let name = fx.str_arg(a, 1)?;
    let bit = fx.names.avp_flag(&name).ok_or_else(|| {
        FixupError::arg(
            1,
            format!("unknown avpflag `{name}` (not declared with `avpflags`)"),
        )
    })?;
    Ok((avp, bit))
}

fn fx_setavpflag(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (avp, bit) = avpflag_args(fx, a)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(ctx.avps.set_flag(&avp, bit))
    }))
}

fn fx_resetavpflag(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (avp, bit) = avpflag_args(fx, a)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(ctx.avps.reset_flag(&avp, bit))
    }))
}

fn fx_isavpflagset(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (avp, bit) = avpflag_args(fx, a)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(ctx.avps.flags(&avp).is_some_and(|f| f & (1 << bit) != 0))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_split() {
        assert_eq!(
            split_host_port("h.org:5070").unwrap(),
            ("h.org".into(), Some("5070".into()))
        );
        assert_eq!(split_host_port("h.org").unwrap(), ("h.org".into(), None));
        assert_eq!(
            split_host_port("[::1]:5060").unwrap(),
            ("[::1]".into(), Some("5060".into()))
        );
        assert!(split_host_port("h:x").is_err());
    }
}
