//! `print` (SER 0.8.8 example module): `print("text")` writes to stdout.

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;

/// The `print` module.
pub struct Print;

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "print",
    min_args: 1,
    max_args: 1,
    routes: RouteMask::ANY,
    fixup: fixup_print,
}];

impl Module for Print {
    fn name(&self) -> &'static str {
        "print"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

fn fixup_print(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        println!("{}", ctx.render(&f));
        Flow::True
    }))
}
