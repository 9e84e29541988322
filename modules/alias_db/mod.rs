//! `alias_db`: Kamailio's database aliases.
//!
//! `alias_db_lookup(table[, flags])`: when the R-URI's user (and, with
//! `use_domain` 1, its host) is an alias in `table`, the R-URI becomes the
//! canonical `sip:username@domain` (its port and parameters are dropped).
//! Columns: `alias_user_column` (`alias_username`), `alias_domain_column`
//! (`alias_domain`), `user_column` (`username`), `domain_column`
//! (`domain`).  Flags: `d` = match the domain too (as `use_domain` 1), `r`
//! (reverse lookup) is not supported.

use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport, RouteMask,
};
use crate::runtime::flow::Flow;

/// The `alias_db` module.
pub struct AliasDb;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", "mysql://kamailio:kamailiorw@localhost/kamailio"),
    ParamExport::str("user_column", "username"),
    ParamExport::str("domain_column", "domain"),
    ParamExport::str("alias_user_column", "alias_username"),
    ParamExport::str("alias_domain_column", "alias_domain"),
    ParamExport::str("domain_prefix", ""),
    ParamExport::int("use_domain", 0),
    ParamExport::int("append_branches", 0),
];

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "alias_db_lookup",
    min_args: 1,
    max_args: 2,
    routes: RouteMask::REQUEST.or(RouteMask::FAILURE),
    fixup: fixup_lookup,
}];

impl Module for AliasDb {
    fn name(&self) -> &'static str {
        "alias_db"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

fn fixup_lookup(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let table = fx.str_arg(a, 0)?;
    db::ident(&table).map_err(|e| FixupError::arg(0, e.to_string()))?;
    let flags = if a.len() > 1 {
        fx.str_arg(a, 1)?
    } else {
        String::new()
    };
    if let Some(c) = flags.chars().find(|c| *c != 'd') {
        return Err(FixupError::arg(
            1,
            format!("unsupported flag `{c}` (only `d`)"),
        ));
    }
    let env = fx.module;
    let url = env.str("db_url");
    let cols = [
        env.str("user_column"),
        env.str("domain_column"),
        env.str("alias_user_column"),
        env.str("alias_domain_column"),
    ];
    for c in &cols {
        db::ident(c).map_err(|e| FixupError::call(e.to_string()))?;
    }
    let use_domain = env.int("use_domain") != 0 || flags.contains('d');
    Ok(Box::new(move |ctx| {
        let Some(ruri) = ctx.ruri() else {
            return Flow::False;
        };
        let Ok(u) = ser_sip::parse_uri(ruri.as_bytes()) else {
            return Flow::False;
        };
        let b = ruri.as_bytes();
        let user = String::from_utf8_lossy(u.user.map_or(&b[0..0], |s| s.of(b))).into_owned();
        let host = String::from_utf8_lossy(u.host.of(b)).into_owned();
        if user.is_empty() {
            return Flow::False;
        }
        let mut conds = vec![(cols[2].as_str(), DbValue::Str(user))];
        if use_domain {
            conds.push((cols[3].as_str(), DbValue::Str(host)));
        }
        let rows = db::with(&url, |c| {
            c.query(&table, &[cols[0].as_str(), cols[1].as_str()], &conds, None)
        });
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                log::error!("alias_db_lookup: {e}");
                return Flow::False;
            }
        };
        let Some(row) = rows.first() else {
            return Flow::False;
        };
        let text = |v: &DbValue| match v {
            DbValue::Str(s) => s.clone(),
            DbValue::Int(i) => i.to_string(),
            _ => String::new(),
        };
        let (nu, nd) = (text(&row[0]), text(&row[1]));
        if nu.is_empty() || nd.is_empty() {
            return Flow::False;
        }
        ctx.new_uri = Some(format!("sip:{nu}@{nd}"));
        Flow::True
    }))
}
