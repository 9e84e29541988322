//! `presence`: a SIP presence server for the `presence` event (replaces
//! Kamailio's `presence` module, with `presence_xml` as the event package):
//! - `handle_publish()`: PUBLISH with a PIDF body is stored in `presentity`
//!   under a new entity tag (`SIP-ETag`); `SIP-If-Match` refreshes, modifies
//!   or (Expires 0) removes it; every watcher of the presentity is notified;
//! - `handle_subscribe()`: a SUBSCRIBE creates or refreshes a subscription in
//!   `active_watchers` (and `watchers`), replies 200/202 and sends a NOTIFY
//!   with the aggregated PIDF (`Subscription-State: active;expires=N`, or
//!   `pending` without `force_active`, `terminated` on Expires 0);
//! - expired publications and subscriptions are removed by the timer process
//!   (watchers get a final NOTIFY `terminated;reason=timeout`).
//!
//! State lives in the database (`db_url`, required): every process sees
//! the same subscriptions.  Replies go through the request's transaction when
//! the script made one (`t_newtran`), statelessly otherwise.  NOTIFYs are
//! sent statelessly (their 200s are absorbed as replies to our own Via).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
    RouteRunner,
};
use crate::runtime::ctx::{Env, MsgCtx};
use crate::runtime::flow::Flow;
use crate::runtime::transport::{Dest, Proto};

/// The `presence` module.
pub struct Presence;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", ""),
    ParamExport::str("server_address", ""),
    ParamExport::int("max_expires", 3600),
    ParamExport::int("min_expires", 0),
    ParamExport::int("default_expires", 3600),
    ParamExport::int("clean_period", 100),
    ParamExport::int("expires_offset", 0),
    ParamExport::int("fallback2db", 0),
    ParamExport::int("subs_htable_size", 9),
    ParamExport::int("pres_htable_size", 9),
    ParamExport::int("send_fast_notify", 1),
    ParamExport::str("presentity_table", "presentity"),
    ParamExport::str("active_watchers_table", "active_watchers"),
    ParamExport::str("watchers_table", "watchers"),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "handle_publish",
        min_args: 0,
        max_args: 1,
        routes: RouteMask::REQUEST,
        fixup: fixup_publish,
    },
    FunctionExport {
        name: "handle_subscribe",
        min_args: 0,
        max_args: 1,
        routes: RouteMask::REQUEST,
        fixup: fixup_subscribe,
    },
];

/// Subscription status as Kamailio stores it.
const ACTIVE: i64 = 1;
const PENDING: i64 = 2;

/// Settings after modparams.
#[derive(Debug, Clone)]
struct Config {
    url: String,
    server_address: String,
    max_expires: i64,
    min_expires: i64,
    default_expires: i64,
    presentity: String,
    watchers_active: String,
    watchers: String,
    /// The script's route runner slot: identifies this config's tm.
    routes: Arc<OnceLock<Weak<dyn RouteRunner>>>,
}

impl Config {
    fn from_env(env: &ModuleEnv) -> Result<Config, String> {
        let url = env.str("db_url");
        if url.is_empty() {
            return Err(
                "presence: db_url is required (subscriptions are kept in the database)".into(),
            );
        }
        let table = |n: &str| {
            let t = env.str(n);
            db::ident(&t).map_err(|e| format!("presence: {n}: {e}"))?;
            Ok::<_, String>(t)
        };
        Ok(Config {
            url,
            server_address: env.str("server_address"),
            max_expires: env.int("max_expires").max(1),
            min_expires: env.int("min_expires").max(0),
            default_expires: env.int("default_expires").max(1),
            presentity: table("presentity_table")?,
            watchers_active: table("active_watchers_table")?,
            watchers: table("watchers_table")?,
            routes: env.routes.clone(),
        })
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn new_etag() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "a.{}.{}.{}",
        now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Module for Presence {
    fn name(&self) -> &'static str {
        "presence"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let _ = env.state.set(Box::new(Arc::new(Config::from_env(env)?)));
        Ok(())
    }
    fn on_tick(&self, env: &ModuleEnv, proc_env: &Env, _now: Instant) {
        // Expiry once a second is plenty (ticks are 100 ms).
        static LAST: AtomicU64 = AtomicU64::new(0);
        let t = now() as u64;
        if LAST.swap(t, Ordering::Relaxed) == t {
            return;
        }
        if let Some(c) = env
            .state
            .get()
            .and_then(|s| s.downcast_ref::<Arc<Config>>())
        {
            if let Err(e) = expire(c, proc_env, now()) {
                log::error!("presence: expiry: {e}");
            }
        }
    }
}

fn config(fx: &FixupCtx<'_>) -> Result<Arc<Config>, FixupError> {
    Config::from_env(fx.module)
        .map(Arc::new)
        .map_err(FixupError::call)
}

/// The Event package of a request (`presence`, lower-case), if any.
fn event_of(ctx: &MsgCtx<'_>) -> Option<String> {
    ctx.header("Event").map(|e| {
        e.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// Send a reply, through the request's transaction when there is one;
/// returns the To-tag the reply carries.
fn reply(
    c: &Config,
    ctx: &mut MsgCtx<'_>,
    code: u16,
    reason: &str,
    headers: Vec<String>,
) -> Option<String> {
    ctx.reply_headers.extend(headers);
    let existing = ctx.msg.to().ok().and_then(|t| t.tag).map(|t| ctx.text(t));
    if let Some(st) = crate::tm::state_of_script(crate::tm::hooks::script_id(&c.routes)) {
        if let (Some(tm), Some(cur)) = (crate::tm::tm_of(&st), crate::tm::core::current(ctx)) {
            let ok = tm.reply_local(ctx.env, cur.tx, code, reason, &ctx.reply_headers.clone());
            ctx.reply_headers.clear();
            return ok.then(|| existing.unwrap_or_else(|| crate::tm::core::local_to_tag(cur.tx)));
        }
    }
    let ok = crate::sl::send_reply(ctx, code, reason).is_true();
    ctx.reply_headers.clear();
    ok.then(|| existing.unwrap_or_else(|| crate::sl::to_tag(ctx)))
}

fn bad_event(c: &Config, ctx: &mut MsgCtx<'_>) -> Flow {
    reply(
        c,
        ctx,
        489,
        "Bad Event",
        vec!["Allow-Events: presence".into()],
    );
    Flow::False
}

/// `user@host` of the R-URI as the presentity (`sip:user@host`).
fn presentity_of(ctx: &MsgCtx<'_>) -> Option<(String, String)> {
    let ruri = ctx.ruri()?;
    let u = ser_sip::parse_uri(ruri.as_bytes()).ok()?;
    let text = |s: Option<ser_sip::Span>| {
        s.map(|s| String::from_utf8_lossy(&ruri.as_bytes()[s.begin()..s.end()]).into_owned())
    };
    Some((text(u.user).unwrap_or_default(), text(Some(u.host))?))
}

fn expires_of(ctx: &MsgCtx<'_>, c: &Config) -> Result<i64, ()> {
    match ctx.header("Expires") {
        None => Ok(c.default_expires),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n.min(c.max_expires)),
            _ => Err(()),
        },
    }
}

fn fixup_publish(fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    let c = config(fx)?;
    Ok(Box::new(move |ctx| match publish(&c, ctx) {
        Ok(f) => f,
        Err(e) => {
            log::error!("handle_publish: {e}");
            reply(&c, ctx, 500, "Server Internal Error", Vec::new());
            Flow::Code(-1)
        }
    }))
}

fn publish(c: &Config, ctx: &mut MsgCtx<'_>) -> Result<Flow, db::DbError> {
    if !ctx.method().eq_ignore_ascii_case("PUBLISH") {
        return Ok(Flow::False);
    }
    if event_of(ctx).as_deref() != Some("presence")
        || !crate::presence_xml::presence_event_supported()
    {
        return Ok(bad_event(c, ctx));
    }
    let Some((user, domain)) = presentity_of(ctx) else {
        reply(c, ctx, 400, "Bad Request", Vec::new());
        return Ok(Flow::False);
    };
    let Ok(expires) = expires_of(ctx, c) else {
        reply(c, ctx, 400, "Bad Expires", Vec::new());
        return Ok(Flow::False);
    };
    let body = String::from_utf8_lossy(ctx.msg.body()).into_owned();
    let sender = ctx.from_uri().unwrap_or_default();
    let t = now();
    let key = |etag: &str| -> Vec<(&'static str, DbValue)> {
        vec![
            ("username", DbValue::Str(user.clone())),
            ("domain", DbValue::Str(domain.clone())),
            ("event", DbValue::Str("presence".into())),
            ("etag", DbValue::Str(etag.to_owned())),
        ]
    };
    let etag = match ctx.header("SIP-If-Match").map(|e| e.trim().to_owned()) {
        Some(old) => {
            let found = db::with(&c.url, |d| {
                d.query(&c.presentity, &["body"], &key(&old), None)
            })?;
            if found.is_empty() {
                reply(c, ctx, 412, "Conditional Request Failed", Vec::new());
                return Ok(Flow::False);
            }
            if expires == 0 {
                db::with(&c.url, |d| d.delete(&c.presentity, &key(&old)))?;
                reply(
                    c,
                    ctx,
                    200,
                    "OK",
                    vec![format!("SIP-ETag: {old}"), "Expires: 0".into()],
                );
                notify_presentity(c, ctx.env, &user, &domain)?;
                return Ok(Flow::True);
            }
            let new = new_etag();
            let mut set = vec![
                ("etag", DbValue::Str(new.clone())),
                ("expires", DbValue::Int(t + expires)),
                ("received_time", DbValue::Int(t)),
            ];
            if !body.is_empty() {
                set.push(("body", DbValue::Str(body.clone())));
            }
            db::with(&c.url, |d| d.update(&c.presentity, &key(&old), &set))?;
            new
        }
        None => {
            if body.is_empty() {
                reply(c, ctx, 400, "Bad Request", Vec::new());
                return Ok(Flow::False);
            }
            if expires == 0 {
                reply(c, ctx, 400, "Bad Request", Vec::new());
                return Ok(Flow::False);
            }
            let new = new_etag();
            let mut row = key(&new);
            row.extend([
                ("expires", DbValue::Int(t + expires)),
                ("received_time", DbValue::Int(t)),
                ("body", DbValue::Str(body)),
                ("sender", DbValue::Str(sender)),
            ]);
            db::with(&c.url, |d| d.insert(&c.presentity, &row))?;
            new
        }
    };
    reply(
        c,
        ctx,
        200,
        "OK",
        vec![format!("SIP-ETag: {etag}"), format!("Expires: {expires}")],
    );
    notify_presentity(c, ctx.env, &user, &domain)?;
    Ok(Flow::True)
}

/// One stored subscription.
#[derive(Debug, Clone)]
struct Watcher {
    presentity_uri: String,
    watcher: String,
    to_tag: String,
    from_tag: String,
    callid: String,
    local_cseq: i64,
    contact: String,
    record_route: String,
    expires: i64,
    status: i64,
    socket: String,
    local_contact: String,
}

const WATCHER_COLS: [&str; 13] = [
    "presentity_uri",
    "watcher_username",
    "watcher_domain",
    "to_tag",
    "from_tag",
    "callid",
    "local_cseq",
    "contact",
    "record_route",
    "expires",
    "status",
    "socket_info",
    "local_contact",
];

fn watcher_of(r: &[DbValue]) -> Watcher {
    Watcher {
        presentity_uri: r[0].as_str(),
        watcher: format!("sip:{}@{}", r[1].as_str(), r[2].as_str()),
        to_tag: r[3].as_str(),
        from_tag: r[4].as_str(),
        callid: r[5].as_str(),
        local_cseq: r[6].as_int(),
        contact: r[7].as_str(),
        record_route: r[8].as_str(),
        expires: r[9].as_int(),
        status: r[10].as_int(),
        socket: r[11].as_str(),
        local_contact: r[12].as_str(),
    }
}

fn dialog_key(w: &Watcher) -> Vec<(&'static str, DbValue)> {
    vec![
        ("callid", DbValue::Str(w.callid.clone())),
        ("to_tag", DbValue::Str(w.to_tag.clone())),
        ("from_tag", DbValue::Str(w.from_tag.clone())),
    ]
}

fn fixup_subscribe(fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    let c = config(fx)?;
    Ok(Box::new(move |ctx| match subscribe(&c, ctx) {
        Ok(f) => f,
        Err(e) => {
            log::error!("handle_subscribe: {e}");
            reply(&c, ctx, 500, "Server Internal Error", Vec::new());
            Flow::Code(-1)
        }
    }))
}

fn socket_text(proto: Proto, a: std::net::SocketAddr) -> String {
    let p = match proto {
        Proto::Udp => "udp",
        Proto::Tcp => "tcp",
        Proto::Tls => "tls",
        Proto::Sctp => "sctp",
    };
    format!("{p}:{a}")
}

fn subscribe(c: &Config, ctx: &mut MsgCtx<'_>) -> Result<Flow, db::DbError> {
    if !ctx.method().eq_ignore_ascii_case("SUBSCRIBE") {
        return Ok(Flow::False);
    }
    if event_of(ctx).as_deref() != Some("presence")
        || !crate::presence_xml::presence_event_supported()
    {
        return Ok(bad_event(c, ctx));
    }
    let Ok(expires) = expires_of(ctx, c) else {
        reply(c, ctx, 400, "Bad Expires", Vec::new());
        return Ok(Flow::False);
    };
    if expires > 0 && expires < c.min_expires {
        reply(
            c,
            ctx,
            423,
            "Interval Too Brief",
            vec![format!("Min-Expires: {}", c.min_expires)],
        );
        return Ok(Flow::False);
    }
    let m = &ctx.msg;
    let callid = m
        .call_id()
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .unwrap_or_default();
    let from_tag = m.from().ok().and_then(|f| f.tag).map(|t| ctx.text(t));
    let to_tag = m.to().ok().and_then(|t| t.tag).map(|t| ctx.text(t));
    let remote_cseq = m.cseq().map(|c| i64::from(c.number)).unwrap_or(0);
    let Some(from_tag) = from_tag else {
        reply(c, ctx, 400, "Missing From tag", Vec::new());
        return Ok(Flow::False);
    };
    let local_contact = if c.server_address.is_empty() {
        format!("sip:{}", ctx.local)
    } else {
        c.server_address.clone()
    };
    let t = now();
    let mut w = match to_tag {
        Some(tt) => {
            // Refresh or end of an existing subscription.
            let key = vec![
                ("callid", DbValue::Str(callid.clone())),
                ("to_tag", DbValue::Str(tt.clone())),
                ("from_tag", DbValue::Str(from_tag.clone())),
            ];
            let rows = db::with(&c.url, |d| {
                d.query(&c.watchers_active, &WATCHER_COLS, &key, None)
            })?;
            let Some(r) = rows.first() else {
                reply(c, ctx, 481, "Subscription does not exist", Vec::new());
                return Ok(Flow::False);
            };
            let mut w = watcher_of(r);
            w.expires = t + expires;
            db::with(&c.url, |d| {
                d.update(
                    &c.watchers_active,
                    &key,
                    &[
                        ("expires", DbValue::Int(w.expires)),
                        ("remote_cseq", DbValue::Int(remote_cseq)),
                    ],
                )
            })?;
            w
        }
        None => {
            let Some((user, domain)) = presentity_of(ctx) else {
                reply(c, ctx, 400, "Bad Request-URI", Vec::new());
                return Ok(Flow::False);
            };
            let (wuser, wdomain) = match ctx.from_uri().and_then(|u| {
                let p = ser_sip::parse_uri(u.as_bytes()).ok()?;
                let s = |sp: ser_sip::Span| u[sp.begin()..sp.end()].to_owned();
                Some((p.user.map(s).unwrap_or_default(), s(p.host)))
            }) {
                Some(x) => x,
                None => {
                    reply(c, ctx, 400, "Bad From", Vec::new());
                    return Ok(Flow::False);
                }
            };
            let contact = match ctx.msg.contact() {
                Ok(Some(ser_sip::Contacts::List(l))) if !l.is_empty() => {
                    ctx.text(l[0].addr.uri.span)
                }
                _ => {
                    reply(c, ctx, 400, "Missing Contact", Vec::new());
                    return Ok(Flow::False);
                }
            };
            let rr: Vec<String> = ctx
                .msg
                .find_by_name(b"Record-Route")
                .map(|h| String::from_utf8_lossy(ctx.msg.header_body(h)).into_owned())
                .collect();
            // The To-tag of our reply is the dialog's local tag.
            let status = if crate::presence_xml::force_active() {
                ACTIVE
            } else {
                PENDING
            };
            let code = if status == ACTIVE { 200 } else { 202 };
            let reason = if status == ACTIVE { "OK" } else { "Accepted" };
            let Some(tag) = reply(
                c,
                ctx,
                code,
                reason,
                vec![
                    format!("Expires: {expires}"),
                    format!("Contact: <{local_contact}>"),
                ],
            ) else {
                return Ok(Flow::False);
            };
            let w = Watcher {
                presentity_uri: format!("sip:{user}@{domain}"),
                watcher: format!("sip:{wuser}@{wdomain}"),
                to_tag: tag,
                from_tag,
                callid,
                local_cseq: 1,
                contact,
                record_route: rr.join(", "),
                expires: t + expires,
                status,
                socket: socket_text(ctx.proto, ctx.local),
                local_contact,
            };
            let mut row = dialog_key(&w);
            row.extend([
                ("presentity_uri", DbValue::Str(w.presentity_uri.clone())),
                ("watcher_username", DbValue::Str(wuser.clone())),
                ("watcher_domain", DbValue::Str(wdomain.clone())),
                ("to_user", DbValue::Str(user)),
                ("to_domain", DbValue::Str(domain)),
                ("event", DbValue::Str("presence".into())),
                ("local_cseq", DbValue::Int(w.local_cseq)),
                ("remote_cseq", DbValue::Int(remote_cseq)),
                ("contact", DbValue::Str(w.contact.clone())),
                ("record_route", DbValue::Str(w.record_route.clone())),
                ("expires", DbValue::Int(w.expires)),
                ("status", DbValue::Int(status)),
                ("version", DbValue::Int(0)),
                ("socket_info", DbValue::Str(w.socket.clone())),
                ("local_contact", DbValue::Str(w.local_contact.clone())),
            ]);
            db::with(&c.url, |d| {
                d.insert(&c.watchers_active, &row)?;
                d.replace(
                    &c.watchers,
                    &[
                        ("presentity_uri", DbValue::Str(w.presentity_uri.clone())),
                        ("watcher_username", DbValue::Str(wuser)),
                        ("watcher_domain", DbValue::Str(wdomain)),
                        ("event", DbValue::Str("presence".into())),
                    ],
                    &[
                        ("status", DbValue::Int(status)),
                        ("inserted_time", DbValue::Int(t)),
                    ],
                )
            })?;
            send_notify(c, ctx.env, &w, t, None)?;
            return Ok(Flow::True);
        }
    };
    let code_reason = if w.status == ACTIVE {
        (200, "OK")
    } else {
        (202, "Accepted")
    };
    reply(
        c,
        ctx,
        code_reason.0,
        code_reason.1,
        vec![
            format!("Expires: {expires}"),
            format!("Contact: <{}>", w.local_contact),
        ],
    );
    if expires == 0 {
        send_notify(c, ctx.env, &w, t, Some("terminated;reason=timeout"))?;
        db::with(&c.url, |d| d.delete(&c.watchers_active, &dialog_key(&w)))?;
    } else {
        w.expires = t + expires;
        send_notify(c, ctx.env, &w, t, None)?;
    }
    Ok(Flow::True)
}

/// The aggregated PIDF of a presentity (`sip:user@domain`), if published.
fn presence_body(c: &Config, uri: &str) -> Result<Option<String>, db::DbError> {
    let Some((user, domain)) = uri
        .strip_prefix("sip:")
        .and_then(|r| r.split_once('@'))
        .map(|(u, d)| (u.to_owned(), d.to_owned()))
    else {
        return Ok(None);
    };
    let rows = db::with(&c.url, |d| {
        d.query(
            &c.presentity,
            &["body", "received_time"],
            &[
                ("username", DbValue::Str(user)),
                ("domain", DbValue::Str(domain)),
                ("event", DbValue::Str("presence".into())),
            ],
            Some("received_time"),
        )
    })?;
    let bodies: Vec<String> = rows.iter().map(|r| r[0].as_str()).collect();
    Ok(crate::presence_xml::aggregate(&bodies))
}

/// NOTIFY every active watcher of a presentity.
fn notify_presentity(c: &Config, env: &Env, user: &str, domain: &str) -> Result<(), db::DbError> {
    let uri = format!("sip:{user}@{domain}");
    let rows = db::with(&c.url, |d| {
        d.query(
            &c.watchers_active,
            &WATCHER_COLS,
            &[("presentity_uri", DbValue::Str(uri.clone()))],
            None,
        )
    })?;
    let t = now();
    for r in rows {
        send_notify(c, env, &watcher_of(&r), t, None)?;
    }
    Ok(())
}

/// Build and send the next NOTIFY of a subscription (CSeq bumped in the DB).
fn send_notify(
    c: &Config,
    env: &Env,
    w: &Watcher,
    now: i64,
    state: Option<&str>,
) -> Result<(), db::DbError> {
    let cseq = db::with(&c.url, |d| {
        let rows = d.query(&c.watchers_active, &["local_cseq"], &dialog_key(w), None)?;
        let n = rows.first().map_or(w.local_cseq, |r| r[0].as_int()) + 1;
        d.update(
            &c.watchers_active,
            &dialog_key(w),
            &[("local_cseq", DbValue::Int(n))],
        )?;
        Ok(n)
    })?;
    let sub_state = match state {
        Some(s) => s.to_owned(),
        None if w.status == ACTIVE => format!("active;expires={}", (w.expires - now).max(0)),
        None => format!("pending;expires={}", (w.expires - now).max(0)),
    };
    let body = if w.status == ACTIVE && state.is_none() {
        presence_body(c, &w.presentity_uri)?
    } else {
        None
    };
    let local = parse_socket(&w.socket);
    let first_route = w
        .record_route
        .split(',')
        .next()
        .map(|r| {
            r.trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .filter(|r| !r.is_empty());
    let target = crate::tm::core::Target {
        uri: w.contact.clone(),
        dst_uri: first_route,
        bflags: 0,
    };
    let (dest, dproto) = match crate::tm::core::branch_dest(&target, None) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("presence: NOTIFY to {}: {e}", w.contact);
            return Ok(());
        }
    };
    let via_host = local.map_or_else(|| "127.0.0.1:5060".to_owned(), |a| a.to_string());
    let mut msg = format!(
        "NOTIFY {} SIP/2.0\r\nVia: SIP/2.0/{} {via_host};branch=z9hG4bK-pn{:x}{cseq}\r\n",
        w.contact,
        match dproto {
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
            Proto::Sctp => "SCTP",
            Proto::Udp => "UDP",
        },
        ser_shm::hash(&[w.callid.as_bytes(), w.to_tag.as_bytes()]),
    );
    for r in w
        .record_route
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        msg.push_str(&format!("Route: {r}\r\n"));
    }
    msg.push_str(&format!(
        "Max-Forwards: 70\r\nFrom: <{}>;tag={}\r\nTo: <{}>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} NOTIFY\r\n\
         Contact: <{}>\r\nEvent: presence\r\nSubscription-State: {sub_state}\r\n",
        w.presentity_uri, w.to_tag, w.watcher, w.from_tag, w.callid, w.local_contact
    ));
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        msg.push_str("Content-Type: application/pidf+xml\r\n");
    }
    msg.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let d = Dest {
        proto: dproto,
        addr: dest,
        send_sock: local,
    };
    if let Err(e) = env.transport.send(msg.as_bytes(), &d) {
        log::warn!("presence: sending NOTIFY to {dest}: {e}");
    }
    Ok(())
}

/// The address of a stored `proto:ip:port` socket.
fn parse_socket(s: &str) -> Option<std::net::SocketAddr> {
    s.split_once(':').and_then(|(_, a)| a.parse().ok())
}

/// Remove expired publications (notifying their watchers) and subscriptions
/// (with a final NOTIFY).
fn expire(c: &Config, env: &Env, t: i64) -> Result<(), db::DbError> {
    let cond = format!(" WHERE expires < {t}");
    let expired = db::with(&c.url, |d| {
        let rows = d.query(&c.presentity, &["username", "domain", "expires"], &[], None)?;
        d.execute_raw(&format!("DELETE FROM {}{cond}", c.presentity), &[])?;
        Ok(rows)
    })?;
    let mut touched: Vec<(String, String)> = expired
        .iter()
        .filter(|r| r[2].as_int() < t)
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    touched.sort();
    touched.dedup();
    for (u, d) in touched {
        notify_presentity(c, env, &u, &d)?;
    }
    let rows = db::with(&c.url, |d| {
        d.query(&c.watchers_active, &WATCHER_COLS, &[], None)
    })?;
    for r in rows {
        let w = watcher_of(&r);
        if w.expires < t {
            send_notify(c, env, &w, t, Some("terminated;reason=timeout"))?;
            db::with(&c.url, |d| d.delete(&c.watchers_active, &dialog_key(&w)))?;
        }
    }
    Ok(())
}
