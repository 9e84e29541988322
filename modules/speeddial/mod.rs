//! `speeddial`: Kamailio's per-user short dialing.
//!
//! `sd_lookup(table[, owner])`: the R-URI's user is a short number of the
//! owner (by default the From URI; `owner` is a URI, pvars allowed); when
//! `table` has a row (`user_column` `username`, `domain_column` `domain`
//! with `use_domain` 1, `sd_user_column` `sd_username`) the R-URI becomes its
//! `new_uri_column` (`new_uri`).

use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport, RouteMask,
};
use crate::runtime::flow::Flow;

/// The `speeddial` module.
pub struct Speeddial;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", "mysql://kamailio:kamailiorw@localhost/kamailio"),
    ParamExport::str("user_column", "username"),
    ParamExport::str("domain_column", "domain"),
    ParamExport::str("sd_user_column", "sd_username"),
    ParamExport::str("sd_domain_column", "sd_domain"),
    ParamExport::str("new_uri_column", "new_uri"),
    ParamExport::int("use_domain", 0),
    ParamExport::str("domain_prefix", ""),
];

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "sd_lookup",
    min_args: 1,
    max_args: 2,
    routes: RouteMask::REQUEST,
    fixup: fixup_lookup,
}];

impl Module for Speeddial {
    fn name(&self) -> &'static str {
        "speeddial"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// User and host of a URI.
fn user_host(uri: &str) -> Option<(String, String)> {
    let u = ser_sip::parse_uri(uri.as_bytes()).ok()?;
    let b = uri.as_bytes();
    let user = String::from_utf8_lossy(u.user?.of(b)).into_owned();
    Some((user, String::from_utf8_lossy(u.host.of(b)).into_owned()))
}

fn fixup_lookup(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let table = fx.str_arg(a, 0)?;
    db::ident(&table).map_err(|e| FixupError::arg(0, e.to_string()))?;
    let owner = if a.len() > 1 {
        Some(fx.format_arg(a, 1)?)
    } else {
        None
    };
    let env = fx.module;
    let url = env.str("db_url");
    let cols = [
        env.str("user_column"),
        env.str("domain_column"),
        env.str("sd_user_column"),
        env.str("new_uri_column"),
    ];
    for c in &cols {
        db::ident(c).map_err(|e| FixupError::call(e.to_string()))?;
    }
    let use_domain = env.int("use_domain") != 0;
    Ok(Box::new(move |ctx| {
        let owner_uri = match &owner {
            Some(f) => ctx.render(f),
            None => ctx.from_uri().unwrap_or_default(),
        };
        let (Some((ou, od)), Some((short, _))) = (
            user_host(&owner_uri),
            ctx.ruri().as_deref().and_then(user_host),
        ) else {
            return Flow::False;
        };
        let mut conds = vec![
            (cols[0].as_str(), DbValue::Str(ou)),
            (cols[2].as_str(), DbValue::Str(short)),
        ];
        if use_domain {
            conds.push((cols[1].as_str(), DbValue::Str(od)));
        }
        let rows = db::with(&url, |c| c.query(&table, &[cols[3].as_str()], &conds, None));
        match rows {
            Ok(rows) => match rows.first().map(|r| &r[0]) {
                Some(DbValue::Str(u)) if !u.is_empty() => {
                    ctx.new_uri = Some(u.clone());
                    Flow::True
                }
                _ => Flow::False,
            },
            Err(e) => {
                log::error!("sd_lookup: {e}");
                Flow::False
            }
        }
    }))
}
