//! `rtpproxy`: media relaying for calls behind NAT (Kamailio `modules/rtpproxy`,
//! the 3.1 `force_rtp_proxy` family and the later `rtpproxy_offer`/`_answer`/
//! `_manage`/`_destroy` names).  For every `m=` stream of the SDP it asks an
//! RTP proxy (rtpproxy, or rtpengine's rtpproxy-compatible control socket)
//! for a relay port (`U` for an offer, `L` for an answer) and rewrites the
//! stream's port, the `c=` / `o=` addresses and `a=rtcp:` to the relay's;
//! `unforce_rtp_proxy` deletes the session (`D`).  An `a=nortpproxy:yes`
//! line (`nortpproxy_str`) marks a body as already relayed.
//!
//! `rtpproxy_sock`: `"[set ==] udp:host:port[=weight] unix:/path ..."`,
//! repeatable for more sets; `set_rtp_proxy_set(n)` picks one per message.

pub mod proxies;
pub mod sdp;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::any::Any;

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::value::Value;
use proxies::{Set, Timing};

#[cfg(test)]
mod tests;

/// The `rtpproxy` module.
pub struct Rtpproxy;

const ANYR: RouteMask = RouteMask::REQUEST
    .or(RouteMask::ONREPLY)
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

const fn f(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    fixup: crate::iface::FixupFn,
) -> FunctionExport {
    FunctionExport::new(name, min_args, max_args, ANYR, fixup)
}

static FUNCTIONS: &[FunctionExport] = &[
    f("force_rtp_proxy", 0, 2, fixup_force),
    f("rtpproxy_offer", 0, 2, fixup_offer),
    f("rtpproxy_answer", 0, 2, fixup_answer),
    f("rtpproxy_manage", 0, 2, fixup_manage),
    f("unforce_rtp_proxy", 0, 1, fixup_unforce),
    f("rtpproxy_destroy", 0, 1, fixup_unforce),
    f("set_rtp_proxy_set", 1, 1, fixup_set),
    f("start_recording", 0, 0, fixup_recording),
];

static PARAMS: &[ParamExport] = &[
    ParamExport::str_multi("rtpproxy_sock", ""),
    ParamExport::int("rtpproxy_disable_tout", 60),
    ParamExport::int("rtpproxy_tout", 1),
    ParamExport::int("rtpproxy_retr", 5),
    ParamExport::str("nortpproxy_str", "a=nortpproxy:yes"),
    ParamExport::str("timeout_socket", ""),
];

/// Key of the set chosen by `set_rtp_proxy_set` in the message context.
const SET_KEY: &str = "rtpproxy.set";

/// What `init` builds: the sets and the protocol timing.
pub struct State {
    /// Proxy sets.
    pub sets: Vec<Set>,
    /// Protocol timing.
    pub timing: Timing,
    /// `nortpproxy_str` ("" disables the marker).
    pub marker: String,
}

fn sock_values(env: &ModuleEnv) -> Vec<String> {
    env.all("rtpproxy_sock")
        .iter()
        .map(|v| match v {
            crate::iface::ParamValue::Str(s) => s.clone(),
            crate::iface::ParamValue::Int(i) => i.to_string(),
        })
        .collect()
}

fn state_from(env: &ModuleEnv) -> Result<State, String> {
    let sets = proxies::parse_sets(&sock_values(env))?;
    let secs = |name: &str, min: i64| Duration::from_secs(env.int(name).max(min) as u64);
    Ok(State {
        sets,
        timing: Timing {
            tout: secs("rtpproxy_tout", 1),
            retr: env.int("rtpproxy_retr").clamp(1, 100) as u32,
            // negative: a node that failed stays off (Kamailio)
            disable: match env.int("rtpproxy_disable_tout") {
                n if n < 0 => Duration::from_secs(100 * 365 * 86_400),
                n => Duration::from_secs(n as u64),
            },
        },
        marker: env.str("nortpproxy_str"),
    })
}

impl Module for Rtpproxy {
    fn name(&self) -> &'static str {
        "rtpproxy"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let st = state_from(env)?;
        if st.sets.is_empty() {
            log::warn!("rtpproxy: no rtpproxy_sock configured; its functions will fail");
        }
        let _ = env.state.set(Box::new(st));
        Ok(())
    }
}

type StateRef = Arc<OnceLock<Box<dyn Any + Send + Sync>>>;

fn state(s: &StateRef) -> Option<&State> {
    s.get().and_then(|b| b.downcast_ref::<State>())
}

// ---- options -----------------------------------------------------------

/// The flags string of the offer/answer functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    /// Letters passed on to the proxy (`A`, `I`, `E`, `S`).
    pub proxy: String,
    /// Via branch to add to the Call-ID: 0 none, 1 first Via, 2 second.
    pub via: u8,
    /// `l`: only rewrite when the session exists (requests swap tags).
    pub lookup: bool,
    /// `f`: relay even when the body carries the marker.
    pub force: bool,
    /// `r`/`a`: tell the proxy the SDP's address, not the source address.
    pub real: bool,
    /// `c`: rewrite the session-level `c=` as well.
    pub commip: bool,
    /// `t`: no To-tag (delete only).
    pub no_to_tag: bool,
}

/// Parse a flags string; `reply` decides what `3` means.
pub fn parse_opts(s: &str, reply: bool) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c.to_ascii_lowercase() {
            '1' => o.via = 1,
            '2' => o.via = 2,
            '3' => o.via = if reply { 2 } else { 1 },
            'a' => {
                o.proxy.push('A');
                o.real = true;
            }
            'i' => o.proxy.push('I'),
            'e' => o.proxy.push('E'),
            'w' | 's' => o.proxy.push('S'),
            'l' => o.lookup = true,
            'f' => o.force = true,
            'r' => o.real = true,
            'c' => o.commip = true,
            't' => o.no_to_tag = true,
            // accepted, no effect here: origin IP, v4/v6 bridging, extra id,
            // re-packetisation (with its digits)
            'o' | 'x' | 'b' => {}
            'z' => {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
            }
            _ => return Err(format!("unknown option `{c}`")),
        }
    }
    Ok(o)
}

/// A flags argument: constant ones are checked at load.
fn flags_arg(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Option<Format>, FixupError> {
    if args.len() <= i {
        return Ok(None);
    }
    let f = fx.format_arg(args, i)?;
    if let Some(c) = f.as_constant() {
        parse_opts(c, false).map_err(|e| FixupError::arg(i, e))?;
    }
    Ok(Some(f))
}

fn ip_arg(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Option<Format>, FixupError> {
    if args.len() <= i {
        return Ok(None);
    }
    let f = fx.format_arg(args, i)?;
    if let Some(c) = f.as_constant() {
        c.parse::<IpAddr>()
            .map_err(|_| FixupError::arg(i, format!("`{c}` is not an IP address")))?;
    }
    Ok(Some(f))
}

/// Which direction an offer/answer call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `force_rtp_proxy`: offer for requests, answer for replies and ACK.
    Auto,
    Offer,
    Answer,
}

fn is_ack(ctx: &MsgCtx<'_>) -> bool {
    ctx.is_request() && ctx.method().eq_ignore_ascii_case("ACK")
}

/// Per-message inputs of an offer/answer call.
struct Call<'a> {
    st: &'a State,
    set: &'a Set,
    opts: Opts,
    forced_ip: Option<String>,
}

fn render_opt(ctx: &MsgCtx<'_>, f: &Option<Format>) -> Option<String> {
    f.as_ref().map(|f| ctx.render(f))
}

fn selected_set<'s>(st: &'s State, ctx: &MsgCtx<'_>) -> Option<&'s Set> {
    let id = match ctx.module_pvs.get(SET_KEY) {
        Some(Value::Int(i)) => u32::try_from(*i).unwrap_or(0),
        _ => 0,
    };
    st.sets.iter().find(|s| s.id == id)
}

fn prepare<'a>(
    s: &'a StateRef,
    ctx: &MsgCtx<'_>,
    flags: &Option<Format>,
    ip: &Option<Format>,
) -> Result<Call<'a>, String> {
    let st = state(s).ok_or("module not initialised")?;
    let set = selected_set(st, ctx).ok_or("no RTP proxy set configured (rtpproxy_sock)")?;
    let opts = parse_opts(
        &render_opt(ctx, flags).unwrap_or_default(),
        !ctx.is_request(),
    )?;
    let forced_ip = match render_opt(ctx, ip) {
        Some(t) => {
            t.parse::<IpAddr>()
                .map_err(|_| format!("`{t}` is not an IP address"))?;
            Some(t)
        }
        None => None,
    };
    Ok(Call {
        st,
        set,
        opts,
        forced_ip,
    })
}

fn run_offer_answer(
    s: &StateRef,
    ctx: &mut MsgCtx<'_>,
    flags: &Option<Format>,
    ip: &Option<Format>,
    mode: Mode,
) -> Flow {
    let offer = match mode {
        Mode::Offer => true,
        Mode::Answer => {
            if ctx.is_request() && !is_ack(ctx) {
                return Flow::False;
            }
            false
        }
        Mode::Auto => ctx.is_request() && !is_ack(ctx),
    };
    match prepare(s, ctx, flags, ip) {
        Ok(call) => relay(ctx, &call, offer),
        Err(e) => {
            log::error!("rtpproxy: {e}");
            Flow::False
        }
    }
}

// ---- the relay ---------------------------------------------------------

fn tag_of(ctx: &MsgCtx<'_>, from: bool) -> Option<String> {
    let na = if from { ctx.msg.from() } else { ctx.msg.to() };
    let na = na.ok()?;
    Some(
        na.tag
            .map(|t| String::from_utf8_lossy(ctx.msg.s(t)).into_owned())
            .unwrap_or_default(),
    )
}

/// Call-ID, with `;branch` of the Via the options ask for.
fn call_key(ctx: &MsgCtx<'_>, via: u8) -> Result<String, String> {
    let callid = ctx
        .msg
        .call_id()
        .filter(|c| !c.is_empty())
        .ok_or("no Call-ID")?;
    let mut key = String::from_utf8_lossy(callid).into_owned();
    match via {
        0 => {}
        1 => {
            let b = ctx
                .msg
                .via1()
                .ok()
                .and_then(|v| v.branch)
                .map(|b| String::from_utf8_lossy(ctx.msg.s(b)).into_owned())
                .filter(|b| !b.is_empty())
                .ok_or("no Via branch")?;
            key.push(';');
            key.push_str(&b);
        }
        _ => return Err("the second Via's branch (option 2/3 on replies) is not supported".into()),
    }
    Ok(key)
}

/// One answer of the proxy: relay port, address (if given), IPv6.
fn parse_answer(r: &str) -> Option<(u16, Option<String>, Option<bool>)> {
    let w: Vec<&str> = r.split_whitespace().collect();
    let port: u16 = w.first()?.parse().ok()?;
    if port == 0 {
        return None;
    }
    let addr = w.get(1).map(|a| a.to_string());
    let v6 = match w.len() {
        1 => None,
        2 => Some(false),
        _ => Some(w[2].starts_with('6')),
    };
    Some((port, addr, v6))
}

fn addr_text(v6: bool, ip: &str) -> String {
    format!("IP{} {ip}", if v6 { 6 } else { 4 })
}

/// Offer (`U`) or answer (`L`) every stream of the body and rewrite it.
fn relay(ctx: &mut MsgCtx<'_>, call: &Call<'_>, offer: bool) -> Flow {
    match relay_inner(ctx, call, offer) {
        Ok(f) => f,
        Err(e) => {
            log::error!("rtpproxy: {e}");
            Flow::False
        }
    }
}

fn relay_inner(ctx: &mut MsgCtx<'_>, call: &Call<'_>, offer: bool) -> Result<Flow, String> {
    let o = &call.opts;
    if o.lookup && !offer {
        return Ok(Flow::False);
    }
    let body = ctx.msg.body().to_vec();
    if body.is_empty() {
        return Err("no body to relay".into());
    }
    let key = call_key(ctx, o.via)?;
    let mut from = tag_of(ctx, true)
        .filter(|t| !t.is_empty())
        .ok_or("no From tag")?;
    let mut to = tag_of(ctx, false).unwrap_or_default();
    let reply = !ctx.is_request();
    let mut create = offer;
    if o.lookup {
        if to.is_empty() {
            return Ok(Flow::False);
        }
        if !reply {
            std::mem::swap(&mut from, &mut to);
        }
        create = false;
    } else if (reply && offer) || (!reply && !offer) {
        if to.is_empty() {
            return Err("no To tag".into());
        }
        std::mem::swap(&mut from, &mut to);
    }
    let proxied = sdp::has_marker(&body, &call.st.marker);
    if proxied && !o.force {
        return Ok(Flow::Code(-2));
    }
    let sessions = sdp::parse(&body);
    if sessions.iter().all(|s| s.streams.is_empty()) {
        return Err("SDP without streams".into());
    }
    let src_ip = ctx.src.ip().to_string();
    let local_ip = ctx.local.ip().to_string();
    let base = ctx.msg.body_span().begin();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut medianum = 0;
    for s in &sessions {
        let mut session_c_done = false;
        let mut origin_done = false;
        for m in &s.streams {
            medianum += 1;
            let conn = m
                .conn
                .as_ref()
                .or(s.conn.as_ref())
                .ok_or("stream without a c= line")?;
            let cmd_ip = if o.real { conn.addr.as_str() } else { &src_ip };
            let mut letters = String::from(if create { "U" } else { "L" });
            letters.push_str(&o.proxy);
            if conn.v6 {
                letters.push('6');
            }
            let mut cmd = format!("{letters} {key} {cmd_ip} {} {from};{medianum}", m.port_text);
            if !to.is_empty() {
                cmd.push_str(&format!(" {to};{medianum}"));
            }
            let answer = proxies::command(call.set, key.as_bytes(), &cmd, &call.st.timing)
                .map_err(|e| e.to_string())?;
            let Some((port, addr, v6)) = parse_answer(&answer) else {
                if o.lookup {
                    return Ok(Flow::False);
                }
                return Err(format!("bad answer `{answer}` to `{cmd}`"));
            };
            let new_v6 = v6.unwrap_or(conn.v6);
            let new_ip = if sdp::is_null_addr(&conn.addr) {
                if new_v6 { "::" } else { "0.0.0.0" }.to_owned()
            } else if let Some(ip) = &call.forced_ip {
                ip.clone()
            } else {
                addr.unwrap_or_else(|| local_ip.clone())
            };
            if m.port_text != "0" {
                edits.push((m.port.clone(), port.to_string()));
            }
            if let Some(r) = &m.rtcp_port {
                edits.push((r.clone(), (u32::from(port) + 1).to_string()));
            }
            if let Some(c) = &m.conn {
                edits.push((c.span.clone(), addr_text(new_v6, &new_ip)));
            } else if !session_c_done {
                edits.push((conn.span.clone(), addr_text(new_v6, &new_ip)));
                session_c_done = true;
            }
            if o.commip && !session_c_done {
                if let Some(c) = &s.conn {
                    edits.push((c.span.clone(), addr_text(new_v6, &new_ip)));
                    session_c_done = true;
                }
            }
            if !origin_done {
                if let Some(c) = &s.origin {
                    edits.push((c.span.clone(), addr_text(new_v6, &new_ip)));
                }
                origin_done = true;
            }
        }
    }
    let msg = &ctx.msg;
    for (r, text) in edits {
        let span = ser_sip::Span::new(base + r.start, base + r.end);
        ctx.lumps.replace(msg, span, text.as_bytes());
    }
    if !proxied && !call.st.marker.is_empty() {
        let line = if body.ends_with(b"\n") {
            format!("{}\r\n", call.st.marker)
        } else {
            format!("\r\n{}", call.st.marker)
        };
        ctx.lumps.insert(msg, base + body.len(), line.as_bytes());
    }
    Ok(Flow::True)
}

/// `D`: delete the call's session.
fn destroy(s: &StateRef, ctx: &MsgCtx<'_>, flags: &Option<Format>) -> Flow {
    let r = (|| -> Result<Flow, String> {
        let st = state(s).ok_or("module not initialised")?;
        let set = selected_set(st, ctx).ok_or("no RTP proxy set configured (rtpproxy_sock)")?;
        let o = parse_opts(
            &render_opt(ctx, flags).unwrap_or_default(),
            !ctx.is_request(),
        )?;
        let key = call_key(ctx, o.via)?;
        let from = tag_of(ctx, true)
            .filter(|t| !t.is_empty())
            .ok_or("no From tag")?;
        let to = if o.no_to_tag {
            String::new()
        } else {
            tag_of(ctx, false).unwrap_or_default()
        };
        let mut cmd = format!("D {key} {from}");
        if !to.is_empty() {
            cmd.push(' ');
            cmd.push_str(&to);
        }
        match proxies::command(set, key.as_bytes(), &cmd, &st.timing) {
            Ok(_) => Ok(Flow::True),
            // Kamailio: the answer does not matter, only that a proxy was there.
            Err(proxies::CmdError::NoProxy) => Err("no available RTP proxy".into()),
            Err(e) => {
                log::warn!("rtpproxy: {e}");
                Ok(Flow::True)
            }
        }
    })();
    r.unwrap_or_else(|e| {
        log::error!("rtpproxy: unforce_rtp_proxy: {e}");
        Flow::False
    })
}

// ---- fixups ------------------------------------------------------------

fn offer_answer_fixup(fx: &FixupCtx<'_>, args: &[Arg], mode: Mode) -> Result<Handler, FixupError> {
    let flags = flags_arg(fx, args, 0)?;
    let ip = ip_arg(fx, args, 1)?;
    let s = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        run_offer_answer(&s, ctx, &flags, &ip, mode)
    }))
}

fn fixup_force(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    offer_answer_fixup(fx, args, Mode::Auto)
}

fn fixup_offer(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    offer_answer_fixup(fx, args, Mode::Offer)
}

fn fixup_answer(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    offer_answer_fixup(fx, args, Mode::Answer)
}

fn fixup_unforce(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let flags = flags_arg(fx, args, 0)?;
    let s = fx.module.state.clone();
    Ok(Box::new(move |ctx| destroy(&s, ctx, &flags)))
}

/// `rtpproxy_manage([flags[, ip]])`: offer, answer or delete as the
/// message is (INVITE/ACK/UPDATE/PRACK with SDP, replies, CANCEL/BYE,
/// negative replies; in a failure route the INVITE's session is deleted).
fn fixup_manage(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let flags = flags_arg(fx, args, 0)?;
    let ip = ip_arg(fx, args, 1)?;
    let s = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let Ok(method) = ctx
            .msg
            .cseq()
            .map(|c| String::from_utf8_lossy(ctx.msg.s(c.method_span)).to_ascii_uppercase())
        else {
            return Flow::False;
        };
        if !["INVITE", "ACK", "CANCEL", "BYE", "UPDATE", "PRACK"].contains(&method.as_str()) {
            return Flow::False;
        }
        if method == "CANCEL" || method == "BYE" {
            return destroy(&s, ctx, &flags);
        }
        let has_sdp = !sdp::parse(ctx.msg.body())
            .iter()
            .all(|s| s.streams.is_empty());
        if ctx.is_request() {
            if !has_sdp {
                return Flow::False;
            }
            let in_failure = crate::tm::core::current(ctx).is_some_and(|c| c.fail_code != 0);
            return match method.as_str() {
                "ACK" => run_offer_answer(&s, ctx, &flags, &ip, Mode::Answer),
                "INVITE" if in_failure => destroy(&s, ctx, &flags),
                _ => run_offer_answer(&s, ctx, &flags, &ip, Mode::Offer),
            };
        }
        if ctx.status().unwrap_or(0) >= 300 {
            return destroy(&s, ctx, &flags);
        }
        if !has_sdp {
            return Flow::False;
        }
        // A reply answers the request's offer (an INVITE without SDP gets
        // the offer in its 2xx: Kamailio tracks that through tm; here the
        // session is created on the ACK's answer when the proxy lacks it).
        run_offer_answer(&s, ctx, &flags, &ip, Mode::Answer)
    }))
}

fn fixup_set(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let id = fx.int_arg(args, 0)?;
    let sets = proxies::parse_sets(&sock_values(fx.module)).map_err(FixupError::call)?;
    if !sets.iter().any(|s| i64::from(s.id) == id) {
        return Err(FixupError::arg(
            0,
            format!("rtpproxy set {id} is not configured"),
        ));
    }
    Ok(Box::new(move |ctx| {
        ctx.module_pvs.insert(SET_KEY.to_owned(), Value::Int(id));
        Flow::True
    }))
}

/// `start_recording()`: `R callid from-tag to-tag` (tags as the proxy knows them).
fn fixup_recording(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let s = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let r = (|| -> Result<(), String> {
            let st = state(&s).ok_or("module not initialised")?;
            let set = selected_set(st, ctx).ok_or("no RTP proxy set configured")?;
            let key = call_key(ctx, 0)?;
            let mut from = tag_of(ctx, true).unwrap_or_default();
            let mut to = tag_of(ctx, false).unwrap_or_default();
            if !ctx.is_request() {
                if to.is_empty() {
                    return Err("no To tag".into());
                }
                std::mem::swap(&mut from, &mut to);
            }
            let cmd = format!("R {key} {from} {to}");
            proxies::command(set, key.as_bytes(), cmd.trim_end(), &st.timing)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })();
        match r {
            Ok(()) => Flow::True,
            Err(e) => {
                log::error!("rtpproxy: start_recording: {e}");
                Flow::False
            }
        }
    }))
}
