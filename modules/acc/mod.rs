//! `acc`: transaction accounting as Kamailio's `acc` module (3.1 era) —
//! to syslog (`log_flag`, `log_missed_flag`, `log_extra`) and to the
//! `acc` / `missed_calls` tables (`db_flag`, `db_missed_flag`, `db_extra`,
//! `db_url`), plus `acc_log_request` / `acc_db_request` from the script.
//!
//! Transactions are accounted when tm sends their final reply upstream
//! ([`crate::tm::hooks`]), with the transaction's flags at that moment:
//! - a 2xx (and a 183 with `early_media`) is "transaction answered";
//! - a negative final reply is accounted only when `failed_transaction_flag`
//!   is set, and is a missed call when the missed flag is set;
//! - CANCEL transactions only with `report_cancels`.
//!
//! Deliberate differences: Kamailio reports a missed call for every failed
//! branch (before `failure_route`); we report it once, for the negative reply
//! that ends the transaction.  Log records go to the server's log at
//! `log_level` (`log_facility` is accepted; the server's own facility is
//! used).  `report_ack` and `detect_direction` are accepted: end-to-end ACKs
//! are not transactions here, and records keep From/To as received.
//!
//! [`record`] builds the facts of one event, shared with SER's `acc_db`.

pub mod record;

use std::sync::Arc;

use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;
use crate::tm::hooks::{self, ReplyOut};

use self::record::{extras, parse_extra, Event, Record};
use crate::runtime::ctx::MsgCtx;

/// The `acc` module.
pub struct Acc;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("early_media", 0),
    ParamExport::int("report_ack", 0),
    ParamExport::int("report_cancels", 0),
    ParamExport::int("detect_direction", 0),
    ParamExport::int("failed_transaction_flag", -1),
    ParamExport::int("log_flag", -1),
    ParamExport::int("log_missed_flag", -1),
    ParamExport::int("log_level", 1),
    ParamExport::str("log_facility", "LOG_DAEMON"),
    ParamExport::str("log_extra", ""),
    ParamExport::int("db_flag", -1),
    ParamExport::int("db_missed_flag", -1),
    ParamExport::str("db_url", ""),
    ParamExport::str("db_extra", ""),
    ParamExport::str("db_table_acc", "acc"),
    ParamExport::str("db_table_missed_calls", "missed_calls"),
];

const R: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "acc_log_request",
        min_args: 1,
        max_args: 1,
        routes: R,
        fixup: fixup_log_request,
    },
    FunctionExport {
        name: "acc_db_request",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_db_request,
    },
];

/// The module's settings after modparams.
#[derive(Debug, Clone)]
pub struct Config {
    early_media: bool,
    report_ack: bool,
    report_cancels: bool,
    failed_flag: Option<u32>,
    log_flag: Option<u32>,
    log_missed_flag: Option<u32>,
    log_level: log::Level,
    log_extra: Vec<(String, Format)>,
    db_flag: Option<u32>,
    db_missed_flag: Option<u32>,
    db_url: String,
    db_extra: Vec<(String, Format)>,
    table_acc: String,
    table_missed: String,
}

fn flag_param(env: &ModuleEnv, name: &str) -> Result<Option<u32>, String> {
    match env.int(name) {
        n if n < 0 => Ok(None),
        n if n <= i64::from(crate::runtime::flags::MAX_FLAG) => Ok(Some(n as u32)),
        n => Err(format!("acc: {name} {n} out of range 0..31")),
    }
}

/// SER log level number to a `log` level (L_ERR -1, L_WARN 0, L_NOTICE 1, L_INFO 2, L_DBG 3).
pub fn level_of(n: i64) -> log::Level {
    match n {
        i64::MIN..=-1 => log::Level::Error,
        0 => log::Level::Warn,
        1 | 2 => log::Level::Info,
        _ => log::Level::Debug,
    }
}

impl Config {
    fn from_env(env: &ModuleEnv) -> Result<Config, String> {
        let table = |n: &str| {
            let t = env.str(n);
            db::ident(&t).map_err(|e| format!("acc: {n}: {e}"))?;
            Ok::<_, String>(t)
        };
        let extra = |n: &str| {
            let extra = parse_extra(&env.str(n)).map_err(|e| format!("acc: {n}: {e}"))?;
            if n == "db_extra" {
                for (col, _) in &extra {
                    db::ident(col).map_err(|e| format!("acc: {n}: {e}"))?;
                }
            }
            Ok::<_, String>(extra)
        };
        let c = Config {
            early_media: env.int("early_media") != 0,
            report_ack: env.int("report_ack") != 0,
            report_cancels: env.int("report_cancels") != 0,
            failed_flag: flag_param(env, "failed_transaction_flag")?,
            log_flag: flag_param(env, "log_flag")?,
            log_missed_flag: flag_param(env, "log_missed_flag")?,
            log_level: level_of(env.int("log_level")),
            log_extra: extra("log_extra")?,
            db_flag: flag_param(env, "db_flag")?,
            db_missed_flag: flag_param(env, "db_missed_flag")?,
            db_url: env.str("db_url"),
            db_extra: extra("db_extra")?,
            table_acc: table("db_table_acc")?,
            table_missed: table("db_table_missed_calls")?,
        };
        if (c.db_flag.is_some() || c.db_missed_flag.is_some()) && c.db_url.is_empty() {
            return Err("acc: db_flag/db_missed_flag set but db_url is empty".into());
        }
        Ok(c)
    }

    /// Account one reply tm sent upstream.
    pub fn on_reply_out(&self, r: &ReplyOut) {
        // Provisional replies are never accounted (but 183 with early_media):
        // skip them before parsing anything.
        if r.code < 200 && !(r.code == 183 && self.early_media) {
            return;
        }
        let Some((rec, ctx)) = Record::of_reply(r) else {
            return;
        };
        let set = |f: Option<u32>| f.is_some_and(|b| r.flags & (1 << b) != 0);
        if rec.method.eq_ignore_ascii_case("CANCEL") && !self.report_cancels {
            return;
        }
        if rec.method.eq_ignore_ascii_case("ACK") && !self.report_ack {
            return;
        }
        let event = match r.code {
            183 if self.early_media => Event::Answered,
            100..=199 => return,
            200..=299 => Event::Answered,
            _ => Event::Failed,
        };
        let acc = event == Event::Answered || set(self.failed_flag);
        if acc && set(self.log_flag) {
            self.log(&rec, &ctx, "transaction answered");
        }
        if acc && set(self.db_flag) {
            self.db(&rec, &ctx, &self.table_acc);
        }
        if event == Event::Failed {
            if set(self.log_missed_flag) {
                self.log(&rec, &ctx, "call missed");
            }
            if set(self.db_missed_flag) {
                self.db(&rec, &ctx, &self.table_missed);
            }
        }
    }

    fn log(&self, rec: &Record, ctx: &MsgCtx<'_>, what: &str) {
        let line = rec.log_line(&extras(ctx, &self.log_extra));
        log::log!(self.log_level, "ACC: {what}: {line}");
    }

    fn db(&self, rec: &Record, ctx: &MsgCtx<'_>, table: &str) {
        let extra = extras(ctx, &self.db_extra);
        if let Err(e) = write_row(&self.db_url, table, rec, &extra) {
            log::error!("acc: cannot write to table {table}: {e}");
        }
    }
}

/// Insert one Kamailio-schema row (`method, from_tag, to_tag, callid,
/// sip_code, sip_reason, time` and the extra columns).
pub fn write_row(
    url: &str,
    table: &str,
    rec: &Record,
    extra: &[(String, String)],
) -> Result<(), db::DbError> {
    let mut vals: Vec<(&str, DbValue)> = vec![
        ("method", DbValue::Str(rec.method.clone())),
        ("from_tag", DbValue::Str(rec.from_tag.clone())),
        ("to_tag", DbValue::Str(rec.to_tag.clone())),
        ("callid", DbValue::Str(rec.callid.clone())),
        ("sip_code", DbValue::Str(rec.code.to_string())),
        ("sip_reason", DbValue::Str(rec.reason.clone())),
        ("time", DbValue::DateTime(rec.time)),
    ];
    for (col, v) in extra {
        vals.push((col.as_str(), DbValue::Str(v.clone())));
    }
    db::with(url, |c| c.insert(table, &vals))
}

impl Module for Acc {
    fn name(&self) -> &'static str {
        "acc"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let cfg = Arc::new(Config::from_env(env)?);
        let c = cfg.clone();
        hooks::on_reply_out("acc", env, Arc::new(move |r| c.on_reply_out(r)));
        let _ = env.state.set(Box::new(cfg));
        Ok(())
    }
}

/// `"200 Call completed"` → (200, "Call completed"); no leading code → 0.
fn split_comment(s: &str) -> (u16, String) {
    let s = s.trim();
    match s.get(..3).and_then(|c| c.parse::<u16>().ok()) {
        Some(code) if s.len() == 3 || s.as_bytes()[3] == b' ' => {
            (code, s[3..].trim_start().to_owned())
        }
        _ => (0, s.to_owned()),
    }
}

fn fixup_log_request(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let comment = fx.str_arg(args, 0)?;
    let (code, reason) = split_comment(&comment);
    let level = level_of(fx.module.int("log_level"));
    let extra_text = fx.module.str("log_extra");
    let extra = parse_extra(&extra_text).map_err(FixupError::call)?;
    Ok(Box::new(move |ctx| {
        let rec = Record::of_request(ctx, code, &reason);
        let line = rec.log_line(&extras(ctx, &extra));
        log::log!(level, "ACC: request accounted: {line}");
        Flow::True
    }))
}

fn fixup_db_request(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let comment = fx.str_arg(args, 0)?;
    let (code, reason) = split_comment(&comment);
    let table = fx.str_arg(args, 1)?;
    db::ident(&table).map_err(|e| FixupError::arg(1, e.to_string()))?;
    let url = fx.module.str("db_url");
    if url.is_empty() {
        return Err(FixupError::call(
            "acc_db_request needs modparam(\"acc\", \"db_url\", ...)",
        ));
    }
    let extra = parse_extra(&fx.module.str("db_extra")).map_err(FixupError::call)?;
    for (col, _) in &extra {
        db::ident(col).map_err(|e| FixupError::call(e.to_string()))?;
    }
    Ok(Box::new(move |ctx| {
        let rec = Record::of_request(ctx, code, &reason);
        let vals = extras(ctx, &extra);
        match write_row(&url, &table, &rec, &vals) {
            Ok(()) => Flow::True,
            Err(e) => {
                log::error!("acc_db_request: {e}");
                Flow::False
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments() {
        assert_eq!(
            split_comment("200 Call completed"),
            (200, "Call completed".into())
        );
        assert_eq!(split_comment("404"), (404, String::new()));
        assert_eq!(split_comment("missed"), (0, "missed".into()));
        assert_eq!(split_comment("2000 x"), (0, "2000 x".into()));
    }

    #[test]
    fn levels() {
        assert_eq!(level_of(-1), log::Level::Error);
        assert_eq!(level_of(1), log::Level::Info);
        assert_eq!(level_of(4), log::Level::Debug);
    }
}
