//! `xlog`: `xlog([level,] format)`, `xdbg(format)`.

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;

/// The `xlog` module.
pub struct Xlog;

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "xlog",
        min_args: 1,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_xlog,
    },
    FunctionExport {
        name: "xdbg",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_xdbg,
    },
];

impl Module for Xlog {
    fn name(&self) -> &'static str {
        "xlog"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// SER level names (`L_ERR`...) → log levels.
pub fn parse_level(s: &str) -> Option<log::Level> {
    Some(match s.trim() {
        "L_ALERT" | "L_BUG" | "L_CRIT" | "L_CRIT2" | "L_ERR" | "-1" | "-2" | "-3" | "-4" | "-5" => {
            log::Level::Error
        }
        "L_WARN" | "0" => log::Level::Warn,
        "L_NOTICE" | "L_INFO" | "1" | "2" => log::Level::Info,
        "L_DBG" | "3" => log::Level::Debug,
        _ => return None,
    })
}

fn fixup_xlog(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let (level, fi) = if args.len() == 2 {
        let l = fx.str_arg(args, 0)?;
        (
            parse_level(&l)
                .ok_or_else(|| FixupError::arg(0, format!("unknown log level `{l}`")))?,
            1,
        )
    } else {
        (log::Level::Error, 0)
    };
    let f = fx.format_arg(args, fi)?;
    Ok(Box::new(move |ctx| {
        let text = ctx.render(&f);
        log::log!(level, "{}", text.trim_end_matches('\n'));
        Flow::True
    }))
}

fn fixup_xdbg(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        log::debug!("{}", ctx.render(&f).trim_end_matches('\n'));
        Flow::True
    }))
}
