//! `tmx`: tm extensions (replaces Kamailio `modules/tmx`): `t_precheck_trans`
//! (is this request a retransmission of one being processed?) and
//! `t_flush_flags` (store the message flags into the transaction now).

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;
use crate::tm::core::current;
use crate::tm::matching::Purpose;
use crate::tm::{loaded_state, tm_of};

/// The `tmx` module.
pub struct Tmx;

static FUNCTIONS: &[FunctionExport] = &[
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
