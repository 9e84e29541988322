//! usrloc's database side (replaces `ucontact.c`/`udomain.c` DB parts):
//! Kamailio's `location` table (version 9).  An AOR is written as a whole:
//! its rows are deleted and its current contacts inserted, so write-through,
//! write-back and expiry all use one statement pair.

use crate::db::{self, Cond, DbValue};
use crate::usrloc::store::{Ucontact, ALL_METHODS};
use crate::usrloc::{Domain, UlError};

/// Schema version of the `location` table we create.
pub const LOCATION_VERSION: i64 = 9;
/// Oldest version with every column we use (ruid, instance, reg_id).
pub const LOCATION_MIN_VERSION: i64 = 6;

const COLS: &[&str] = &[
    "username",
    "domain",
    "contact",
    "received",
    "path",
    "expires",
    "q",
    "callid",
    "cseq",
    "last_modified",
    "flags",
    "cflags",
    "user_agent",
    "socket",
    "methods",
    "ruid",
    "instance",
    "reg_id",
];

// Kamailio writes this date for permanent contacts ("never expires").
const PERMANENT: i64 = 0;

fn opt(s: &str) -> DbValue {
    if s.is_empty() {
        DbValue::Null
    } else {
        DbValue::Str(s.to_owned())
    }
}

fn split_aor<'a>(d: &Domain, aor: &'a str) -> (&'a str, Option<&'a str>) {
    if d.cfg.use_domain {
        match aor.split_once('@') {
            Some((u, h)) => (u, Some(h)),
            None => (aor, None),
        }
    } else {
        (aor, None)
    }
}

fn keys(d: &Domain, aor: &str) -> Vec<Cond<'static>> {
    let (user, dom) = split_aor(d, aor);
    let mut k: Vec<Cond<'static>> = vec![("username", DbValue::Str(user.to_owned()))];
    if let Some(h) = dom {
        k.push(("domain", DbValue::Str(h.to_owned())));
    }
    k
}

fn row_values(d: &Domain, aor: &str, c: &Ucontact) -> Vec<Cond<'static>> {
    let (user, dom) = split_aor(d, aor);
    vec![
        ("username", DbValue::Str(user.to_owned())),
        (
            "domain",
            dom.map_or(DbValue::Null, |h| DbValue::Str(h.to_owned())),
        ),
        ("contact", DbValue::Str(c.uri.clone())),
        ("received", opt(&c.received)),
        ("path", opt(&c.path)),
        (
            "expires",
            DbValue::DateTime(if c.expires == 0 {
                PERMANENT
            } else {
                c.expires as i64
            }),
        ),
        (
            "q",
            DbValue::Double(if c.q < 0 {
                -1.0
            } else {
                f64::from(c.q) / 1000.0
            }),
        ),
        ("callid", DbValue::Str(c.callid.clone())),
        ("cseq", DbValue::Int(i64::from(c.cseq))),
        ("last_modified", DbValue::DateTime(c.last_modified as i64)),
        ("flags", DbValue::Int(i64::from(c.flags))),
        ("cflags", DbValue::Int(i64::from(c.cflags))),
        ("user_agent", DbValue::Str(c.user_agent.clone())),
        ("socket", opt(&c.socket)),
        (
            "methods",
            if c.methods == ALL_METHODS {
                DbValue::Null
            } else {
                DbValue::Int(i64::from(c.methods))
            },
        ),
        (
            "ruid",
            DbValue::Str(if c.ruid.is_empty() {
                super::new_ruid()
            } else {
                c.ruid.clone()
            }),
        ),
        ("instance", opt(&c.instance)),
        ("reg_id", DbValue::Int(i64::from(c.reg_id))),
    ]
}

fn from_row(r: &[DbValue]) -> (String, Option<String>, Ucontact) {
    let s = |i: usize| r.get(i).map(DbValue::as_str).unwrap_or_default();
    let n = |i: usize| r.get(i).map_or(0, DbValue::as_int);
    let expires = r.get(5).map_or(0, DbValue::as_datetime);
    let q = r.get(6).map_or(-1.0, DbValue::as_f64);
    let methods = match r.get(14) {
        Some(DbValue::Null) | None => ALL_METHODS,
        Some(v) => v.as_int() as u32,
    };
    let dom = match r.get(1) {
        Some(DbValue::Null) | None => None,
        Some(v) => Some(v.as_str()).filter(|h| !h.is_empty()),
    };
    let c = Ucontact {
        uri: s(2),
        received: s(3),
        path: s(4),
        expires: expires.max(0) as u64,
        q: if q < 0.0 {
            -1
        } else {
            (q * 1000.0).round() as i32
        },
        callid: s(7),
        cseq: n(8) as u32,
        last_modified: r.get(9).map_or(0, DbValue::as_datetime).max(0) as u64,
        flags: n(10) as u32,
        cflags: n(11) as u32,
        user_agent: s(12),
        socket: s(13),
        methods,
        ruid: s(15),
        instance: s(16),
        reg_id: n(17) as u32,
    };
    (s(0), dom, c)
}

fn aor_of(d: &Domain, user: &str, dom: Option<&str>) -> String {
    match dom {
        Some(h) if d.cfg.use_domain => format!("{user}@{h}"),
        _ => user.to_owned(),
    }
}

/// Load every unexpired contact of the table into memory (start-up, modes 1–2).
pub fn load(d: &Domain) -> Result<usize, UlError> {
    let now = super::now();
    let rows = db::with(&d.cfg.db_url, |c| {
        c.check_version_in(&d.name, LOCATION_MIN_VERSION..=LOCATION_VERSION)
            .or_else(|e| {
                // A table named by save("x") may lack a version row; `location` may not.
                if d.name == "location" {
                    Err(e)
                } else {
                    log::warn!("usrloc: {e}");
                    Ok(())
                }
            })?;
        c.query(&d.name, COLS, &[], None)
    })?;
    let mut n = 0;
    for r in rows {
        let (user, dom, c) = from_row(&r);
        if c.expired(now) || c.uri.is_empty() {
            continue;
        }
        d.mem_insert_loaded(&aor_of(d, &user, dom.as_deref()), c)?;
        n += 1;
    }
    Ok(n)
}

/// The AOR's contacts from the DB (DB-only mode).
pub fn read_aor(d: &Domain, aor: &str) -> Result<Vec<Ucontact>, UlError> {
    let k = keys(d, aor);
    let rows = db::with(&d.cfg.db_url, |c| c.query(&d.name, COLS, &k, None))?;
    Ok(rows.iter().map(|r| from_row(r).2).collect())
}

/// Every AOR in the DB (DB-only `ul.dump`).
pub fn read_all(d: &Domain) -> Result<Vec<(String, Vec<Ucontact>)>, UlError> {
    let now = super::now();
    let rows = db::with(&d.cfg.db_url, |c| c.query(&d.name, COLS, &[], None))?;
    let mut map: std::collections::BTreeMap<String, Vec<Ucontact>> = Default::default();
    for r in rows {
        let (user, dom, c) = from_row(&r);
        if !c.expired(now) {
            map.entry(aor_of(d, &user, dom.as_deref()))
                .or_default()
                .push(c);
        }
    }
    Ok(map.into_iter().collect())
}

/// Replace the AOR's rows by `list`.
pub fn write_aor(d: &Domain, aor: &str, list: &[Ucontact]) -> Result<(), UlError> {
    if !d.uses_db() {
        return Ok(());
    }
    let k = keys(d, aor);
    db::with(&d.cfg.db_url, |c| {
        c.transaction(|c| {
            c.delete(&d.name, &k)?;
            for u in list {
                c.insert(&d.name, &row_values(d, aor, u))?;
            }
            Ok(())
        })
    })?;
    Ok(())
}

/// Delete expired rows (DB-only mode timer); permanent ones stay.
pub fn delete_expired(d: &Domain, now: u64) -> Result<(), UlError> {
    db::with(&d.cfg.db_url, |c| {
        let t = db::ident(&d.name)?;
        let dl = c.dialect();
        let sql = format!(
            "DELETE FROM {t} WHERE expires<={} AND expires<>{}",
            dl.ph(1),
            dl.ph(2)
        );
        c.execute_raw(
            &sql,
            &[DbValue::DateTime(now as i64), DbValue::DateTime(PERMANENT)],
        )
    })?;
    Ok(())
}
