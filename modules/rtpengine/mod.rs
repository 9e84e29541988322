//! `rtpengine`: media relaying through rtpengine's "ng" control protocol
//! (bencoded dictionaries over UDP), as Kamailio's module.
//!
//! - `rtpengine_sock`: `udp:host:port` (several, space-separated: the first
//!   answers; weights and sets are not supported yet), `rtpengine_tout_ms`
//!   (per try, default 1000), `rtpengine_retr` (tries, default 5).
//! - `rtpengine_offer([flags])`, `rtpengine_answer([flags])`,
//!   `rtpengine_delete([flags])`, `rtpengine_manage([flags])` (offer for
//!   INVITE/UPDATE with SDP, answer for ACK and replies with SDP, delete for
//!   BYE/CANCEL and negative replies).  The body is replaced by the SDP
//!   rtpengine returns.
//! - Flags as Kamailio's: `replace-origin`, `replace-session-connection`
//!   (the `replace` list), `direction=X` (the `direction` list),
//!   `RTP/AVP`-like words (`transport-protocol`), `key=value` (a dictionary
//!   entry), any other word (the `flags` list, e.g. `SIP-source-address`,
//!   `trust-address`).  `received-from` is always sent (the packet's source).

pub mod bencode;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bencode::Bencode;

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;

/// The `rtpengine` module.
pub struct Rtpengine;

const ANYR: RouteMask = RouteMask::REQUEST
    .or(RouteMask::ONREPLY)
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

const fn f(name: &'static str, fixup: crate::iface::FixupFn) -> FunctionExport {
    FunctionExport::new(name, 0, 1, ANYR, fixup)
}

static FUNCTIONS: &[FunctionExport] = &[
    f("rtpengine_offer", fixup_offer),
    f("rtpengine_answer", fixup_answer),
    f("rtpengine_delete", fixup_delete),
    f("rtpengine_manage", fixup_manage),
];

static PARAMS: &[ParamExport] = &[
    ParamExport::str_multi("rtpengine_sock", ""),
    ParamExport::int("rtpengine_tout_ms", 1000),
    ParamExport::int("rtpengine_retr", 5),
    ParamExport::int("rtpengine_disable_tout", 60),
];

/// The control address and timing, from the parameters.
#[derive(Debug, Clone)]
struct Control {
    addr: SocketAddr,
    timeout: Duration,
    tries: u32,
}

fn control(env: &ModuleEnv) -> Result<Option<Control>, String> {
    let first = env
        .all("rtpengine_sock")
        .iter()
        .filter_map(|v| match v {
            crate::iface::ParamValue::Str(s) => Some(s.clone()),
            crate::iface::ParamValue::Int(_) => None,
        })
        .flat_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .next();
    let Some(sock) = first else { return Ok(None) };
    let sock = sock.split('=').next().unwrap_or(&sock);
    let rest = sock
        .strip_prefix("udp:")
        .or_else(|| sock.strip_prefix("udp6:"))
        .ok_or_else(|| format!("rtpengine_sock `{sock}`: only udp:host:port is supported"))?;
    let addr = rest
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("rtpengine_sock `{sock}`: bad host:port"))?;
    Ok(Some(Control {
        addr,
        timeout: Duration::from_millis(env.int("rtpengine_tout_ms").clamp(10, 60_000) as u64),
        tries: env.int("rtpengine_retr").clamp(1, 20) as u32,
    }))
}

impl Module for Rtpengine {
    fn name(&self) -> &'static str {
        "rtpengine"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let c = control(env)?.ok_or("rtpengine: no rtpengine_sock")?;
        let _ = env.state.set(Box::new(c));
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Offer,
    Answer,
    Delete,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Offer => "offer",
            Command::Answer => "answer",
            Command::Delete => "delete",
        }
    }
}

/// The request dictionary for `cmd` on `ctx` with Kamailio-style `flags`.
fn request(cmd: Command, ctx: &MsgCtx<'_>, flags: &str) -> Result<Bencode, String> {
    let mut d: BTreeMap<Vec<u8>, Bencode> = BTreeMap::new();
    let put = |d: &mut BTreeMap<Vec<u8>, Bencode>, k: &str, v: Bencode| {
        d.insert(k.as_bytes().to_vec(), v);
    };
    let push = |d: &mut BTreeMap<Vec<u8>, Bencode>, k: &str, v: &str| {
        let e = d
            .entry(k.as_bytes().to_vec())
            .or_insert_with(|| Bencode::List(Vec::new()));
        if let Bencode::List(l) = e {
            l.push(Bencode::str(v));
        }
    };
    put(&mut d, "command", Bencode::str(cmd.name()));
    let call_id = ctx.msg.call_id().ok_or("no Call-ID")?;
    put(&mut d, "call-id", Bencode::str(call_id));
    let from_tag = ctx
        .msg
        .from()
        .ok()
        .and_then(|f| f.tag.map(|t| t.of(ctx.msg.buf()).to_vec()))
        .ok_or("no From tag")?;
    put(&mut d, "from-tag", Bencode::Str(from_tag));
    if let Some(t) = ctx
        .msg
        .to()
        .ok()
        .and_then(|t| t.tag.map(|t| t.of(ctx.msg.buf()).to_vec()))
    {
        put(&mut d, "to-tag", Bencode::Str(t));
    }
    if cmd != Command::Delete {
        put(&mut d, "sdp", Bencode::str(ctx.msg.body()));
    }
    let ip = ctx.src.ip();
    put(
        &mut d,
        "received-from",
        Bencode::List(vec![
            Bencode::str(if ip.is_ipv4() { "IP4" } else { "IP6" }),
            Bencode::str(ip.to_string()),
        ]),
    );
    for w in flags.split_whitespace() {
        if let Some(what) = w.strip_prefix("replace-") {
            push(&mut d, "replace", what);
        } else if let Some((k, v)) = w.split_once('=') {
            match k {
                "direction" | "replace" | "flags" | "rtcp-mux" | "SDES" => push(&mut d, k, v),
                _ => put(&mut d, k, Bencode::str(v)),
            }
        } else if w.starts_with("RTP/") || w.starts_with("UDP/") {
            put(&mut d, "transport-protocol", Bencode::str(w));
        } else {
            push(&mut d, "flags", w);
        }
    }
    Ok(Bencode::Dict(d))
}

static COOKIE: AtomicU32 = AtomicU32::new(0);

/// One ng exchange: the reply dictionary.
fn exchange(c: &Control, req: &Bencode) -> Result<Bencode, String> {
    let cookie = format!(
        "{}_{}",
        std::process::id(),
        COOKIE.fetch_add(1, Ordering::Relaxed)
    );
    let mut pkt = cookie.clone().into_bytes();
    pkt.push(b' ');
    req.encode(&mut pkt);
    let local = if c.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(local).map_err(|e| format!("socket: {e}"))?;
    sock.connect(c.addr)
        .map_err(|e| format!("{}: {e}", c.addr))?;
    sock.set_read_timeout(Some(c.timeout))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_535];
    for _ in 0..c.tries {
        sock.send(&pkt).map_err(|e| format!("{}: {e}", c.addr))?;
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let got = &buf[..n];
        let Some(body) = got
            .strip_prefix(cookie.as_bytes())
            .and_then(|r| r.strip_prefix(b" "))
        else {
            continue; // a late answer to an earlier try
        };
        let (reply, _) = bencode::decode(body)?;
        return Ok(reply);
    }
    Err(format!("no answer from rtpengine {}", c.addr))
}

/// Runs `cmd`; an offer/answer replaces the body with rtpengine's SDP.
fn run(c: &Control, ctx: &mut MsgCtx<'_>, cmd: Command, flags: &str) -> Flow {
    let result = request(cmd, ctx, flags).and_then(|req| exchange(c, &req));
    let reply = match result {
        Ok(r) => r,
        Err(e) => {
            log::error!("rtpengine {}: {e}", cmd.name());
            return Flow::False;
        }
    };
    match reply.get("result").and_then(Bencode::as_bytes) {
        Some(b"ok") => {}
        other => {
            let why = reply
                .get("error-reason")
                .and_then(Bencode::as_bytes)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            log::error!(
                "rtpengine {}: {} {why}",
                cmd.name(),
                String::from_utf8_lossy(other.unwrap_or(b"no result"))
            );
            return Flow::False;
        }
    }
    if cmd != Command::Delete {
        let Some(sdp) = reply.get("sdp").and_then(Bencode::as_bytes) else {
            log::error!("rtpengine {}: no SDP in the answer", cmd.name());
            return Flow::False;
        };
        ctx.lumps.set_body(&ctx.msg, sdp);
    }
    Flow::True
}

fn with_flags(
    fx: &FixupCtx<'_>,
    a: &[Arg],
    f: impl Fn(&Control, &mut MsgCtx<'_>, &str) -> Flow + Send + Sync + 'static,
) -> Result<Handler, FixupError> {
    let flags: Option<Format> = if a.is_empty() {
        None
    } else {
        Some(fx.format_arg(a, 0)?)
    };
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let Some(c) = st.get().and_then(|s| s.downcast_ref::<Control>()) else {
            log::error!("rtpengine: module not initialised");
            return Flow::False;
        };
        let flags = flags.as_ref().map(|f| ctx.render(f)).unwrap_or_default();
        f(c, ctx, &flags)
    }))
}

fn fixup_offer(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_flags(fx, a, |c, ctx, fl| run(c, ctx, Command::Offer, fl))
}

fn fixup_answer(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_flags(fx, a, |c, ctx, fl| run(c, ctx, Command::Answer, fl))
}

fn fixup_delete(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_flags(fx, a, |c, ctx, fl| run(c, ctx, Command::Delete, fl))
}

/// What `rtpengine_manage` does with this message, if anything.
fn manage_command(ctx: &MsgCtx<'_>) -> Option<Command> {
    let method = ctx
        .msg
        .cseq()
        .ok()
        .map(|c| String::from_utf8_lossy(ctx.msg.s(c.method_span)).to_ascii_uppercase())?;
    if method == "BYE" || method == "CANCEL" {
        return Some(Command::Delete);
    }
    if !["INVITE", "ACK", "UPDATE", "PRACK"].contains(&method.as_str()) {
        return None;
    }
    let has_sdp = !ctx.msg.body().is_empty();
    if ctx.is_request() {
        return match method.as_str() {
            _ if !has_sdp => None,
            "ACK" | "PRACK" => Some(Command::Answer),
            _ => Some(Command::Offer),
        };
    }
    match ctx.status() {
        Some(s) if s >= 300 && method == "INVITE" => Some(Command::Delete),
        Some(s) if (180..300).contains(&s) && has_sdp => Some(Command::Answer),
        _ => None,
    }
}

fn fixup_manage(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_flags(fx, a, |c, ctx, fl| match manage_command(ctx) {
        Some(cmd) => run(c, ctx, cmd, fl),
        None => Flow::False,
    })
}

#[cfg(test)]
mod tests;
