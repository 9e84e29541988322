//! `maxfwd`: Max-Forwards processing (replaces SER `modules/maxfwd`).

use ser_sip::HeaderName;

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport, RouteMask,
};
use crate::runtime::ctx::{MsgCtx, ProcessingError};
use crate::runtime::flow::Flow;

/// The `maxfwd` module.
pub struct Maxfwd;

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "mf_process_maxfwd_header",
    min_args: 1,
    max_args: 1,
    routes: RouteMask::REQUEST
        .or(RouteMask::FAILURE)
        .or(RouteMask::BRANCH),
    fixup: fixup_process,
}];

static PARAMS: &[ParamExport] = &[
    ParamExport::int("max_limit", 256),
    ParamExport::int("maxfwd_limit", 256),
];

impl Module for Maxfwd {
    fn name(&self) -> &'static str {
        "maxfwd"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// Process Max-Forwards: missing → add `Max-Forwards: limit` (true); 0 → false;
/// else decrement (values above `max_limit` are lowered first).
pub fn process(ctx: &mut MsgCtx<'_>, limit: u32, max_limit: u32) -> Flow {
    let Some(h) = ctx.msg.find(HeaderName::MaxForwards).cloned() else {
        ctx.append_header(&format!("Max-Forwards: {limit}\r\n"));
        ctx.max_forwards_added = true;
        return Flow::Code(2);
    };
    let val = match ctx.msg.max_forwards() {
        Ok(Some(v)) => u32::from(v),
        _ => {
            ctx.last_error = Some(ProcessingError {
                code: 400,
                reason: "Bad Max-Forwards header".into(),
            });
            return Flow::Code(-2);
        }
    };
    if val == 0 {
        return Flow::False;
    }
    let new = val.min(max_limit.max(1)) - 1;
    ctx.lumps
        .replace_header_body(&ctx.msg, &h, new.to_string().as_bytes());
    Flow::True
}

fn fixup_process(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let limit = fx.int_arg(args, 0)?;
    if !(1..=255).contains(&limit) {
        return Err(FixupError::arg(
            0,
            format!("max-forwards limit {limit} out of range 1..255"),
        ));
    }
    let max_limit = fx
        .module
        .int("max_limit")
        .min(fx.module.int("maxfwd_limit"))
        .clamp(1, 256) as u32;
    Ok(Box::new(move |ctx| process(ctx, limit as u32, max_limit)))
}
