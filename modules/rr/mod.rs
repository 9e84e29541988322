//! `rr`: Record-Route and loose routing (replaces SER/Kamailio `modules/rr`,
//! RFC 3261 §16.4, §16.6 item 4, §16.12).
//!
//! * `record_route([params])`, `record_route_preset(addr[, addr2])` insert our
//!   Record-Route (two of them when the request leaves on another protocol or
//!   socket than it came in on and `enable_double_rr` is set);
//! * `add_rr_param(";x=y")` adds parameters to our Record-Route, before or
//!   after `record_route`;
//! * `loose_route()` (and SER 0.8's `rewriteFromRoute()`) consumes our own
//!   Route entries and sets the next hop from the route set; a strict router
//!   upstream (R-URI is ours) is handled by taking the last Route as R-URI;
//! * `check_route_param(re)` / `is_direction(dir)` look at the parameters of
//!   the Route entry of ours that `loose_route` consumed.
//!
//! * AVP cookies (SER 3.0): AVPs flagged `dialog_cookie` travel in our
//!   Record-Route and come back with `loose_route` ([`cookie`];
//!   `cookie_secret`, `cookie_filter`).
//!
//! Per-message state (pending params, whether our Record-Route is in, the
//! parameters of the consumed Route) lives in reserved `MsgCtx::vars` keys no
//! `$var(name)` can spell.

use ser_sip::{HeaderName, NameAddr};

use crate::iface::{compile_regex, ModuleEnv, RouteMask};
use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::transport::Proto;
use crate::runtime::value::Value;

pub mod cookie;
#[cfg(test)]
mod tests;

/// The `rr` module.
pub struct Rr;

const REQ: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

const fn f(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    fixup: crate::iface::FixupFn,
) -> FunctionExport {
    FunctionExport::new(name, min_args, max_args, REQ, fixup)
}

static FUNCTIONS: &[FunctionExport] = &[
    f("record_route", 0, 1, fixup_record_route),
    f("record_route_preset", 1, 2, fixup_preset),
    f("loose_route", 0, 0, fixup_loose_route),
    f("rewriteFromRoute", 0, 0, fixup_loose_route),
    f("add_rr_param", 1, 1, fixup_add_param),
    f("check_route_param", 1, 1, fixup_check_param),
    f("is_direction", 1, 1, fixup_direction),
];

static PARAMS: &[ParamExport] = &[
    ParamExport::int("enable_full_lr", 0),
    ParamExport::int("append_fromtag", 1),
    ParamExport::int("enable_double_rr", 1),
    ParamExport::int("add_username", 0),
    ParamExport::int("ignore_user", 1),
    ParamExport::str("cookie_secret", ""),
    ParamExport::str("cookie_filter", ""),
];

impl Module for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// `$var` keys of the per-message state (a space cannot occur in a `$var` name).
const KEY_PENDING: &str = "rr pending-params";
const KEY_ANCHOR: &str = "rr anchor";
const KEY_ROUTED: &str = "rr routed-params";

/// Module parameters as the handlers need them.
#[derive(Debug, Clone, Copy)]
struct Opts {
    full_lr: bool,
    fromtag: bool,
    double_rr: bool,
}

impl Opts {
    fn of(env: &ModuleEnv) -> Opts {
        Opts {
            full_lr: env.int("enable_full_lr") != 0,
            fromtag: env.int("append_fromtag") != 0,
            double_rr: env.int("enable_double_rr") != 0,
        }
    }

    fn lr(self) -> &'static str {
        if self.full_lr {
            ";lr=on"
        } else {
            ";lr"
        }
    }
}

// ---- Record-Route -------------------------------------------------------

/// The offset of the `\n` that ends the first line: our Record-Route goes
/// right after it, above every other Record-Route (RFC 3261 §16.6 item 4).
/// Text inserted there comes out in insertion order, and a 1-byte
/// replacement of that `\n` comes after all inserts: the replacement closes
/// the header (`>\r\n`), so `add_rr_param` can still add to it later.
fn anchor(ctx: &MsgCtx<'_>) -> Option<usize> {
    let first = ctx.msg.headers().first()?.span.begin();
    let at = first.checked_sub(1)?;
    (ctx.msg.buf().get(at) == Some(&b'\n')).then_some(at)
}

fn ftag(ctx: &MsgCtx<'_>, opts: Opts) -> String {
    if !opts.fromtag {
        return String::new();
    }
    match ctx.msg.from().ok().and_then(|f| f.tag) {
        Some(t) => format!(";ftag={}", String::from_utf8_lossy(ctx.msg.s(t))),
        None => String::new(),
    }
}

/// `sip:host:port[;transport=x]` of one of our sockets as advertised.
fn own_uri(host: &str, port: u16, proto: Proto) -> String {
    let mut u = format!("sip:{host}:{port}");
    if proto != Proto::Udp {
        u.push_str(";transport=");
        u.push_str(&proto.as_str().to_ascii_lowercase());
    }
    u
}

/// The protocol the request will leave on: `force_send_socket`'s, else the
/// `transport` of the dst-uri / R-URI, else UDP.
fn outbound_proto(ctx: &MsgCtx<'_>) -> Proto {
    if let Some(sock) = ctx.send_socket {
        if let Some(l) = ctx.env.listen.iter().find(|l| l.addr == sock) {
            return l.proto;
        }
    }
    let uri = ctx
        .dst_uri
        .clone()
        .or_else(|| ctx.ruri())
        .unwrap_or_default();
    let Ok(u) = ser_sip::parse_uri(uri.as_bytes()) else {
        return Proto::Udp;
    };
    u.transport
        .and_then(|t| Proto::from_name(&String::from_utf8_lossy(t.of(uri.as_bytes()))))
        // RFC 3261 §26.2: a sips: target is reached over TLS
        .or((u.scheme == ser_sip::Scheme::Sips).then_some(Proto::Tls))
        .unwrap_or(Proto::Udp)
}

/// Advertised host and port of a listen socket.
fn advertised(ctx: &MsgCtx<'_>, l: &crate::runtime::transport::Listen) -> (String, u16) {
    if let Some((h, p)) = &l.advertise {
        return (h.clone(), *p);
    }
    let host = match l.addr.ip() {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    let (adv_host, adv_port) = &ctx.advertised;
    (
        adv_host.clone().unwrap_or(host),
        adv_port.unwrap_or(l.addr.port()),
    )
}

/// Our Record-Route URI(s) for this request: inbound side last, outbound
/// side first when they differ (double RR).
fn rr_uris(ctx: &MsgCtx<'_>, opts: Opts) -> Vec<String> {
    let (host, port) = {
        let sock = ctx.local;
        let l = ctx.env.listen.iter().find(|l| l.addr == sock);
        match l {
            Some(l) => advertised(ctx, l),
            None => ctx.advertised_addr(),
        }
    };
    let inbound = own_uri(&host, port, ctx.proto);
    let out_proto = outbound_proto(ctx);
    let out_sock = ctx.send_socket.filter(|s| *s != ctx.local);
    if !opts.double_rr || (out_proto == ctx.proto && out_sock.is_none()) {
        return vec![inbound];
    }
    let out = ctx.env.listen.iter().find(|l| match out_sock {
        Some(s) => l.addr == s,
        None => l.proto == out_proto && l.addr.is_ipv4() == ctx.local.is_ipv4(),
    });
    match out {
        Some(l) => {
            let (h, p) = advertised(ctx, l);
            vec![own_uri(&h, p, l.proto), inbound]
        }
        None => vec![inbound],
    }
}

/// Inserts Record-Route header(s) with `uris` (top first); the last one stays
/// open for `add_rr_param`. Parameters already pending are added now.
fn insert_rr(ctx: &mut MsgCtx<'_>, uris: &[String], extra: &str, opts: Opts) -> Flow {
    if ctx.vars.contains_key(KEY_ANCHOR) {
        log::warn!("record_route: Record-Route already added to this request");
        return Flow::False;
    }
    let Some(at) = anchor(ctx) else {
        log::error!("record_route: request has no header to anchor Record-Route at");
        return Flow::False;
    };
    let lr = opts.lr();
    let ftag = ftag(ctx, opts);
    let lead = if at > 0 && ctx.msg.buf()[at - 1] == b'\r' {
        "\n"
    } else {
        "\r\n"
    };
    let mut text = String::from(lead);
    for (i, uri) in uris.iter().enumerate() {
        text.push_str("Record-Route: <");
        text.push_str(uri);
        text.push_str(lr);
        text.push_str(&ftag);
        text.push_str(extra);
        if i + 1 < uris.len() {
            text.push_str(">\r\n");
        }
    }
    if let Some(Value::Str(p)) = ctx.vars.remove(KEY_PENDING) {
        text.push_str(&p);
    }
    let msg = &ctx.msg;
    ctx.lumps.insert(msg, at, text.as_bytes());
    ctx.lumps
        .replace(msg, ser_sip::Span::new(at, at + 1), b">\r\n");
    ctx.vars.insert(KEY_ANCHOR.into(), Value::Int(at as i64));
    Flow::True
}

/// The AVP cookie settings: the `dialog_cookie` flag if the script declares
/// it, `cookie_secret`, `cookie_filter` (compiled here, once).
fn cookies(fx: &FixupCtx<'_>) -> Result<cookie::Cookies, FixupError> {
    let filter = fx.module.str("cookie_filter");
    let filter = if filter.is_empty() {
        None
    } else {
        Some(
            compile_regex(&filter, false)
                .map_err(|e| FixupError::call(format!("rr: cookie_filter: {e}")))?,
        )
    };
    Ok(cookie::Cookies {
        flag: fx.names.avp_flag("dialog_cookie"),
        secret: fx.module.str("cookie_secret"),
        filter,
    })
}

fn fixup_record_route(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let opts = Opts::of(fx.module);
    let cookies = cookies(fx)?;
    let params = match args.len() {
        0 => None,
        _ => Some(fx.format_arg(args, 0)?),
    };
    Ok(Box::new(move |ctx| {
        let mut extra = params
            .as_ref()
            .map(|p| normalize_params(&ctx.render(p)))
            .unwrap_or_default();
        if let Some(c) = cookie::encode(ctx, &cookies) {
            extra.push_str(&format!(";{}={c}", cookie::PARAM));
        }
        let uris = rr_uris(ctx, opts);
        insert_rr(ctx, &uris, &extra, opts)
    }))
}

/// `record_route_preset("host:port[;params]"[, "host2"])`: `sip:` is added when
/// missing; with two addresses the first is the outbound side.
fn fixup_preset(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let opts = Opts::of(fx.module);
    let addrs = (0..args.len())
        .map(|i| fx.format_arg(args, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(move |ctx| {
        let uris: Vec<String> = addrs
            .iter()
            .map(|a| {
                let s = ctx.render(a);
                if s.len() > 4 && s[..4].eq_ignore_ascii_case("sip:") {
                    s
                } else {
                    format!("sip:{s}")
                }
            })
            .collect();
        if uris.iter().any(|u| u.len() <= 4) {
            log::error!("record_route_preset: empty address");
            return Flow::False;
        }
        insert_rr(ctx, &uris, "", opts)
    }))
}

/// Parameters as given (`x=y` or `;x=y`), always starting with `;`.
fn normalize_params(p: &str) -> String {
    let p = p.trim();
    if p.is_empty() || p.starts_with(';') {
        p.to_owned()
    } else {
        format!(";{p}")
    }
}

/// `add_rr_param(";x=y")`: to our Record-Route if it is in, else kept for
/// the next `record_route` of this request.
fn fixup_add_param(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let param = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        let p = normalize_params(&ctx.render(&param));
        if p.is_empty() {
            return Flow::False;
        }
        add_param(ctx, &p);
        Flow::True
    }))
}

fn add_param(ctx: &mut MsgCtx<'_>, p: &str) {
    match ctx.vars.get(KEY_ANCHOR) {
        Some(Value::Int(at)) => {
            let at = *at as usize;
            let msg = &ctx.msg;
            ctx.lumps.insert(msg, at, p.as_bytes());
        }
        _ => {
            let pending = ctx
                .vars
                .entry(KEY_PENDING.into())
                .or_insert_with(|| Value::Str(String::new()));
            if let Value::Str(s) = pending {
                s.push_str(p);
            }
        }
    }
}

// ---- loose routing --------------------------------------------------------

/// One Route value: which header, which value inside it.
#[derive(Debug, Clone)]
struct RouteEntry {
    header: usize,
    addr: NameAddr,
}

fn route_entries(ctx: &MsgCtx<'_>) -> Result<Vec<RouteEntry>, String> {
    let mut out = Vec::new();
    for (hi, h) in ctx.msg.headers().iter().enumerate() {
        if h.name != HeaderName::Route {
            continue;
        }
        let values = ctx.msg.routes_of(h).map_err(|e| e.to_string())?;
        for addr in values {
            out.push(RouteEntry {
                header: hi,
                addr: addr.clone(),
            });
        }
    }
    Ok(out)
}

fn uri_text(ctx: &MsgCtx<'_>, a: &NameAddr) -> String {
    ctx.text(a.uri.span)
}

fn is_ours(ctx: &MsgCtx<'_>, a: &NameAddr) -> bool {
    let buf = ctx.msg.buf();
    let host = String::from_utf8_lossy(a.uri.host.of(buf));
    let port = a.uri.port.or(if a.uri.scheme == ser_sip::Scheme::Sips {
        Some(5061)
    } else {
        None
    });
    !host.is_empty() && ctx.env.myself.matches(&host, port)
}

/// Removes the given Route values: whole headers when all their values go,
/// else each run of values with its separating comma.
fn remove_entries(ctx: &mut MsgCtx<'_>, all: &[RouteEntry], gone: &[usize]) {
    let headers: Vec<usize> = {
        let mut h: Vec<usize> = gone.iter().map(|&g| all[g].header).collect();
        h.dedup();
        h
    };
    for hi in headers {
        let vals: Vec<(usize, bool)> = all
            .iter()
            .enumerate()
            .filter(|(_, e)| e.header == hi)
            .map(|(i, _)| (i, gone.contains(&i)))
            .collect();
        let header = ctx.msg.headers()[hi].clone();
        if vals.iter().all(|(_, g)| *g) {
            let msg = &ctx.msg;
            ctx.lumps.remove_header(msg, &header);
            continue;
        }
        // Runs of removed values: a leading run goes up to the first kept
        // value; a later run goes from the end of the kept value before it.
        let mut k = 0;
        while k < vals.len() {
            if !vals[k].1 {
                k += 1;
                continue;
            }
            let start = k;
            while k < vals.len() && vals[k].1 {
                k += 1;
            }
            let span = if start == 0 {
                ser_sip::Span::new(
                    all[vals[0].0].addr.span.begin(),
                    all[vals[k].0].addr.span.begin(),
                )
            } else {
                ser_sip::Span::new(
                    all[vals[start - 1].0].addr.span.end(),
                    all[vals[k - 1].0].addr.span.end(),
                )
            };
            let msg = &ctx.msg;
            ctx.lumps.delete(msg, span);
        }
    }
}

/// Parameters of a Route URI (from the first `;`), for `check_route_param`.
fn route_params(ctx: &MsgCtx<'_>, a: &NameAddr) -> String {
    ctx.text(a.uri.params_span)
}

/// RFC 3261 §16.4 + §16.12 as SER's `loose_route`; true when the next hop
/// comes from the route set.
pub fn loose_route(ctx: &mut MsgCtx<'_>) -> Flow {
    ctx.vars.remove(KEY_ROUTED);
    let entries = match route_entries(ctx) {
        Ok(e) if !e.is_empty() => e,
        Ok(_) => return Flow::False,
        Err(e) => {
            log::warn!("loose_route: bad Route header: {e}");
            return Flow::False;
        }
    };
    let preloaded = ctx.msg.to().map(|t| t.tag.is_none()).unwrap_or(true);
    let ruri_ours = ctx.ruri().is_some_and(|u| ctx.env.myself.matches_uri(&u));
    if !preloaded && ruri_ours {
        after_strict(ctx, &entries)
    } else {
        after_loose(ctx, &entries, preloaded)
    }
}

/// The previous hop was a strict router: the R-URI is a URI we put in a
/// Record-Route. The last Route becomes the R-URI (RFC 3261 §16.4).
fn after_strict(ctx: &mut MsgCtx<'_>, entries: &[RouteEntry]) -> Flow {
    let last = entries.len() - 1;
    let mut gone = vec![last];
    if let Some(ruri) = ctx.ruri() {
        if let Ok(u) = ser_sip::parse_uri(ruri.as_bytes()) {
            let params = String::from_utf8_lossy(u.params_span.of(ruri.as_bytes())).into_owned();
            ctx.vars.insert(KEY_ROUTED.into(), Value::Str(params));
        }
    }
    ctx.new_uri = Some(uri_text(ctx, &entries[last].addr));
    // Our own further entries (double RR) are consumed too; the next foreign
    // loose router becomes the destination.
    let mut i = 0;
    while i < last && is_ours(ctx, &entries[i].addr) {
        gone.push(i);
        i += 1;
    }
    if i < last {
        next_hop(ctx, entries, i, &mut gone);
    }
    gone.sort_unstable();
    remove_entries(ctx, entries, &gone);
    Flow::True
}

/// The next hop is route `i` (not ours): loose → dst-uri; strict → it
/// becomes the R-URI and the R-URI goes to the end of the route set.
fn next_hop(ctx: &mut MsgCtx<'_>, entries: &[RouteEntry], i: usize, gone: &mut Vec<usize>) {
    let a = &entries[i].addr;
    if a.uri.lr {
        ctx.dst_uri = Some(uri_text(ctx, a));
        return;
    }
    let old = ctx.ruri().unwrap_or_default();
    ctx.new_uri = Some(uri_text(ctx, a));
    gone.push(i);
    ctx.append_header(&format!("Route: <{old}>\r\n"));
}

fn after_loose(ctx: &mut MsgCtx<'_>, entries: &[RouteEntry], preloaded: bool) -> Flow {
    let mut gone = Vec::new();
    let mut i = 0;
    while i < entries.len() && is_ours(ctx, &entries[i].addr) {
        let params = route_params(ctx, &entries[i].addr);
        ctx.vars.insert(KEY_ROUTED.into(), Value::Str(params));
        gone.push(i);
        i += 1;
    }
    let routed = if i < entries.len() {
        next_hop(ctx, entries, i, &mut gone);
        true
    } else {
        // Only our own entries: the R-URI is the next hop; for an initial
        // (preloaded) request that is not routing by the route set.
        !preloaded
    };
    gone.sort_unstable();
    remove_entries(ctx, entries, &gone);
    Flow::from_bool(routed)
}

fn fixup_loose_route(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let cookies = cookies(fx)?;
    Ok(Box::new(move |ctx| {
        let flow = loose_route(ctx);
        if let Some(params) = routed_params(ctx).map(str::to_owned) {
            let upstream = is_upstream(ctx);
            cookie::restore(ctx, &cookies, &params, upstream);
        }
        flow
    }))
}

fn routed_params<'a>(ctx: &'a MsgCtx<'_>) -> Option<&'a str> {
    match ctx.vars.get(KEY_ROUTED) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

fn fixup_check_param(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let re = fx.regex_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(routed_params(ctx).is_some_and(|p| re.is_match(p)))
    }))
}

/// Value of parameter `name` in a `;a=b;c` list.
fn param_value<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `is_direction("downstream"|"upstream")`: upstream when the consumed Route
/// carries an `ftag` that is not the From tag (the callee is sending).
fn fixup_direction(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let dir = fx.str_arg(args, 0)?;
    let want_up = match dir.to_ascii_lowercase().as_str() {
        "upstream" => true,
        "downstream" => false,
        _ => {
            return Err(FixupError::arg(
                0,
                format!("unknown direction `{dir}` (downstream or upstream)"),
            ))
        }
    };
    Ok(Box::new(move |ctx| {
        Flow::from_bool(is_upstream(ctx) == want_up)
    }))
}

/// Upstream when the consumed Route carries an `ftag` that is not the From
/// tag (the callee is sending).
fn is_upstream(ctx: &MsgCtx<'_>) -> bool {
    let ftag = routed_params(ctx)
        .and_then(|p| param_value(p, "ftag"))
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let from_tag = ctx.msg.from().ok().and_then(|f| f.tag).map(|t| ctx.text(t));
    match (ftag, from_tag) {
        (Some(f), Some(t)) => f != t,
        _ => false,
    }
}
