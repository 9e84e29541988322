//! `registrar`: REGISTER processing and location lookup (replaces SER /
//! Kamailio `modules/registrar`): `save`, `lookup`, `registered`,
//! `unregister`, `add_sock_hdr`, and the SER 3.0 names `save_contacts` /
//! `lookup_contacts` on the same machinery.  Replies go out through sl.

pub mod methods;

use std::sync::Arc;

use ser_sip::{Contacts, HeaderName};

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::ctx::{Branch, MsgCtx, ProcessingError};
use crate::runtime::flags::Flags;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::pvar::Pv;
use crate::usrloc::{self, Changed, Domain, DomainRef, Ucontact};

/// The `registrar` module.
pub struct Registrar;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("default_expires", 3600),
    ParamExport::int("min_expires", 60),
    ParamExport::int("max_expires", 0),
    ParamExport::int("max_contacts", 0),
    ParamExport::int("default_q", -1),
    ParamExport::int("append_branches", 1),
    ParamExport::int("method_filtering", 0),
    ParamExport::int("use_path", 0),
    ParamExport::str("received_avp", ""),
    ParamExport::str("sock_hdr_name", ""),
    ParamExport::int("retry_after", 0),
    // Kamailio 5 parameters accepted without effect: GRUU is not implemented
    // (only 0 is accepted), Path is saved whenever `use_path` is set.
    ParamExport::int("gruu_enabled", 0),
    ParamExport::int("path_mode", 2),
];

const R: RouteMask = RouteMask::REQUEST.or(RouteMask::FAILURE);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "save",
        min_args: 1,
        max_args: 2,
        routes: R,
        fixup: fixup_save,
    },
    FunctionExport {
        name: "save_contacts",
        min_args: 1,
        max_args: 2,
        routes: R,
        fixup: fixup_save,
    },
    FunctionExport {
        name: "lookup",
        min_args: 1,
        max_args: 2,
        routes: R,
        fixup: fixup_lookup,
    },
    FunctionExport {
        name: "lookup_contacts",
        min_args: 1,
        max_args: 2,
        routes: R,
        fixup: fixup_lookup,
    },
    FunctionExport {
        name: "registered",
        min_args: 1,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_registered,
    },
    FunctionExport {
        name: "unregister",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_unregister,
    },
    FunctionExport {
        name: "add_sock_hdr",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::REQUEST,
        fixup: fixup_sock_hdr,
    },
];

impl Module for Registrar {
    fn name(&self) -> &'static str {
        "registrar"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        if env.int("gruu_enabled") != 0 {
            return Err("registrar: gruu_enabled: GRUU is not supported (set 0)".into());
        }
        // usrloc not loaded (or loaded after us): its defaults, memory only.
        if usrloc::has_pending() {
            log::warn!("registrar: usrloc not initialised first; using in-memory location tables");
            usrloc::resolve_pending(&usrloc::UlCfg::default())?;
        }
        Ok(())
    }
}

/// Registrar settings, read from the modparams at fixup time.
#[derive(Debug, Clone)]
pub struct RegCfg {
    /// Expiry when the REGISTER gives none.
    pub default_expires: u32,
    /// Shortest accepted expiry (423 below it).
    pub min_expires: u32,
    /// Longest expiry granted (0: no limit).
    pub max_expires: u32,
    /// Most contacts per AOR (0: no limit).
    pub max_contacts: usize,
    /// q of contacts without one (-1: unspecified).
    pub default_q: i32,
    /// Append the other contacts as branches on lookup.
    pub append_branches: bool,
    /// Skip contacts whose Allow does not list the method.
    pub method_filtering: bool,
    /// Store Path and route through it.
    pub use_path: bool,
    /// AVP holding the NAT source to store as `received`.
    pub received_avp: Option<Pv>,
    /// Header carrying the socket to store (`add_sock_hdr`).
    pub sock_hdr_name: String,
}

impl RegCfg {
    /// From the registrar module's parameters.
    pub fn from_env(env: &ModuleEnv) -> Result<RegCfg, String> {
        let received_avp = match env.str("received_avp").trim() {
            "" => None,
            s => Some(crate::runtime::pvar::parse_pv(s).map_err(|e| format!("received_avp: {e}"))?),
        };
        Ok(RegCfg {
            default_expires: env.int("default_expires").clamp(0, u32::MAX.into()) as u32,
            min_expires: env.int("min_expires").clamp(0, u32::MAX.into()) as u32,
            max_expires: env.int("max_expires").clamp(0, u32::MAX.into()) as u32,
            max_contacts: env.int("max_contacts").max(0) as usize,
            default_q: env.int("default_q").clamp(-1, 1000) as i32,
            append_branches: env.int("append_branches") != 0,
            method_filtering: env.int("method_filtering") != 0,
            use_path: env.int("use_path") != 0,
            received_avp,
            sock_hdr_name: env.str("sock_hdr_name"),
        })
    }
}

impl Default for RegCfg {
    fn default() -> Self {
        RegCfg {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 0,
            max_contacts: 0,
            default_q: -1,
            append_branches: true,
            method_filtering: false,
            use_path: false,
            received_avp: None,
            sock_hdr_name: String::new(),
        }
    }
}

/// `save` flags (Kamailio): memory only, no reply, replace all contacts.
pub const SAVE_NOREPLY: u32 = 0x02;
/// Do not write this save to the database.
pub const SAVE_MEMONLY: u32 = 0x01;
/// The new contacts replace every existing one.
pub const SAVE_REPLACE: u32 = 0x04;

fn table_arg(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<DomainRef, FixupError> {
    let name = fx.str_arg(args, 0)?;
    usrloc::domain_ref(name.trim()).map_err(|e| FixupError::arg(0, e))
}

fn cfg_of(fx: &FixupCtx<'_>) -> Result<Arc<RegCfg>, FixupError> {
    RegCfg::from_env(fx.module)
        .map(Arc::new)
        .map_err(FixupError::call)
}

fn resolved(d: &DomainRef) -> Option<&Arc<Domain>> {
    let r = d.get();
    if r.is_none() {
        log::error!("registrar: location table used before usrloc was initialised");
    }
    r
}

fn internal_error(ctx: &mut MsgCtx<'_>, what: &str) {
    log::error!("registrar: {what}");
    ctx.last_error = Some(ProcessingError {
        code: 500,
        reason: "Server Internal Error".into(),
    });
}

fn fixup_save(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let dom = table_arg(fx, args)?;
    let flags = if args.len() > 1 {
        fx.int_arg(args, 1)? as u32
    } else {
        0
    };
    let cfg = cfg_of(fx)?;
    Ok(Box::new(move |ctx| match resolved(&dom) {
        Some(d) => save(ctx, d, &cfg, flags),
        None => Flow::Code(-1),
    }))
}

fn fixup_lookup(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let dom = table_arg(fx, args)?;
    let uri = if args.len() > 1 {
        Some(fx.format_arg(args, 1)?)
    } else {
        None
    };
    let cfg = cfg_of(fx)?;
    Ok(Box::new(move |ctx| match resolved(&dom) {
        Some(d) => lookup(ctx, d, &cfg, uri.as_ref()),
        None => Flow::Code(-3),
    }))
}

fn fixup_registered(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let dom = table_arg(fx, args)?;
    let uri = if args.len() > 1 {
        Some(fx.format_arg(args, 1)?)
    } else {
        None
    };
    Ok(Box::new(move |ctx| {
        let Some(d) = resolved(&dom) else {
            return Flow::False;
        };
        let Some(aor) = aor_of_uri(d, &target_uri(ctx, uri.as_ref())) else {
            return Flow::False;
        };
        match d.get(&aor) {
            Ok(l) => Flow::from_bool(!l.is_empty()),
            Err(e) => {
                log::error!("registrar: registered: {e}");
                Flow::False
            }
        }
    }))
}

fn fixup_unregister(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let dom = table_arg(fx, args)?;
    let uri = fx.format_arg(args, 1)?;
    Ok(Box::new(move |ctx| {
        let Some(d) = resolved(&dom) else {
            return Flow::False;
        };
        let Some(aor) = aor_of_uri(d, &ctx.render(&uri)) else {
            log::error!("registrar: unregister: bad AOR URI");
            return Flow::False;
        };
        match d.remove(&aor) {
            Ok(true) => Flow::True,
            Ok(false) => Flow::False,
            Err(e) => {
                internal_error(ctx, &format!("unregister: {e}"));
                Flow::Code(-1)
            }
        }
    }))
}

fn fixup_sock_hdr(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let name = fx.str_arg(args, 0)?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(FixupError::arg(0, format!("`{name}` is not a header name")));
    }
    Ok(Box::new(move |ctx| {
        let sock = socket_text(ctx);
        ctx.append_header(&format!("{name}: {sock}\r\n"));
        Flow::True
    }))
}

/// `udp:127.0.0.1:5060` of the socket the request came in on.
pub fn socket_text(ctx: &MsgCtx<'_>) -> String {
    let ip = match ctx.local.ip() {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    format!(
        "{}:{ip}:{}",
        ctx.proto.as_str().to_ascii_lowercase(),
        ctx.local.port()
    )
}

/// The AOR key of a URI for the domain (user, or user@host).
pub fn aor_of_uri(d: &Domain, uri: &str) -> Option<String> {
    let u = ser_sip::parse_uri(uri.as_bytes()).ok()?;
    let b = uri.as_bytes();
    let user = u
        .user
        .map(|s| String::from_utf8_lossy(s.of(b)).into_owned())
        .unwrap_or_default();
    let host = String::from_utf8_lossy(u.host.of(b)).into_owned();
    if user.is_empty() && !d.cfg.use_domain {
        return None;
    }
    Some(d.aor(&user, &host))
}

fn target_uri(ctx: &MsgCtx<'_>, uri: Option<&Format>) -> String {
    match uri {
        Some(f) => ctx.render(f),
        None => ctx.ruri().unwrap_or_default(),
    }
}

/// Send a reply statelessly through sl (with `extra` header lines).
fn reply(ctx: &mut MsgCtx<'_>, code: u16, reason: &str, extra: &[String]) -> bool {
    let keep = ctx.reply_headers.len();
    ctx.reply_headers.extend_from_slice(extra);
    let f = crate::sl::send_reply(ctx, code, reason);
    ctx.reply_headers.truncate(keep);
    f == Flow::True
}

fn fail(ctx: &mut MsgCtx<'_>, flags: u32, code: u16, reason: &str, extra: &[String]) -> Flow {
    ctx.last_error = Some(ProcessingError {
        code,
        reason: reason.to_owned(),
    });
    if flags & SAVE_NOREPLY == 0 {
        reply(ctx, code, reason, extra);
    }
    Flow::Code(-1)
}

/// A contact of the REGISTER, with what `save` stores.
struct NewContact {
    uri: String,
    expires: u32,
    q: i32,
    instance: String,
    reg_id: u32,
}

/// The outcome of applying a REGISTER to the stored contacts.
enum Applied {
    Ok(Vec<Ucontact>),
    TooMany,
}

fn param_text(buf: &[u8], params: &[ser_sip::Param], name: &[u8]) -> Option<String> {
    ser_sip::param::find_param(buf, params, name).map(|p| {
        p.value
            .map(|v| String::from_utf8_lossy(v.of(buf)).into_owned())
            .unwrap_or_default()
    })
}

/// The Contact header fields of a REGISTER: whether one is `*`, how many
/// fields there are, and the contacts; `None` if one does not parse.
fn new_contacts(
    ctx: &MsgCtx<'_>,
    cfg: &RegCfg,
    hdr_expires: Option<u32>,
) -> Option<(bool, usize, Vec<NewContact>)> {
    let m = &ctx.msg;
    let buf = m.buf();
    let mut star = false;
    let mut n = 0;
    let mut list = Vec::new();
    for h in m.find_all(HeaderName::Contact) {
        n += 1;
        match m.contacts_of(h).ok()? {
            Contacts::Star => star = true,
            Contacts::List(cs) => {
                for c in cs {
                    list.push(NewContact {
                        uri: String::from_utf8_lossy(c.addr.uri.span.of(buf)).into_owned(),
                        expires: c.expires.or(hdr_expires).unwrap_or(cfg.default_expires),
                        q: c.q.map_or(cfg.default_q, i32::from),
                        instance: param_text(buf, &c.addr.params, b"+sip.instance")
                            .unwrap_or_default(),
                        reg_id: param_text(buf, &c.addr.params, b"reg-id")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                    });
                }
            }
        }
    }
    Some((star, n, list))
}

/// `save(table[, flags])`: RFC 3261 §10.3 processing of a REGISTER.
pub fn save(ctx: &mut MsgCtx<'_>, d: &Domain, cfg: &RegCfg, flags: u32) -> Flow {
    if !ctx.is_request() {
        return Flow::Code(-1);
    }
    // The AOR is the To URI.
    let Some(to) = ctx.to_uri() else {
        return fail(ctx, flags, 400, "Bad To Header", &[]);
    };
    let Some(aor) = aor_of_uri(d, &to) else {
        return fail(ctx, flags, 400, "Bad To URI", &[]);
    };
    let hdr_expires = match ctx.msg.expires() {
        Ok(e) => e,
        Err(_) => return fail(ctx, flags, 400, "Bad Expires Header", &[]),
    };
    // Collect the Contact header fields.
    let (star, n_heads, mut list) = match new_contacts(ctx, cfg, hdr_expires) {
        Some(x) => x,
        None => return fail(ctx, flags, 400, "Bad Contact Header", &[]),
    };
    if star && (hdr_expires != Some(0) || !list.is_empty() || n_heads > 1) {
        return fail(ctx, flags, 400, "Invalid Contact", &[]);
    }
    // Expiry bounds: RFC 3261 §10.3 step 7 (423), max_expires clamps.
    for c in list.iter_mut() {
        if c.expires != 0 && c.expires < cfg.min_expires {
            let mh = format!("Min-Expires: {}", cfg.min_expires);
            return fail(ctx, flags, 423, "Interval Too Brief", &[mh]);
        }
        if cfg.max_expires != 0 && c.expires > cfg.max_expires {
            c.expires = cfg.max_expires;
        }
    }
    let now = usrloc::now();
    let callid = ctx
        .msg
        .call_id()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default();
    let cseq = ctx.msg.cseq().map(|c| c.number).unwrap_or(0);
    let user_agent = ctx.header_of(HeaderName::UserAgent).unwrap_or_default();
    let socket = match cfg.sock_hdr_name.as_str() {
        "" => socket_text(ctx),
        h => ctx.header(h).unwrap_or_else(|| socket_text(ctx)),
    };
    let received = cfg
        .received_avp
        .as_ref()
        .map(|pv| ctx.get_pv(pv))
        .filter(|v| !v.is_empty())
        .map(|v| v.as_str().into_owned());
    let path = if cfg.use_path {
        ctx.msg
            .find_all(HeaderName::Path)
            .map(|h| {
                String::from_utf8_lossy(ctx.msg.header_body(h))
                    .trim()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join(",")
    } else {
        String::new()
    };
    let methods = methods::allowed(ctx);
    let cflags = ctx.bflags.0;
    let max = cfg.max_contacts;

    let res = d.update(&aor, flags & SAVE_MEMONLY != 0, |stored| {
        if star {
            let had = !stored.is_empty();
            stored.clear();
            return (
                if had { Changed::Yes } else { Changed::No },
                Applied::Ok(Vec::new()),
            );
        }
        let before = stored.clone();
        if flags & SAVE_REPLACE != 0 && !list.is_empty() {
            stored.retain(|s| list.iter().any(|n| n.uri == s.uri));
        }
        let mut changed = flags & SAVE_REPLACE != 0 && stored.len() != before.len();
        for n in &list {
            let pos = stored.iter().position(|s| same_binding(s, n));
            match (pos, n.expires) {
                (Some(i), 0) => {
                    // Removal, unless an older retransmission.
                    if !(stored[i].callid == callid && stored[i].cseq > cseq) {
                        stored.remove(i);
                        changed = true;
                    }
                }
                (None, 0) => {}
                (Some(i), e) => {
                    let s = &mut stored[i];
                    if s.callid == callid && s.cseq > cseq {
                        continue; // out of order: keep the newer binding
                    }
                    s.uri = n.uri.clone();
                    s.expires = now + u64::from(e);
                    s.q = n.q;
                    s.callid = callid.clone();
                    s.cseq = cseq;
                    s.user_agent = user_agent.clone();
                    s.socket = socket.clone();
                    s.received = received.clone().unwrap_or_default();
                    s.path = path.clone();
                    s.methods = methods;
                    s.cflags = cflags;
                    s.instance = n.instance.clone();
                    s.reg_id = n.reg_id;
                    s.last_modified = now;
                    changed = true;
                }
                (None, e) => {
                    stored.push(Ucontact {
                        uri: n.uri.clone(),
                        callid: callid.clone(),
                        path: path.clone(),
                        received: received.clone().unwrap_or_default(),
                        user_agent: user_agent.clone(),
                        socket: socket.clone(),
                        instance: n.instance.clone(),
                        ruid: usrloc::new_ruid(),
                        expires: now + u64::from(e),
                        last_modified: now,
                        cseq,
                        flags: 0,
                        cflags,
                        methods,
                        q: n.q,
                        reg_id: n.reg_id,
                    });
                    changed = true;
                }
            }
        }
        if max != 0 && stored.len() > max {
            *stored = before;
            return (Changed::No, Applied::TooMany);
        }
        (
            if changed { Changed::Yes } else { Changed::No },
            Applied::Ok(stored.clone()),
        )
    });
    let current = match res {
        Ok(Applied::Ok(c)) => c,
        Ok(Applied::TooMany) => return fail(ctx, flags, 503, "Too Many Registered Contacts", &[]),
        Err(crate::usrloc::UlError::Shm(e)) => {
            ser_shm::log_oom("registrar: save refused", &e);
            return fail(ctx, flags, 500, "Server Internal Error", &[]);
        }
        Err(e) => {
            log::error!("registrar: save to `{}` failed: {e}", d.name);
            return fail(ctx, flags, 500, "Server Internal Error", &[]);
        }
    };
    if flags & SAVE_NOREPLY == 0 {
        let mut current = current;
        usrloc::sort_contacts(&mut current, d.cfg.desc_time_order);
        let hdrs = contact_headers(&current, now);
        if !reply(ctx, 200, "OK", &hdrs) {
            return Flow::Code(-1);
        }
    }
    Flow::True
}

/// Same binding: equal URI, or the same `+sip.instance` (+ reg-id) (RFC 5626).
fn same_binding(s: &Ucontact, n: &NewContact) -> bool {
    if !n.instance.is_empty() && s.instance == n.instance {
        return s.reg_id == n.reg_id;
    }
    s.uri == n.uri
}

/// The Contact lines of a 200 OK to REGISTER.
pub fn contact_headers(list: &[Ucontact], now: u64) -> Vec<String> {
    list.iter()
        .map(|c| {
            let mut h = format!("Contact: <{}>;expires={}", c.uri, c.remaining(now));
            if c.q >= 0 {
                h.push_str(&format!(";q={}", q_text(c.q)));
            }
            if !c.instance.is_empty() {
                h.push_str(&format!(";+sip.instance={}", c.instance));
            }
            if c.reg_id != 0 {
                h.push_str(&format!(";reg-id={}", c.reg_id));
            }
            h
        })
        .collect()
}

fn q_text(q: i32) -> String {
    let s = format!("{}.{:03}", q / 1000, q % 1000);
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_owned()
    }
}

/// `lookup(table[, uri])`: 1 found, -1 not found, -2 found but the method
/// is not allowed by any contact, -3 internal error.
pub fn lookup(ctx: &mut MsgCtx<'_>, d: &Domain, cfg: &RegCfg, uri: Option<&Format>) -> Flow {
    let target = target_uri(ctx, uri);
    let Some(aor) = aor_of_uri(d, &target) else {
        log::info!("registrar: lookup: no AOR in `{target}`");
        return Flow::False;
    };
    let mut list = match d.get(&aor) {
        Ok(l) => l,
        Err(e) => {
            internal_error(ctx, &format!("lookup in `{}`: {e}", d.name));
            return Flow::Code(-3);
        }
    };
    if list.is_empty() {
        return Flow::False;
    }
    if cfg.method_filtering {
        let m = methods::bit(ctx.method());
        list.retain(|c| c.methods & m != 0);
        if list.is_empty() {
            return Flow::Code(-2);
        }
    }
    let first = list.remove(0);
    ctx.new_uri = Some(first.uri.clone());
    ctx.dst_uri = dst_of(&first, cfg);
    ctx.bflags = Flags(ctx.bflags.0 | first.cflags);
    // Send from the socket the contact registered through (NAT bindings).
    if let Some(sock) = registered_socket(ctx, &first.socket) {
        ctx.send_socket = Some(sock);
    }
    if cfg.append_branches {
        for c in list {
            let dst = dst_of(&c, cfg);
            ctx.branches.push(Branch {
                uri: c.uri,
                dst_uri: dst,
                bflags: Flags(c.cflags),
            });
        }
    }
    Flow::True
}

/// The listening socket named by a stored `proto:ip:port`, if still ours.
fn registered_socket(ctx: &MsgCtx<'_>, text: &str) -> Option<std::net::SocketAddr> {
    let (proto, rest) = text.split_once(':')?;
    let (ip, port) = rest.rsplit_once(':')?;
    let ip: std::net::IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let addr = std::net::SocketAddr::new(ip, port.parse().ok()?);
    ctx.env
        .listen
        .iter()
        .any(|l| l.addr == addr && l.proto.as_str().eq_ignore_ascii_case(proto))
        .then_some(addr)
}

/// Where to send for a contact: its NAT `received` address, or the first
/// Path hop when `use_path`.
fn dst_of(c: &Ucontact, cfg: &RegCfg) -> Option<String> {
    if cfg.use_path && !c.path.is_empty() {
        let first = c.path.split(',').next().unwrap_or("").trim();
        let inner = first
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or("");
        if !inner.is_empty() {
            return Some(inner.to_owned());
        }
    }
    if c.received.is_empty() {
        None
    } else {
        Some(c.received.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values() {
        assert_eq!(q_text(1000), "1.0");
        assert_eq!(q_text(500), "0.5");
        assert_eq!(q_text(125), "0.125");
        assert_eq!(q_text(0), "0.0");
    }
}
