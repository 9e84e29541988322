//! `siputils`: `has_totag()`.

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;

/// The `siputils` module.
pub struct Siputils;

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "has_totag",
    min_args: 0,
    max_args: 0,
    routes: RouteMask::ANY,
    fixup: fixup_has_totag,
}];

impl Module for Siputils {
    fn name(&self) -> &'static str {
        "siputils"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

fn fixup_has_totag(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        Flow::from_bool(ctx.msg.to().is_ok_and(|t| t.tag.is_some()))
    }))
}
