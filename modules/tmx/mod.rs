//! `tmx`: tm extensions (replaces Kamailio `modules/tmx`): `t_precheck_trans`
//! (is this request a retransmission of one being processed?),
//! `t_flush_flags` (store the message flags into the transaction now) and
//! `t_reply_callid(callid, cseq, code, reason)` (answer a transaction found
//! by Call-ID and CSeq number, e.g. from another request).

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;
use crate::tm::core::current;
use crate::tm::matching::Purpose;
use crate::tm::{loaded_state, tm_of};

/// The `tmx` module.
pub struct Tmx;

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "t_reply_callid",
        min_args: 4,
        max_args: 4,
        routes: RouteMask::ANY,
        fixup: fixup_reply_callid,
    },
    FunctionExport {
        name: "t_precheck_trans",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_precheck,
    },
    FunctionExport {
        name: "t_flush_flags",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST
            .or(RouteMask::FAILURE)
            .or(RouteMask::BRANCH),
        fixup: fixup_flush_flags,
    },
];

impl Module for Tmx {
    fn name(&self) -> &'static str {
        "tmx"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// tmx works on tm's table: tm must be loaded and initialised.
fn tm_missing() -> Flow {
    log::error!("tmx: the tm module is not loaded");
    Flow::False
}

fn fixup_precheck(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(move |ctx| {
        let Some(st) = loaded_state() else {
            return tm_missing();
        };
        let Some(tm) = tm_of(&st) else {
            return tm_missing();
        };
        if ctx.method().eq_ignore_ascii_case("ACK") || ctx.method().eq_ignore_ascii_case("CANCEL") {
            return Flow::False;
        }
        Flow::from_bool(tm.lookup(&ctx.msg, Purpose::Retransmission).is_some())
    }))
}

fn fixup_flush_flags(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(move |ctx| {
        let Some(st) = loaded_state() else {
            return tm_missing();
        };
        let Some(tm) = tm_of(&st) else {
            return tm_missing();
        };
        match current(ctx) {
            Some(c) => {
                let flags = ctx.flags.0;
                Flow::from_bool(tm.update(c.tx, |d| d.flags = flags))
            }
            None => Flow::False,
        }
    }))
}

fn fixup_reply_callid(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let callid = fx.format_arg(args, 0)?;
    let cseq = fx.format_arg(args, 1)?;
    let code = fx.format_arg(args, 2)?;
    if let Some(c) = code.as_constant() {
        if !c
            .trim()
            .parse::<u16>()
            .is_ok_and(|n| (100..=699).contains(&n))
        {
            return Err(FixupError::arg(2, format!("bad reply code `{c}`")));
        }
    }
    let reason = fx.format_arg(args, 3)?;
    Ok(Box::new(move |ctx| {
        let Some(st) = loaded_state() else {
            return tm_missing();
        };
        let Some(tm) = tm_of(&st) else {
            return tm_missing();
        };
        let (Ok(cseq), Ok(code)) = (
            ctx.render(&cseq).trim().parse::<u32>(),
            ctx.render(&code).trim().parse::<u16>(),
        ) else {
            log::error!("tmx: t_reply_callid: bad CSeq number or reply code");
            return Flow::False;
        };
        let callid = ctx.render(&callid);
        match tm.find_by_callid(callid.as_bytes(), cseq) {
            Some(t) => {
                let reason = ctx.render(&reason);
                Flow::from_bool(tm.reply_local(ctx.env, t, code, &reason, &[]))
            }
            None => {
                log::info!("tmx: t_reply_callid: no transaction {callid} / {cseq}");
                Flow::False
            }
        }
    }))
}
