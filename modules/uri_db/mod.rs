//! `uri_db`: checks that the authenticated user may use a URI (replaces
//! Kamailio `modules/uri_db`): `check_to`, `check_from`, `does_uri_exist`,
//! and SER 3.0 `lookup_user("$tu.uid", "@to.uri")` (the `uid` of a URI from
//! SER's `uri` table: uid, did, username).  With `use_uri_table` 0 the
//! digest username must equal the URI's user; with 1 the `uri` table
//! (version 1: username, domain, uri_user) must map one to the other.

use std::sync::Arc;

use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport, RouteMask,
};
use crate::runtime::avp::{parse_prefix, AvpName, AvpRef};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::pvar::Pv;
use crate::runtime::value::Value;

/// The `uri_db` module.
pub struct UriDb;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", "sqlite:///var/lib/ser/ser.db"),
    ParamExport::str("uri_table", "uri"),
    ParamExport::str("subscriber_table", "subscriber"),
    ParamExport::int("use_uri_table", 0),
    ParamExport::int("use_domain", 0),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "check_to",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_check_to,
    },
    FunctionExport {
        name: "check_from",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_check_from,
    },
    FunctionExport {
        name: "does_uri_exist",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_exists,
    },
    FunctionExport {
        name: "lookup_user",
        min_args: 1,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_lookup_user,
    },
];

impl Module for UriDb {
    fn name(&self) -> &'static str {
        "uri_db"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

#[derive(Debug)]
struct Cfg {
    url: String,
    uri_table: String,
    subscriber_table: String,
    use_uri_table: bool,
    use_domain: bool,
}

fn cfg(fx: &FixupCtx<'_>) -> Result<Arc<Cfg>, FixupError> {
    let env = fx.module;
    let c = Cfg {
        url: env.str("db_url"),
        uri_table: env.str("uri_table"),
        subscriber_table: env.str("subscriber_table"),
        use_uri_table: env.int("use_uri_table") != 0,
        use_domain: env.int("use_domain") != 0,
    };
    for t in [&c.uri_table, &c.subscriber_table] {
        db::ident(t).map_err(|e| FixupError::call(e.to_string()))?;
    }
    Ok(Arc::new(c))
}

fn user_host(uri: Option<String>) -> Option<(String, String)> {
    let u = uri?;
    let p = ser_sip::parse_uri(u.as_bytes()).ok()?;
    let b = u.as_bytes();
    Some((
        p.user
            .map(|s| String::from_utf8_lossy(s.of(b)).into_owned())
            .unwrap_or_default(),
        String::from_utf8_lossy(p.host.of(b)).into_owned(),
    ))
}

fn check(ctx: &mut MsgCtx<'_>, c: &Cfg, uri: Option<String>) -> Flow {
    let au = ctx.get_pv(&Pv::AuthUser);
    let realm = ctx.get_pv(&Pv::AuthRealm).as_str().into_owned();
    if au.is_empty() {
        log::info!("uri_db: no credentials to check against");
        return Flow::False;
    }
    let au = au.as_str().into_owned();
    let Some((user, host)) = user_host(uri) else {
        return Flow::False;
    };
    if !c.use_uri_table {
        let same = au == user && (!c.use_domain || realm.eq_ignore_ascii_case(&host));
        return Flow::from_bool(same);
    }
    let mut conds = vec![
        ("username", DbValue::Str(au)),
        ("uri_user", DbValue::Str(user)),
    ];
    if c.use_domain {
        conds.push(("domain", DbValue::Str(host)));
    }
    match db::with(&c.url, |conn| {
        conn.query(&c.uri_table, &["username"], &conds, None)
    }) {
        Ok(rows) => Flow::from_bool(!rows.is_empty()),
        Err(e) => {
            log::error!("uri_db: {e}");
            Flow::Code(-2)
        }
    }
}

fn fixup_check_to(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let c = cfg(fx)?;
    Ok(Box::new(move |ctx| {
        let to = ctx.to_uri();
        check(ctx, &c, to)
    }))
}

fn fixup_check_from(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let c = cfg(fx)?;
    Ok(Box::new(move |ctx| {
        let from = ctx.from_uri();
        check(ctx, &c, from)
    }))
}

/// `does_uri_exist()`: the R-URI user is a subscriber (or in the uri table).
fn fixup_exists(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let c = cfg(fx)?;
    Ok(Box::new(move |ctx| {
        let Some((user, host)) = user_host(ctx.ruri()) else {
            return Flow::False;
        };
        let (table, ucol) = if c.use_uri_table {
            (&c.uri_table, "uri_user")
        } else {
            (&c.subscriber_table, "username")
        };
        let mut conds = vec![(ucol, DbValue::Str(user))];
        if c.use_domain {
            conds.push(("domain", DbValue::Str(host)));
        }
        match db::with(&c.url, |conn| conn.query(table, &[ucol], &conds, None)) {
            Ok(rows) => Flow::from_bool(!rows.is_empty()),
            Err(e) => {
                log::error!("uri_db: {e}");
                Flow::Code(-2)
            }
        }
    }))
}

/// SER `lookup_user("$tu.uid"[, "@to.uri"])`: the uid of the URI's user in
/// SER's `uri` table stored in the named AVP.
fn fixup_lookup_user(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let c = cfg(fx)?;
    let spec = fx.str_arg(args, 0)?;
    let inner = spec.trim().trim_start_matches('$');
    let avp = match inner.split_once('.') {
        Some((p, name)) => {
            let (track, class) =
                parse_prefix(p).ok_or_else(|| FixupError::arg(0, format!("bad AVP `{spec}`")))?;
            AvpRef {
                track,
                class,
                name: AvpName::Str(name.to_owned()),
            }
        }
        None => AvpRef::named(inner),
    };
    let uri: Format = if args.len() > 1 {
        crate::domain::select_or_format(fx, args, 1)?
    } else {
        Format::parse("$ru").map_err(|e| FixupError::arg(0, e))?
    };
    Ok(Box::new(move |ctx| {
        let Some((user, host)) = user_host(Some(ctx.render(&uri))) else {
            return Flow::False;
        };
        let mut conds = vec![("username", DbValue::Str(user))];
        if c.use_domain {
            conds.push(("did", DbValue::Str(host)));
        }
        match db::with(&c.url, |conn| {
            conn.query(&c.uri_table, &["uid"], &conds, None)
        }) {
            Ok(rows) => match rows.first().and_then(|r| r.first()) {
                Some(v) if !v.is_null() => {
                    ctx.avps.assign(&avp, Value::Str(v.as_str()));
                    Flow::True
                }
                _ => Flow::False,
            },
            Err(e) => {
                log::error!("uri_db: lookup_user: {e}");
                Flow::Code(-2)
            }
        }
    }))
}
