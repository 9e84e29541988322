//! NAT keep-alive pinging from the timer process (Kamailio nathelper's
//! `natping_interval`): every interval, each registered contact (only those
//! with usrloc's `nat_bflag` when `ping_nated_only`) gets 4 zero bytes over
//! UDP, or a SIP `OPTIONS` (`sipping_method`) when its branch flags carry
//! `sipping_bflag`, sent to its NAT `received` address (else its Contact)
//! from the socket it registered through, so the NAT binding stays open.
//! Replies to the SIP pings are recognised by their Call-ID and absorbed.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::iface::ModuleEnv;
use crate::runtime::ctx::{Env, MsgCtx};
use crate::runtime::transport::{Dest, Proto};
use crate::usrloc::Ucontact;

/// The raw keep-alive Kamailio sends.
pub const RAW_PING: [u8; 4] = [0; 4];

/// Pinging settings (modparams), fixed at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingCfg {
    /// Seconds between rounds (0: off).
    pub interval: u64,
    /// Only contacts with usrloc's `nat_bflag`.
    pub nated_only: bool,
    /// Branch flag asking for SIP pings (-1: none).
    pub sipping_bflag: i64,
    /// From URI of SIP pings ("" : no SIP pings).
    pub from: String,
    /// Method of SIP pings.
    pub method: String,
    /// Call-ID prefix of SIP pings (made in main, shared by every process).
    pub callid: String,
    /// `natping_socket`: send every ping from this socket of ours.
    pub socket: Option<SocketAddr>,
}

impl PingCfg {
    /// From the module's parameters.
    pub fn from_env(env: &ModuleEnv) -> Result<PingCfg, String> {
        let method = env.str("sipping_method");
        let sock = env.str("natping_socket");
        let socket = match sock.trim() {
            "" => None,
            t => Some(
                socket_of(t)
                    .or_else(|| t.parse().ok())
                    .ok_or_else(|| format!("natping_socket `{t}` is not [udp:]ip:port"))?,
            ),
        };
        Ok(PingCfg {
            interval: env.int("natping_interval").max(0) as u64,
            nated_only: env.int("ping_nated_only") != 0,
            sipping_bflag: env.int("sipping_bflag"),
            from: env.str("sipping_from"),
            method: if method.trim().is_empty() {
                "OPTIONS".to_owned()
            } else {
                method.trim().to_owned()
            },
            callid: format!("{:x}", std::process::id() ^ (crate::usrloc::now() as u32)),
            socket,
        })
    }
}

fn bit(flag: i64) -> u32 {
    if (0..32).contains(&flag) {
        1 << flag
    } else {
        0
    }
}

/// `sip:host[:port][;transport=x]` → address and protocol (hosts must be IPs:
/// the timer process does no DNS).
fn uri_target(uri: &str) -> Option<(SocketAddr, Proto)> {
    let u = ser_sip::parse_uri(uri.as_bytes()).ok()?;
    let b = uri.as_bytes();
    let host = std::str::from_utf8(u.host.of(b)).ok()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let proto = u
        .param(b, b"transport")
        .and_then(|p| p.value)
        .and_then(|v| std::str::from_utf8(v.of(b)).ok().and_then(Proto::from_name))
        .unwrap_or(Proto::Udp);
    Some((SocketAddr::new(ip, u.port.unwrap_or(5060)), proto))
}

/// `udp:ip:port` as usrloc stores the registration socket.
fn socket_of(text: &str) -> Option<SocketAddr> {
    let (_, rest) = text.split_once(':')?;
    let (ip, port) = rest.rsplit_once(':')?;
    let ip: IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port.parse().ok()?))
}

/// Where a contact's pings go: `received` if the registrar stored one.
pub fn ping_target(c: &Ucontact) -> Option<(SocketAddr, Proto)> {
    if c.received.is_empty() {
        uri_target(&c.uri)
    } else {
        uri_target(&c.received)
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn host_text(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}

/// The SIP ping for a contact, sent from `sock`.
pub fn sip_ping(cfg: &PingCfg, c: &Ucontact, aor: &str, sock: SocketAddr) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let aor_hash = aor
        .bytes()
        .fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(b));
    let branch = 1_000_000 + (n.wrapping_mul(2_654_435_761) % 9_000_000);
    let route = if c.path.is_empty() {
        String::new()
    } else {
        format!("Route: {}\r\n", c.path)
    };
    let host = host_text(sock);
    format!(
        "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch}\r\n{route}\
         From: {from};tag={ruid}-{aor_hash:x}-{n:x}\r\nTo: {uri}\r\n\
         Call-ID: {cid}-{n:x}@{ip}\r\nCSeq: 1 {m}\r\nContent-Length: 0\r\n\r\n",
        m = cfg.method,
        uri = c.uri,
        port = sock.port(),
        from = cfg.from,
        ruid = c.ruid,
        cid = cfg.callid,
        ip = sock.ip(),
    )
}

/// One round: ping every contact that wants it.  Returns how many were sent.
pub fn round(cfg: &PingCfg, env: &Env) -> usize {
    let mut sent = 0;
    for d in crate::usrloc::all_domains() {
        let need = if cfg.nated_only {
            bit(d.cfg.nat_bflag)
        } else {
            0
        };
        let sip = bit(cfg.sipping_bflag);
        let list = match d.dump() {
            Ok(l) => l,
            Err(e) => {
                log::error!("nathelper: natping: table `{}`: {e}", d.name);
                continue;
            }
        };
        for (aor, contacts) in list {
            for c in contacts.iter().filter(|c| c.cflags & need == need) {
                let Some((to, proto)) = ping_target(c) else {
                    continue;
                };
                let send_sock = cfg.socket.or_else(|| socket_of(&c.socket));
                let use_sip = sip != 0 && c.cflags & sip != 0 && !cfg.from.is_empty();
                if proto != Proto::Udp {
                    // Stream connections keep their own binding alive.
                    continue;
                }
                let buf = if use_sip {
                    let from_sock = send_sock.or_else(|| {
                        env.listen
                            .iter()
                            .find(|l| l.proto == Proto::Udp)
                            .map(|l| l.addr)
                    });
                    let Some(s) = from_sock else { continue };
                    sip_ping(cfg, c, &aor, s).into_bytes()
                } else {
                    RAW_PING.to_vec()
                };
                let dest = Dest {
                    proto: Proto::Udp,
                    addr: to,
                    send_sock,
                };
                match env.transport.send(&buf, &dest) {
                    Ok(()) => sent += 1,
                    Err(e) => log::debug!("nathelper: natping to {to}: {e}"),
                }
            }
        }
    }
    sent
}

/// Called every timer tick: runs a round every `interval` seconds.
pub fn tick(cfg: &PingCfg, env: &Env, now: Instant) {
    static NEXT: Mutex<Option<Instant>> = Mutex::new(None);
    if cfg.interval == 0 {
        return;
    }
    let every = Duration::from_secs(cfg.interval);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    match *next {
        Some(due) if now < due => {}
        Some(_) => {
            *next = Some(now + every);
            drop(next);
            let n = round(cfg, env);
            log::debug!("nathelper: natping round: {n} pings");
        }
        None => *next = Some(now + every),
    }
}

/// Whether a reply answers one of our SIP pings (one Via, our method in
/// CSeq, our Call-ID prefix): such replies are absorbed.
pub fn is_ping_reply(cfg: &PingCfg, ctx: &MsgCtx<'_>) -> bool {
    if ctx.is_request() || cfg.from.is_empty() {
        return false;
    }
    let Some(cid) = ctx.msg.call_id() else {
        return false;
    };
    let ours = cid
        .strip_prefix(cfg.callid.as_bytes())
        .is_some_and(|r| r.first() == Some(&b'-'));
    let method_ok = ctx.msg.cseq().is_ok_and(|c| {
        ctx.msg
            .s(c.method_span)
            .eq_ignore_ascii_case(cfg.method.as_bytes())
    });
    let vias = ctx
        .msg
        .headers()
        .iter()
        .filter(|h| h.name == ser_sip::HeaderName::Via)
        .map(|h| ctx.msg.header_body(h).split(|&b| b == b',').count())
        .sum::<usize>();
    ours && method_ok && vias == 1
}
