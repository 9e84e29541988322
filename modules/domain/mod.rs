//! `domain`: which domains are local (replaces Kamailio `modules/domain` and
//! SER's `modules_s/domain`): `is_from_local`, `is_uri_host_local`,
//! `is_domain_local`, SER `lookup_domain("$fd", "@from.uri.host")` (sets
//! `$fd.did`).  The `domain` table (version 2: domain, did) is cached per
//! process and re-read every `cache_ttl` seconds or on `domain.reload`.
//! `register_myself` 1 makes `myself` (`uri==myself`, loose_route, ...)
//! match the table's domains too, on any port.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ser_fifo::{RpcRegistry, RpcValue};

use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::avp::{parse_prefix, AvpName, AvpRef};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::pvar::{NameAddr, Pv};
use crate::runtime::value::Value;

/// The `domain` module.
pub struct DomainModule;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", "sqlite:///var/lib/ser/ser.db"),
    ParamExport::str("domain_table", "domain"),
    ParamExport::str("domain_col", "domain"),
    ParamExport::str("did_col", "did"),
    ParamExport::int("cache_ttl", 60),
    ParamExport::int("load_domain_attrs", 0),
    // Kamailio: `myself` (uri==myself, loose_route, ...) also matches the
    // domains of the table.
    ParamExport::int("register_myself", 0),
];

/// The table `register_myself` consults.
static MYSELF_SRC: std::sync::OnceLock<Arc<Src>> = std::sync::OnceLock::new();

/// The `myself` check `register_myself` installs.
fn is_myself(host: &str) -> bool {
    MYSELF_SRC
        .get()
        .is_some_and(|s| is_local(s, host) == Flow::True)
}

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "is_from_local",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_from_local,
    },
    FunctionExport {
        name: "is_uri_host_local",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_uri_local,
    },
    FunctionExport {
        name: "is_domain_local",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_domain_local,
    },
    FunctionExport {
        name: "lookup_domain",
        min_args: 1,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_lookup_domain,
    },
];

/// Where the domain list comes from.
#[derive(Debug)]
struct Src {
    url: String,
    table: String,
    domain_col: String,
    did_col: String,
    ttl: u64,
}

/// The per-process cache: domain (lower-case) → did.
struct Cache {
    loaded_at: u64,
    generation: u64,
    map: HashMap<String, String>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
// Bumped by domain.reload; compared per process (the ctl process reloads its own).
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn src(env: &ModuleEnv) -> Result<Arc<Src>, FixupError> {
    let s = Src {
        url: env.str("db_url"),
        table: env.str("domain_table"),
        domain_col: env.str("domain_col"),
        did_col: env.str("did_col"),
        ttl: env.int("cache_ttl").max(1) as u64,
    };
    for c in [&s.table, &s.domain_col, &s.did_col] {
        db::ident(c).map_err(|e| FixupError::call(e.to_string()))?;
    }
    Ok(Arc::new(s))
}

/// A SER select argument (`"@from.uri.host"`) or a format string.
pub fn select_or_format(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Format, FixupError> {
    if let Arg::Str(s) = &args[i] {
        let t = s.trim();
        if t.starts_with('@') && crate::runtime::select::Select::prefix_len(t) == t.len() {
            let sel =
                crate::runtime::select::Select::parse(t).map_err(|e| FixupError::arg(i, e))?;
            return Ok(Format {
                pieces: vec![crate::runtime::format::Piece::Pv(Pv::Sel(sel))],
            });
        }
    }
    fx.format_arg(args, i)
}

fn load(s: &Src) -> Result<HashMap<String, String>, db::DbError> {
    let rows = db::with(&s.url, |c| {
        c.query(&s.table, &[&s.domain_col, &s.did_col], &[], None)
    })?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let d = r
                .first()
                .map(DbValue::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let did = match r.get(1) {
                Some(DbValue::Null) | None => d.clone(),
                Some(v) => v.as_str(),
            };
            (d, did)
        })
        .collect())
}

/// The did of a domain, `None` if not local; `Err` if the DB failed.
fn did_of(s: &Src, host: &str) -> Result<Option<String>, db::DbError> {
    let now = crate::usrloc::now();
    let gen = GENERATION.load(Ordering::Relaxed);
    let mut g = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = g
        .as_ref()
        .is_some_and(|c| c.generation == gen && now < c.loaded_at + s.ttl);
    if !fresh {
        let map = load(s)?;
        *g = Some(Cache {
            loaded_at: now,
            generation: gen,
            map,
        });
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Ok(g.as_ref().and_then(|c| c.map.get(&host).cloned()))
}

fn host_of(uri: Option<String>) -> String {
    uri.and_then(|u| {
        ser_sip::parse_uri(u.as_bytes())
            .ok()
            .map(|p| String::from_utf8_lossy(p.host.of(u.as_bytes())).into_owned())
    })
    .unwrap_or_default()
}

fn is_local(s: &Src, host: &str) -> Flow {
    if host.is_empty() {
        return Flow::False;
    }
    match did_of(s, host) {
        Ok(d) => Flow::from_bool(d.is_some()),
        Err(e) => {
            log::error!("domain: {e}");
            Flow::Code(-2)
        }
    }
}

fn fixup_from_local(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let s = src(fx.module)?;
    Ok(Box::new(move |ctx| is_local(&s, &host_of(ctx.from_uri()))))
}

fn fixup_uri_local(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let s = src(fx.module)?;
    Ok(Box::new(move |ctx| is_local(&s, &host_of(ctx.ruri()))))
}

fn fixup_domain_local(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let s = src(fx.module)?;
    let f = select_or_format(fx, args, 0)?;
    Ok(Box::new(move |ctx| is_local(&s, &ctx.render(&f))))
}

/// SER `lookup_domain("$fd", "@from.uri.host")`: the first argument names
/// the AVP track/class (`$fd` → `$fd.did`), the second the domain.
/// Kamailio `lookup_domain("$fd")` form: the domain is the pvar's value.
fn fixup_lookup_domain(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let s = src(fx.module)?;
    // "$fd" as a string (SER) or a bare $fd / $td.
    let prefix = match &args[0] {
        Arg::Pv(Pv::HdrUri(NameAddr::From, _)) => "$fd".to_owned(),
        Arg::Pv(Pv::HdrUri(NameAddr::To, _)) => "$td".to_owned(),
        _ => fx.str_arg(args, 0)?,
    };
    let p = prefix.trim().trim_start_matches('$');
    let (track, class) = parse_prefix(p).ok_or_else(|| {
        FixupError::arg(
            0,
            format!("`{prefix}` is not an AVP track/class like $fd or $td"),
        )
    })?;
    let did_avp = AvpRef {
        track,
        class,
        name: AvpName::Str("did".into()),
    };
    let host: Format = if args.len() > 1 {
        select_or_format(fx, args, 1)?
    } else {
        // One argument: the domain of From ($fd) or To/R-URI ($td).
        Format::parse(if p.starts_with('f') { "$fd" } else { "$rd" })
            .map_err(|e| FixupError::arg(0, e))?
    };
    Ok(Box::new(move |ctx: &mut MsgCtx<'_>| {
        let h = ctx.render(&host);
        if h.is_empty() {
            return Flow::False;
        }
        match did_of(&s, &h) {
            Ok(Some(did)) => {
                ctx.avps.assign(&did_avp, Value::Str(did));
                Flow::True
            }
            Ok(None) => Flow::False,
            Err(e) => {
                log::error!("domain: {e}");
                Flow::Code(-2)
            }
        }
    }))
}

impl Module for DomainModule {
    fn name(&self) -> &'static str {
        "domain"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        if env.int("register_myself") != 0 {
            let s = src(env).map_err(|e| format!("domain: {}", e.message))?;
            let _ = MYSELF_SRC.set(s);
            crate::runtime::transport::register_myself_check(is_myself);
        }
        Ok(())
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let s = match src(env) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("domain: rpc: {}", e.message);
                return;
            }
        };
        let r1 = reg.register("domain.reload", &["Re-read the domain table."], |_ctx| {
            GENERATION.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let r2 = reg.register(
            "domain.dump",
            &["The local domains and their dids."],
            move |ctx| {
                let map = load(&s).map_err(|e| ser_fifo::RpcFault::new(500, e.to_string()))?;
                let mut v: Vec<_> = map.into_iter().collect();
                v.sort();
                for (d, did) in v {
                    ctx.add(RpcValue::structure([
                        ("domain", RpcValue::Str(d)),
                        ("did", RpcValue::Str(did)),
                    ]));
                }
                Ok(())
            },
        );
        for e in [r1, r2].into_iter().filter_map(Result::err) {
            log::warn!("domain: rpc: {e}");
        }
    }
}
