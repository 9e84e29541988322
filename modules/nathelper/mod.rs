//! `nathelper`: NAT detection and signalling fixes (the parts of
//! Kamailio/SER `modules/nathelper` a NAT-aware proxy config needs):
//! `nat_uac_test`, `fix_nated_contact`, `fix_nated_register`,
//! `add_rcv_param`, `add_contact_alias`, `handle_ruri_alias`,
//! `fix_nated_sdp`, `is_rfc1918`.
//!
//! NAT keep-alive pinging (`natping_interval`, `ping_nated_only`,
//! `sipping_bflag`, `sipping_from`, `sipping_method`) runs in the timer
//! process ([`ping`]). RTP relaying is the `rtpproxy` module's business.

use std::net::{IpAddr, SocketAddr};

use ser_sip::HeaderName;

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::pvar::{parse_pv, Pv};
use crate::runtime::transport::Proto;
use crate::runtime::value::Value;

pub mod ping;
mod sdp_fix;
#[cfg(test)]
mod tests;

/// The `nathelper` module.
pub struct Nathelper;

const ANYR: RouteMask = RouteMask::REQUEST
    .or(RouteMask::ONREPLY)
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);
const REQ: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

const fn f(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    routes: RouteMask,
    fixup: crate::iface::FixupFn,
) -> FunctionExport {
    FunctionExport::new(name, min_args, max_args, routes, fixup)
}

static FUNCTIONS: &[FunctionExport] = &[
    f("nat_uac_test", 1, 1, ANYR, fixup_nat_uac_test),
    f("fix_nated_contact", 0, 0, ANYR, fixup_fix_contact),
    f("fix_nated_register", 0, 0, REQ, fixup_fix_register),
    f("add_rcv_param", 0, 1, REQ, fixup_add_rcv_param),
    f("add_contact_alias", 0, 0, ANYR, fixup_add_alias),
    // Kamailio 5: the alias added in place; here the same Contact edit.
    f("set_contact_alias", 0, 0, ANYR, fixup_add_alias),
    f("handle_ruri_alias", 0, 0, REQ, fixup_handle_alias),
    f("fix_nated_sdp", 1, 2, ANYR, sdp_fix::fixup_fix_sdp),
    f("is_rfc1918", 1, 1, ANYR, sdp_fix::fixup_is_rfc1918),
];

static PARAMS: &[ParamExport] = &[
    ParamExport::int("natping_interval", 0),
    ParamExport::int("ping_nated_only", 0),
    ParamExport::int("natping_processes", 1),
    ParamExport::str("natping_socket", ""),
    ParamExport::str("received_avp", ""),
    ParamExport::str("force_socket", ""),
    ParamExport::str("sipping_from", ""),
    ParamExport::str("sipping_method", "OPTIONS"),
    ParamExport::int("sipping_bflag", -1),
    ParamExport::str("nortpproxy_str", "a=nortpproxy:yes"),
    ParamExport::int("keepalive_timeout", 0),
    ParamExport::int("udpping_from_path", 0),
    ParamExport::int("append_sdp_oldmediaip", 0),
];

impl Module for Nathelper {
    fn name(&self) -> &'static str {
        "nathelper"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        received_pv(env)?;
        let cfg = ping::PingCfg::from_env(env).map_err(|e| format!("nathelper: {e}"))?;
        if cfg.interval > 0 && cfg.sipping_bflag >= 0 && cfg.from.is_empty() {
            log::warn!("nathelper: sipping_bflag set but no sipping_from: raw pings only");
        }
        if !(-1..32).contains(&cfg.sipping_bflag) {
            return Err(format!(
                "sipping_bflag {} out of range -1..31",
                cfg.sipping_bflag
            ));
        }
        let _ = env.state.set(Box::new(cfg));
        Ok(())
    }
    fn on_tick(
        &self,
        env: &ModuleEnv,
        proc_env: &crate::runtime::ctx::Env,
        now: std::time::Instant,
    ) {
        if let Some(cfg) = ping_cfg(env) {
            ping::tick(cfg, proc_env, now);
        }
    }
    fn on_reply(&self, env: &ModuleEnv, ctx: &mut MsgCtx<'_>) -> bool {
        // a reply to one of our SIP pings ends here
        !ping_cfg(env).is_some_and(|cfg| ping::is_ping_reply(cfg, ctx))
    }
}

fn ping_cfg(env: &ModuleEnv) -> Option<&ping::PingCfg> {
    env.state
        .get()
        .and_then(|b| b.downcast_ref::<ping::PingCfg>())
}

/// `received_avp` as a writable pvar, if set.
fn received_pv(env: &ModuleEnv) -> Result<Option<Pv>, String> {
    let s = env.str("received_avp");
    if s.trim().is_empty() {
        return Ok(None);
    }
    let pv = parse_pv(s.trim()).map_err(|e| format!("nathelper: received_avp `{s}`: {e}"))?;
    if !pv.is_writable() {
        return Err(format!("nathelper: received_avp `{s}` is not writable"));
    }
    Ok(Some(pv))
}

// ---- tests on the message ----------------------------------------------------

/// RFC 1918 private IPv4 ranges (and RFC 6598 shared space, as later
/// Kamailio versions).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[0] == 10
                || (o[0] == 172 && (16..=31).contains(&o[1]))
                || (o[0] == 192 && o[1] == 168)
                || (o[0] == 100 && (64..=127).contains(&o[1]))
        }
        IpAddr::V6(a) => (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn host_ip(text: &[u8]) -> Option<IpAddr> {
    let t = std::str::from_utf8(text).ok()?;
    t.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn contact_private(ctx: &MsgCtx<'_>) -> bool {
    let Ok(Some(ser_sip::Contacts::List(list))) = ctx.msg.contact() else {
        return false;
    };
    list.first()
        .and_then(|c| host_ip(c.addr.uri.host.of(ctx.msg.buf())))
        .is_some_and(is_private)
}

fn via_received_differs(ctx: &MsgCtx<'_>) -> bool {
    match ctx.msg.via1() {
        Ok(v) => host_ip(ctx.msg.s(v.host)) != Some(ctx.src.ip()),
        Err(_) => false,
    }
}

fn via_private(ctx: &MsgCtx<'_>) -> bool {
    ctx.msg
        .via1()
        .ok()
        .and_then(|v| host_ip(ctx.msg.s(v.host)))
        .is_some_and(is_private)
}

fn via_port_differs(ctx: &MsgCtx<'_>) -> bool {
    match ctx.msg.via1() {
        Ok(v) => v.port.unwrap_or(5060) != ctx.src.port(),
        Err(_) => false,
    }
}

/// `c=IN IP4 <addr>` lines of an SDP body.
fn sdp_private(ctx: &MsgCtx<'_>) -> bool {
    sdp_addrs(ctx).into_iter().any(is_private)
}

/// `c=` addresses of the SDP body.
fn sdp_addrs(ctx: &MsgCtx<'_>) -> Vec<IpAddr> {
    let body = String::from_utf8_lossy(ctx.msg.body());
    body.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("c=IN IP")
                .and_then(|r| r.get(1..))
                .and_then(|a| a.trim().split('/').next())
                .and_then(|a| a.parse::<IpAddr>().ok())
        })
        .collect()
}

/// The first Contact's host (if an IP) and port.
fn contact_addr(ctx: &MsgCtx<'_>) -> Option<(Option<IpAddr>, u16)> {
    let Ok(Some(ser_sip::Contacts::List(list))) = ctx.msg.contact() else {
        return None;
    };
    let uri = &list.first()?.addr.uri;
    Some((
        host_ip(uri.host.of(ctx.msg.buf())),
        uri.port.unwrap_or(5060),
    ))
}

/// `nat_uac_test(flags)`: true when any requested test finds NAT:
/// 1 Contact host private, 2 top Via host != source IP, 4 top Via host
/// private, 8 SDP `c=` private, 16 top Via port != source port, 32 source
/// IP private, 64 WebSocket source (never: no WebSocket transport),
/// 128 Contact port != source port, 256 an SDP `c=` address != source IP,
/// 512 Contact host != source IP.
pub fn nat_uac_test(ctx: &MsgCtx<'_>, flags: u32) -> bool {
    (flags & 1 != 0 && contact_private(ctx))
        || (flags & 2 != 0 && via_received_differs(ctx))
        || (flags & 4 != 0 && via_private(ctx))
        || (flags & 8 != 0 && sdp_private(ctx))
        || (flags & 16 != 0 && via_port_differs(ctx))
        || (flags & 32 != 0 && is_private(ctx.src.ip()))
        || (flags & 128 != 0 && contact_addr(ctx).is_some_and(|(_, p)| p != ctx.src.port()))
        || (flags & 256 != 0 && sdp_addrs(ctx).iter().any(|a| *a != ctx.src.ip()))
        || (flags & 512 != 0 && contact_addr(ctx).is_some_and(|(h, _)| h != Some(ctx.src.ip())))
}

fn fixup_nat_uac_test(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let flags = fx.int_arg(args, 0)?;
    if !(1..=1023).contains(&flags) {
        return Err(FixupError::arg(
            0,
            format!("bad test flags {flags} (1..1023)"),
        ));
    }
    let flags = flags as u32;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(nat_uac_test(ctx, flags))
    }))
}

// ---- rewriting -----------------------------------------------------------

fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// `sip:ip:port[;transport=x]` of the source.
fn source_uri(ctx: &MsgCtx<'_>) -> String {
    let mut u = format!("sip:{}:{}", ip_host(ctx.src.ip()), ctx.src.port());
    if ctx.proto != Proto::Udp {
        u.push_str(";transport=");
        u.push_str(&ctx.proto.as_str().to_ascii_lowercase());
    }
    u
}

/// `fix_nated_contact()`: host:port of the first Contact URI := source.
pub fn fix_nated_contact(ctx: &mut MsgCtx<'_>) -> Flow {
    let Ok(Some(ser_sip::Contacts::List(list))) = ctx.msg.contact() else {
        return Flow::False;
    };
    let Some(c) = list.first() else {
        return Flow::False;
    };
    let uri = &c.addr.uri;
    if uri.host.is_empty() {
        return Flow::False;
    }
    // host through the port (if any): the port ends before params/headers
    let end = if uri.port.is_some() {
        let b = ctx.msg.buf();
        let mut e = uri.host.end();
        if b.get(e) == Some(&b':') {
            e += 1;
            while e < b.len() && b[e].is_ascii_digit() {
                e += 1;
            }
        }
        e
    } else {
        uri.host.end()
    };
    let span = ser_sip::Span::new(uri.host.begin(), end);
    let new = format!("{}:{}", ip_host(ctx.src.ip()), ctx.src.port());
    let msg = &ctx.msg;
    ctx.lumps.replace(msg, span, new.as_bytes());
    Flow::True
}

fn fixup_fix_contact(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(fix_nated_contact))
}

/// `fix_nated_register()`: the source as a URI into `received_avp`, for
/// `save()` to store as the contact's received address.
fn fixup_fix_register(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let pv = received_pv(fx.module).map_err(FixupError::call)?;
    Ok(Box::new(move |ctx| {
        let Some(pv) = &pv else {
            // Kamailio: nothing to do without received_avp
            return Flow::True;
        };
        if !ctx.msg.method_bytes().eq_ignore_ascii_case(b"REGISTER") {
            return Flow::True;
        }
        let uri = source_uri(ctx);
        match ctx.set_pv(pv, Value::Str(uri), false) {
            Ok(()) => Flow::True,
            Err(e) => {
                log::error!("fix_nated_register: {e}");
                Flow::False
            }
        }
    }))
}

/// `add_rcv_param([uri_param])`: `;received="sip:ip:port"` on every Contact
/// (as a URI parameter without quotes when the flag is 1).
fn fixup_add_rcv_param(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let uri_param = match args.len() {
        0 => false,
        _ => fx.int_arg(args, 0)? != 0,
    };
    Ok(Box::new(move |ctx| {
        let rcv = source_uri(ctx);
        let headers: Vec<_> = ctx.msg.find_all(HeaderName::Contact).cloned().collect();
        let mut edits = Vec::new();
        for h in &headers {
            let Ok(ser_sip::Contacts::List(list)) = ctx.msg.contacts_of(h) else {
                continue;
            };
            for c in list {
                if uri_param {
                    // inside the URI: before `?headers` / the closing `>`
                    let at = c.addr.uri.params_span.end();
                    edits.push((at, format!(";received={rcv}")));
                } else {
                    edits.push((c.addr.span.end(), format!(";received=\"{rcv}\"")));
                }
            }
        }
        if edits.is_empty() {
            return Flow::False;
        }
        for (at, text) in edits {
            let msg = &ctx.msg;
            ctx.lumps.insert(msg, at, text.as_bytes());
        }
        Flow::True
    }))
}

/// `add_contact_alias()`: when the Contact's host:port is not the source,
/// append `;alias=ip~port~proto` to the Contact URI (Kamailio 3.1).
fn fixup_add_alias(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        let Ok(Some(ser_sip::Contacts::List(list))) = ctx.msg.contact() else {
            return Flow::False;
        };
        let Some(c) = list.first() else {
            return Flow::False;
        };
        let uri = &c.addr.uri;
        let buf = ctx.msg.buf();
        let same = host_ip(uri.host.of(buf)) == Some(ctx.src.ip())
            && uri.port.unwrap_or(5060) == ctx.src.port();
        if same {
            return Flow::True;
        }
        if uri.param(buf, b"alias").is_some() {
            return Flow::False;
        }
        let proto_no = match ctx.proto {
            Proto::Udp => 1,
            Proto::Tcp => 2,
            Proto::Tls => 3,
            Proto::Sctp => 4,
        };
        let text = format!(";alias={}~{}~{proto_no}", ctx.src.ip(), ctx.src.port());
        let mut at = uri.params_span.end();
        if !c.addr.angle {
            // `Contact: sip:x` without brackets: a parameter here would be a
            // header parameter; wrap the URI.
            let msg = &ctx.msg;
            ctx.lumps.insert(msg, uri.span.begin(), b"<");
            at = uri.span.end();
            ctx.lumps.insert(msg, at, format!("{text}>").as_bytes());
            return Flow::True;
        }
        if at < uri.span.begin() {
            at = uri.span.end();
        }
        let msg = &ctx.msg;
        ctx.lumps.insert(msg, at, text.as_bytes());
        Flow::True
    }))
}

/// `alias=ip~port~proto` value → (address, proto).
fn parse_alias(v: &str) -> Option<(SocketAddr, Proto)> {
    let mut it = v.split('~');
    let ip: IpAddr = it.next()?.parse().ok()?;
    let port: u16 = it.next()?.parse().ok()?;
    let proto = match it.next().unwrap_or("1") {
        "1" => Proto::Udp,
        "2" => Proto::Tcp,
        "3" => Proto::Tls,
        "4" => Proto::Sctp,
        _ => return None,
    };
    Some((SocketAddr::new(ip, port), proto))
}

/// `handle_ruri_alias()`: an `alias` parameter in the R-URI becomes the
/// dst-uri and is removed from the R-URI.
fn fixup_handle_alias(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        let Some(ruri) = ctx.ruri() else {
            return Flow::False;
        };
        let Ok(u) = ser_sip::parse_uri(ruri.as_bytes()) else {
            return Flow::False;
        };
        let b = ruri.as_bytes();
        let Some(p) = u.param(b, b"alias") else {
            return Flow::True;
        };
        let Some(value) = p
            .value
            .map(|v| String::from_utf8_lossy(v.of(b)).into_owned())
        else {
            return Flow::False;
        };
        let Some((addr, proto)) = parse_alias(&value) else {
            log::warn!("handle_ruri_alias: bad alias `{value}`");
            return Flow::False;
        };
        let mut du = format!("sip:{}:{}", ip_host(addr.ip()), addr.port());
        if proto != Proto::Udp {
            du.push_str(";transport=");
            du.push_str(&proto.as_str().to_ascii_lowercase());
        }
        ctx.dst_uri = Some(du);
        // drop `;alias=...` (from its `;` to the end of its value)
        let start = p.name.begin().saturating_sub(1);
        let end = p.value.map_or(p.name.end(), |v| v.end());
        let new = format!("{}{}", &ruri[..start], &ruri[end..]);
        ctx.new_uri = Some(new);
        Flow::True
    }))
}
