//! `debugger`: Kamailio's script debugger, the parameters configs set.
//!
//! Accepted without effect (the routing engine has no per-action trace hook
//! yet): `cfgtrace`, `breakpoint`, `log_level`, `log_level_name`,
//! `log_facility`, `log_prefix`, `step_usleep`, `step_loops`,
//! `mod_hash_size`, `mod_level_mode`, `mod_level`, `mod_facility_mode`,
//! `mod_facility`, `reset_msgid`, `cfgpkgcheck`, `log_assign`, `cfgtest`.
//! `dbg_sip_msg()` logs the message as received; `dbg_breakpoint(n)` is true.

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport, RouteMask,
};
use crate::runtime::flow::Flow;

/// The `debugger` module.
pub struct Debugger;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("cfgtrace", 0),
    ParamExport::int("breakpoint", 0),
    ParamExport::int("log_level", 1),
    ParamExport::str("log_level_name", "DEBUG"),
    ParamExport::str("log_facility", ""),
    ParamExport::str("log_prefix", "*** cfgtrace:"),
    ParamExport::int("step_usleep", 100000),
    ParamExport::int("step_loops", 200),
    ParamExport::int("mod_hash_size", 0),
    ParamExport::int("mod_level_mode", 0),
    ParamExport::str_multi("mod_level", ""),
    ParamExport::int("mod_facility_mode", 0),
    ParamExport::str_multi("mod_facility", ""),
    ParamExport::int("reset_msgid", 0),
    ParamExport::int("cfgpkgcheck", 0),
    ParamExport::int("log_assign", 0),
    ParamExport::int("cfgtest", 0),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "dbg_breakpoint",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_breakpoint,
    },
    FunctionExport {
        name: "dbg_sip_msg",
        min_args: 0,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_sip_msg,
    },
];

impl Module for Debugger {
    fn name(&self) -> &'static str {
        "debugger"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

fn fixup_breakpoint(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    fx.int_arg(a, 0)?;
    Ok(Box::new(|_ctx| Flow::True))
}

fn fixup_sip_msg(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        log::info!("dbg_sip_msg:\n{}", String::from_utf8_lossy(ctx.msg.buf()));
        Flow::True
    }))
}
