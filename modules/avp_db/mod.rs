//! `avp_db`: load SER 3.0 user and URI attributes from the database
//! (replaces SER `modules_s/avp_db`): `load_attrs("$fu", "$f.uid")` reads
//! `uid_user_attrs` rows of that uid into the From-track user class;
//! `load_attrs("$tr", "@ruri")` reads `uid_uri_attrs` rows of the URI's
//! username (and the track's `did`, `_default` when unset) into the URI class.
//! Rows whose `flags` lack bit 0 (load into SER) are skipped; `type` 2 is a
//! string, anything else an int.

use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::avp::{parse_prefix, AvpName, AvpRef, Class, Track};
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::pvar::{NameAddr, Pv, UriPart};
use crate::runtime::value::Value;

/// The `avp_db` module.
pub struct AvpDb;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", "sqlite:///var/lib/ser/ser.db"),
    ParamExport::str("user_attrs_table", "uid_user_attrs"),
    ParamExport::str("uri_attrs_table", "uid_uri_attrs"),
    ParamExport::int("auto_unlock_extra_attrs", 0),
];

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "load_attrs",
    min_args: 2,
    max_args: 2,
    routes: RouteMask::ANY,
    fixup: fixup_load_attrs,
}];

impl Module for AvpDb {
    fn name(&self) -> &'static str {
        "avp_db"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn child_init(&self, env: &ModuleEnv, rank: i32) -> Result<(), String> {
        if rank > 0 {
            if let Err(e) = db::with(&env.str("db_url"), |_| Ok(())) {
                log::warn!("avp_db: {e}");
            }
        }
        Ok(())
    }
}

/// Attribute rows `(name, value, type, flags)` as `(name, value)` to load:
/// only rows with flag bit 0; `type` 2 is a string.
pub fn attrs_of(rows: Vec<Vec<DbValue>>) -> Vec<(String, Value)> {
    rows.into_iter()
        .filter(|r| r.len() >= 4 && r[3].as_int() & 1 != 0)
        .map(|r| {
            let v = if r[2].as_int() == 2 {
                Value::Str(r[1].as_str())
            } else {
                Value::Int(r[1].as_int())
            };
            (r[0].as_str(), v)
        })
        .collect()
}

/// A track/class argument: `"$fu"`, `"$tr"`, or the bare pvar `$fu`/`$tu`.
fn track_class(fx: &FixupCtx<'_>, a: &[Arg], i: usize) -> Result<(Track, Class), FixupError> {
    let text = match &a[i] {
        Arg::Pv(Pv::HdrUri(NameAddr::From, UriPart::Whole)) => "fu".to_owned(),
        Arg::Pv(Pv::HdrUri(NameAddr::To, UriPart::Whole)) => "tu".to_owned(),
        _ => fx.str_arg(a, i)?.trim().trim_start_matches('$').to_owned(),
    };
    match parse_prefix(&text) {
        Some((Some(t), Some(c @ (Class::User | Class::Uri)))) => Ok((t, c)),
        _ => Err(FixupError::arg(
            i,
            format!("`${text}`: expected $fu, $tu, $fr or $tr"),
        )),
    }
}

fn fixup_load_attrs(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (track, class) = track_class(fx, a, 0)?;
    let id: Format = match &a[1] {
        Arg::Str(s) if s.starts_with('@') => {
            Format::parse(&format!("%{s}")).map_err(|e| FixupError::arg(1, e))?
        }
        Arg::Str(s) if s.starts_with('$') && !s.contains(['(', ' ']) => {
            // "$f.uid": an AVP name written as a string.
            Format::parse(&format!("%{s}")).map_err(|e| FixupError::arg(1, e))?
        }
        _ => fx.format_arg(a, 1)?,
    };
    let url = fx.module.str("db_url");
    let table = fx.module.str(if class == Class::User {
        "user_attrs_table"
    } else {
        "uri_attrs_table"
    });
    db::ident(&table).map_err(|e| FixupError::call(e.to_string()))?;
    let did = AvpRef {
        track: Some(track),
        class: None,
        name: AvpName::Str("did".into()),
    };
    Ok(Box::new(move |ctx| {
        let key = ctx.render(&id);
        if key.is_empty() {
            return Flow::False;
        }
        let cols = ["name", "value", "type", "flags"];
        let res = if class == Class::User {
            db::with(&url, |c| {
                c.query(&table, &cols, &[("uid", DbValue::Str(key.clone()))], None)
            })
        } else {
            let user = match crate::runtime::access::uri_part(&key, UriPart::User) {
                Value::Null => key.clone(),
                v => v.as_str().into_owned(),
            };
            let d = ctx
                .avps
                .get(&did)
                .map(|v| v.as_str().into_owned())
                .unwrap_or_else(|| "_default".into());
            db::with(&url, |c| {
                c.query(
                    &table,
                    &cols,
                    &[("username", DbValue::Str(user)), ("did", DbValue::Str(d))],
                    None,
                )
            })
        };
        match res {
            Ok(rows) => {
                for (name, v) in attrs_of(rows) {
                    let r = AvpRef {
                        track: Some(track),
                        class: Some(class),
                        name: AvpName::Str(name),
                    };
                    ctx.avps.add(&r, v);
                }
                Flow::True
            }
            Err(e) => {
                log::error!("load_attrs: {e}");
                Flow::Code(-1)
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_to_attrs() {
        let rows = vec![
            vec![
                DbValue::Str("fr_inv_timer".into()),
                DbValue::Str("20000".into()),
                DbValue::Int(0),
                DbValue::Int(1),
            ],
            vec![
                DbValue::Str("asserted_id".into()),
                DbValue::Str("123".into()),
                DbValue::Int(2),
                DbValue::Int(1),
            ],
            vec![
                DbValue::Str("hidden".into()),
                DbValue::Str("x".into()),
                DbValue::Int(2),
                DbValue::Int(0),
            ],
        ];
        assert_eq!(
            attrs_of(rows),
            vec![
                ("fr_inv_timer".to_owned(), Value::Int(20000)),
                ("asserted_id".to_owned(), Value::Str("123".into()))
            ]
        );
    }
}
