//! `auth_db`: digest authentication against a subscriber table (replaces
//! SER/Kamailio `modules/auth_db`): `www_authorize`, `proxy_authorize`,
//! `auth_check`, and the SER 3.0 `www_authenticate` / `proxy_authenticate`
//! (SER return codes and `$digest_challenge`).  Kamailio's `subscriber`
//! table (version 7: username, domain, password, ha1, ha1b) or SER's
//! `credentials` table (auth_username, realm, password, ha1, ha1b, uid).

use std::sync::Arc;

use crate::auth::{self, AuthResult, Credentials, Kind, Secret};
use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::avp::AvpRef;
use crate::runtime::ctx::{MsgCtx, ProcessingError};
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::runtime::pvar::Pv;
use crate::runtime::value::Value;

/// The `auth_db` module.
pub struct AuthDb;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", "sqlite:///var/lib/ser/ser.db"),
    ParamExport::int("calculate_ha1", 0),
    ParamExport::str("password_column", "ha1"),
    ParamExport::str("password_column_2", "ha1b"),
    ParamExport::str("plain_password_column", "password"),
    ParamExport::str("user_column", "username"),
    ParamExport::str("domain_column", "domain"),
    ParamExport::int("use_domain", 0),
    ParamExport::str("load_credentials", ""),
    ParamExport::int("version_table", 1),
];

const R: RouteMask = RouteMask::REQUEST.or(RouteMask::FAILURE);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "www_authorize",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_www,
    },
    FunctionExport {
        name: "proxy_authorize",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_proxy,
    },
    FunctionExport {
        name: "auth_check",
        min_args: 2,
        max_args: 3,
        routes: R,
        fixup: fixup_check,
    },
    FunctionExport {
        name: "www_authenticate",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_ser_www,
    },
    FunctionExport {
        name: "proxy_authenticate",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_ser_proxy,
    },
];

impl Module for AuthDb {
    fn name(&self) -> &'static str {
        "auth_db"
    }
    fn child_init(&self, env: &ModuleEnv, rank: i32) -> Result<(), String> {
        // SIP workers connect now (after fork); a database that is down is
        // retried on each use rather than stopping the server.
        if rank > 0 {
            if let Err(e) = db::with(&env.str("db_url"), |_| Ok(())) {
                log::warn!("auth_db: {e}");
            }
        }
        Ok(())
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// Where and how credentials are read.
#[derive(Debug, Clone)]
pub struct DbCfg {
    url: String,
    table: String,
    user_col: String,
    domain_col: String,
    /// Column holding the plain password (`calculate_ha1`) or the HA1.
    secret_col: String,
    /// HA1 of `user@domain` (usernames containing `@`).
    secret_col_2: String,
    calculate_ha1: bool,
    use_domain: bool,
    /// `$avp = column` pairs loaded on success.
    load: Vec<(AvpRef, String)>,
    check_version: bool,
}

/// `load_credentials`: `col1;$avp(s:x)=col2;...`.
pub fn parse_load(s: &str) -> Result<Vec<(AvpRef, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (avp, col) = match item.split_once('=') {
            Some((a, c)) => {
                let pv = crate::runtime::pvar::parse_pv(a.trim())?;
                let Pv::Avp(r) = pv else {
                    return Err(format!("`{a}` is not an AVP"));
                };
                (r, c.trim().to_owned())
            }
            None => (AvpRef::named(item), item.to_owned()),
        };
        db::ident(&col).map_err(|e| e.to_string())?;
        out.push((avp, col));
    }
    Ok(out)
}

fn db_cfg(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Arc<DbCfg>, FixupError> {
    let env = fx.module;
    let table = fx.str_arg(args, 1)?;
    db::ident(&table).map_err(|e| FixupError::arg(1, e.to_string()))?;
    let ser_table = table == "credentials";
    let calculate_ha1 = env.int("calculate_ha1") != 0;
    let secret_col = if calculate_ha1 {
        // Kamailio names the plain column with password_column; SER with
        // plain_password_column.  Kamailio's default "ha1" means "not set".
        match env.str("password_column") {
            c if c != "ha1" => c,
            _ => env.str("plain_password_column"),
        }
    } else {
        env.str("password_column")
    };
    let mut load = parse_load(&env.str("load_credentials")).map_err(FixupError::call)?;
    if ser_table {
        load.push((AvpRef::named("uid"), "uid".to_owned()));
    }
    let cfg = DbCfg {
        url: env.str("db_url"),
        user_col: if ser_table {
            "auth_username".into()
        } else {
            env.str("user_column")
        },
        domain_col: if ser_table {
            "realm".into()
        } else {
            env.str("domain_column")
        },
        secret_col,
        secret_col_2: env.str("password_column_2"),
        calculate_ha1,
        use_domain: env.int("use_domain") != 0 || ser_table,
        load,
        check_version: env.int("version_table") != 0 && !ser_table,
        table,
    };
    for c in [
        &cfg.user_col,
        &cfg.domain_col,
        &cfg.secret_col,
        &cfg.secret_col_2,
    ] {
        db::ident(c).map_err(|e| FixupError::call(e.to_string()))?;
    }
    Ok(Arc::new(cfg))
}

/// Subscriber table version we understand.
pub const SUBSCRIBER_VERSION: i64 = 7;

/// The user's secret and the extra columns to load; `None` if no such user.
fn fetch(
    cfg: &DbCfg,
    user: &str,
    realm: &str,
) -> Result<Option<(Secret, Vec<DbValue>)>, db::DbError> {
    let second = cfg.secret_col_2.as_str();
    let use_second = !cfg.calculate_ha1 && user.contains('@');
    let col = if use_second {
        second
    } else {
        cfg.secret_col.as_str()
    };
    let mut cols: Vec<&str> = vec![col];
    cols.extend(cfg.load.iter().map(|(_, c)| c.as_str()));
    let mut conds = vec![(cfg.user_col.as_str(), DbValue::Str(user.to_owned()))];
    if cfg.use_domain {
        conds.push((cfg.domain_col.as_str(), DbValue::Str(realm.to_owned())));
    }
    let rows = db::with(&cfg.url, |c| {
        if cfg.check_version {
            c.check_version(&cfg.table, SUBSCRIBER_VERSION)?;
        }
        c.query(&cfg.table, &cols, &conds, None)
    })?;
    let Some(mut row) = rows.into_iter().next() else {
        return Ok(None);
    };
    let s = row.remove(0).as_str();
    let secret = if cfg.calculate_ha1 {
        Secret::Password(s)
    } else {
        Secret::Ha1(s)
    };
    Ok(Some((secret, row)))
}

/// Authorize the request against the table (Kamailio semantics).
pub fn authorize(ctx: &mut MsgCtx<'_>, realm: &Format, kind: Kind, cfg: &DbCfg) -> AuthResult {
    let realm = auth::realm_of(ctx, realm, kind);
    let cred: Credentials = match auth::find_credentials(ctx, kind, &realm) {
        None => return AuthResult::NoCredentials,
        Some(Err(e)) => {
            log::info!("auth_db: {e}");
            ctx.last_error = Some(ProcessingError {
                code: 400,
                reason: "Bad Credentials".into(),
            });
            return AuthResult::Error;
        }
        Some(Ok(c)) => c,
    };
    if let Err(r) = auth::check_nonce(ctx, &cred) {
        return r;
    }
    let (secret, extra) = match fetch(cfg, &cred.username, &realm) {
        Ok(Some(x)) => x,
        Ok(None) => {
            log::info!(
                "auth_db: user `{}` not found in `{}`",
                cred.username,
                cfg.table
            );
            return AuthResult::UnknownUser;
        }
        Err(e) => {
            log::error!("auth_db: {e}");
            ctx.last_error = Some(ProcessingError {
                code: 500,
                reason: "Server Internal Error".into(),
            });
            return AuthResult::Error;
        }
    };
    let r = auth::verify(ctx, &cred, &secret);
    if r == AuthResult::Ok {
        for ((avp, _), v) in cfg.load.iter().zip(extra) {
            if !v.is_null() {
                let val = match v {
                    DbValue::Int(i) => Value::Int(i),
                    other => Value::Str(other.as_str()),
                };
                ctx.avps.assign(avp, val);
            }
        }
    }
    r
}

fn fixup_kind(fx: &FixupCtx<'_>, args: &[Arg], kind: Kind) -> Result<Handler, FixupError> {
    let realm = fx.format_arg(args, 0)?;
    let cfg = db_cfg(fx, args)?;
    Ok(Box::new(move |ctx| {
        authorize(ctx, &realm, kind, &cfg).flow()
    }))
}

fn fixup_www(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_kind(fx, args, Kind::Www)
}

fn fixup_proxy(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_kind(fx, args, Kind::Proxy)
}

/// `auth_check(realm, table[, flags])`: www for REGISTER, proxy otherwise;
/// flag 1: the auth user must be the To (REGISTER) / From user.
fn fixup_check(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let realm = fx.format_arg(args, 0)?;
    let cfg = db_cfg(fx, args)?;
    let flags = if args.len() > 2 {
        fx.int_arg(args, 2)?
    } else {
        0
    };
    Ok(Box::new(move |ctx| {
        let kind = if ctx.method().eq_ignore_ascii_case("REGISTER") {
            Kind::Www
        } else {
            Kind::Proxy
        };
        let r = authorize(ctx, &realm, kind, &cfg);
        if r != AuthResult::Ok || flags & 1 == 0 {
            return r.flow();
        }
        let au = ctx.get_pv(&Pv::AuthUser).as_str().into_owned();
        let uri = if kind == Kind::Www {
            ctx.to_uri()
        } else {
            ctx.from_uri()
        };
        let user = uri
            .and_then(|u| {
                ser_sip::parse_uri(u.as_bytes()).ok().and_then(|p| {
                    p.user
                        .map(|s| String::from_utf8_lossy(s.of(u.as_bytes())).into_owned())
                })
            })
            .unwrap_or_default();
        let au_user = au.split('@').next().unwrap_or("");
        if au_user == user {
            AuthResult::Ok.flow()
        } else {
            AuthResult::UserMismatch.flow()
        }
    }))
}

/// SER 3.0: 1 authenticated; -1 not (challenge in `$digest_challenge`);
/// -2 internal error; -3 bad request.
fn fixup_ser(fx: &FixupCtx<'_>, args: &[Arg], kind: Kind) -> Result<Handler, FixupError> {
    let realm = fx.format_arg(args, 0)?;
    let cfg = db_cfg(fx, args)?;
    Ok(Box::new(move |ctx| {
        let r = authorize(ctx, &realm, kind, &cfg);
        match r {
            AuthResult::Ok => Flow::True,
            AuthResult::Error if ctx.last_error.as_ref().is_some_and(|e| e.code == 500) => {
                Flow::Code(-2)
            }
            AuthResult::Error => Flow::Code(-3),
            _ => {
                let realm = auth::realm_of(ctx, &realm, kind);
                auth::set_challenge_avp(ctx, kind, &realm);
                Flow::False
            }
        }
    }))
}

fn fixup_ser_www(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_ser(fx, args, Kind::Www)
}

fn fixup_ser_proxy(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_ser(fx, args, Kind::Proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_credentials_spec() {
        let l = parse_load("rpid; $avp(s:mail)=email_address").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].1, "rpid");
        assert_eq!(l[1].1, "email_address");
        assert!(parse_load("$ru=x").is_err());
        assert!(parse_load("bad col").is_err());
        assert!(parse_load("").unwrap().is_empty());
    }
}
