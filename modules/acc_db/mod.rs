//! `acc_db`: SER 3.0 database accounting (replaces SER `modules_s/acc_db`).
//! Transactions with `log_flag` are written to `acc_table` when tm sends
//! their final reply: 2xx always (and 183 with `early_media`), negative
//! replies with `failed_transactions`; with `log_missed_flag` a negative
//! reply is also written to `mc_table`.  Script functions `acc_db_log()` and
//! `acc_db_missed()` write the current request at once.  Rows use SER's uid
//! schema (`sip_method`, `sip_status`, `from_uid`, `to_did`, ... see
//! `etc/db/ser-uid.sql`); the uids and dids come from the `$f.uid`,
//! `$t.uid`, `$f.did`, `$t.did` attributes.

use std::sync::Arc;

use crate::acc::record::Record;
use crate::db::{self, DbValue};
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::avp::{AvpName, AvpRef, Track};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::tm::hooks::{self, ReplyOut};

/// The `acc_db` module.
pub struct AccDb;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", "sqlite:///var/lib/ser/ser.db"),
    ParamExport::int("early_media", 0),
    ParamExport::int("failed_transactions", 0),
    ParamExport::int("log_flag", -1),
    ParamExport::int("log_missed_flag", -1),
    ParamExport::int("report_ack", 0),
    ParamExport::int("report_cancels", 0),
    ParamExport::str("acc_table", "acc"),
    ParamExport::str("mc_table", "missed_calls"),
];

const R: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "acc_db_log",
        min_args: 0,
        max_args: 0,
        routes: R,
        fixup: fixup_log,
    },
    FunctionExport {
        name: "acc_db_missed",
        min_args: 0,
        max_args: 0,
        routes: R,
        fixup: fixup_missed,
    },
];

#[derive(Debug, Clone)]
struct Config {
    url: String,
    early_media: bool,
    failed: bool,
    log_flag: Option<u32>,
    missed_flag: Option<u32>,
    report_ack: bool,
    report_cancels: bool,
    acc_table: String,
    mc_table: String,
}

fn flag(env: &ModuleEnv, name: &str) -> Result<Option<u32>, String> {
    match env.int(name) {
        n if n < 0 => Ok(None),
        n if n <= 31 => Ok(Some(n as u32)),
        n => Err(format!("acc_db: {name} {n} out of range 0..31")),
    }
}

impl Config {
    fn from_env(env: &ModuleEnv) -> Result<Config, String> {
        let table = |n: &str| {
            let t = env.str(n);
            db::ident(&t).map_err(|e| format!("acc_db: {n}: {e}"))?;
            Ok::<_, String>(t)
        };
        Ok(Config {
            url: env.str("db_url"),
            early_media: env.int("early_media") != 0,
            failed: env.int("failed_transactions") != 0,
            log_flag: flag(env, "log_flag")?,
            missed_flag: flag(env, "log_missed_flag")?,
            report_ack: env.int("report_ack") != 0,
            report_cancels: env.int("report_cancels") != 0,
            acc_table: table("acc_table")?,
            mc_table: table("mc_table")?,
        })
    }

    fn on_reply_out(&self, r: &ReplyOut) {
        if r.code < 200 && !(r.code == 183 && self.early_media) {
            return;
        }
        let Some((rec, ctx)) = Record::of_reply(r) else {
            return;
        };
        let set = |f: Option<u32>| f.is_some_and(|b| r.flags & (1 << b) != 0);
        let m = rec.method.to_ascii_uppercase();
        if (m == "CANCEL" && !self.report_cancels) || (m == "ACK" && !self.report_ack) {
            return;
        }
        let answered = match r.code {
            183 => self.early_media,
            100..=199 => return,
            200..=299 => true,
            _ => false,
        };
        if set(self.log_flag) && (answered || self.failed) {
            self.write(&self.acc_table, &rec, &ctx);
        }
        if !answered && r.code >= 300 && set(self.missed_flag) {
            self.write(&self.mc_table, &rec, &ctx);
        }
    }

    fn write(&self, table: &str, rec: &Record, ctx: &MsgCtx<'_>) {
        if let Err(e) = write_row(&self.url, table, rec, ctx) {
            log::error!("acc_db: cannot write to {table}: {e}");
        }
    }
}

fn attr(ctx: &MsgCtx<'_>, track: Track, name: &str) -> DbValue {
    let r = AvpRef {
        track: Some(track),
        class: None,
        name: AvpName::Str(name.into()),
    };
    match ctx.avps.get(&r) {
        Some(v) if !v.is_null() => DbValue::Str(v.as_str().into_owned()),
        _ => DbValue::Null,
    }
}

/// One SER-schema row.
fn write_row(url: &str, table: &str, rec: &Record, ctx: &MsgCtx<'_>) -> Result<(), db::DbError> {
    let hdr = |h: ser_sip::HeaderName| {
        ctx.header_of(h)
            .map_or(DbValue::Null, |v| DbValue::Str(v.trim().to_owned()))
    };
    let text = |v: Option<String>| v.map_or(DbValue::Null, DbValue::Str);
    let status = if rec.reason.is_empty() {
        rec.code.to_string()
    } else {
        format!("{} {}", rec.code, rec.reason)
    };
    let vals: Vec<(&str, DbValue)> = vec![
        ("from_uid", attr(ctx, Track::From, "uid")),
        ("to_uid", attr(ctx, Track::To, "uid")),
        ("from_did", attr(ctx, Track::From, "did")),
        ("to_did", attr(ctx, Track::To, "did")),
        ("sip_from", hdr(ser_sip::HeaderName::From)),
        ("sip_to", hdr(ser_sip::HeaderName::To)),
        ("sip_status", DbValue::Str(status)),
        ("sip_method", DbValue::Str(rec.method.clone())),
        ("in_ruri", text(ctx.orig_ruri())),
        ("from_uri", text(ctx.from_uri())),
        ("to_uri", text(ctx.to_uri())),
        ("sip_callid", DbValue::Str(rec.callid.clone())),
        ("sip_cseq", DbValue::Int(i64::from(rec.cseq))),
        ("from_tag", DbValue::Str(rec.from_tag.clone())),
        ("to_tag", DbValue::Str(rec.to_tag.clone())),
        ("src_ip", DbValue::Str(ctx.src.ip().to_string())),
        ("src_port", DbValue::Int(i64::from(ctx.src.port()))),
        ("request_timestamp", DbValue::DateTime(rec.time)),
        ("response_timestamp", DbValue::DateTime(rec.time)),
        ("flags", DbValue::Int(i64::from(ctx.flags.0))),
    ];
    db::with(url, |c| c.insert(table, &vals))
}

impl Module for AccDb {
    fn name(&self) -> &'static str {
        "acc_db"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let cfg = Arc::new(Config::from_env(env)?);
        hooks::on_reply_out("acc_db", env, Arc::new(move |r| cfg.on_reply_out(r)));
        Ok(())
    }
}

fn script_write(fx: &FixupCtx<'_>, table_param: &str) -> Result<Handler, FixupError> {
    let url = fx.module.str("db_url");
    let table = fx.module.str(table_param);
    db::ident(&table).map_err(|e| FixupError::call(e.to_string()))?;
    Ok(Box::new(move |ctx| {
        let rec = Record::of_request(ctx, 0, "");
        match write_row(&url, &table, &rec, ctx) {
            Ok(()) => Flow::True,
            Err(e) => {
                log::error!("acc_db: {e}");
                Flow::False
            }
        }
    }))
}

fn fixup_log(fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    script_write(fx, "acc_table")
}

fn fixup_missed(fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    script_write(fx, "mc_table")
}
