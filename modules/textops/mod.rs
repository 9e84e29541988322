//! `textops`: header and body text operations (basics): `append_hf`,
//! `remove_hf`, `is_present_hf`, `is_method`, `search`, `has_body`,
//! `append_to_reply`.

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;

/// The `textops` module.
pub struct Textops;

const REQ: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "append_hf",
        min_args: 1,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_append_hf,
    },
    FunctionExport {
        name: "remove_hf",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_remove_hf,
    },
    FunctionExport {
        name: "is_present_hf",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_is_present_hf,
    },
    FunctionExport {
        name: "is_method",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_is_method,
    },
    FunctionExport {
        name: "search",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_search,
    },
    FunctionExport {
        name: "has_body",
        min_args: 0,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_has_body,
    },
    FunctionExport {
        name: "append_to_reply",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_append_to_reply,
    },
];

impl Module for Textops {
    fn name(&self) -> &'static str {
        "textops"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

fn fixup_append_hf(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    let after = if args.len() == 2 {
        Some(fx.str_arg(args, 1)?)
    } else {
        None
    };
    Ok(Box::new(move |ctx| {
        let text = ctx.render(&f);
        match &after {
            Some(name) => match ctx
                .msg
                .find_by_name(name.as_bytes())
                .next()
                .map(|h| h.span.end())
            {
                Some(at) => ctx.lumps.insert(&ctx.msg, at, text.as_bytes()),
                None => return Flow::False,
            },
            None => ctx.append_header(&text),
        }
        Flow::True
    }))
}

fn fixup_remove_hf(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let name = fx.str_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        let spans: Vec<_> = ctx
            .msg
            .find_by_name(name.as_bytes())
            .map(|h| h.span)
            .collect();
        for s in &spans {
            ctx.lumps.delete(&ctx.msg, *s);
        }
        // SER returns the number of removed headers, -1 when none
        if spans.is_empty() {
            Flow::False
        } else {
            Flow::Code(spans.len().min(i32::MAX as usize) as i32)
        }
    }))
}

fn fixup_is_present_hf(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let name = fx.str_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(ctx.msg.find_by_name(name.as_bytes()).next().is_some())
    }))
}

fn fixup_is_method(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let list = fx.str_arg(args, 0)?;
    let methods: Vec<String> = list
        .split('|')
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    if methods.iter().any(|m| {
        m.is_empty()
            || !m
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
    }) {
        return Err(FixupError::arg(0, format!("bad method list `{list}`")));
    }
    Ok(Box::new(move |ctx| {
        let m = ctx.method();
        Flow::from_bool(methods.iter().any(|x| x.eq_ignore_ascii_case(m)))
    }))
}

fn fixup_search(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let re = fx.regex_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(re.is_match(&String::from_utf8_lossy(ctx.msg.buf())))
    }))
}

fn fixup_has_body(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let mime = if args.is_empty() {
        None
    } else {
        Some(fx.str_arg(args, 0)?.to_ascii_lowercase())
    };
    Ok(Box::new(move |ctx| {
        if ctx.msg.body().is_empty() {
            return Flow::False;
        }
        match &mime {
            None => Flow::True,
            Some(m) => Flow::from_bool(
                ctx.header_of(ser_sip::HeaderName::ContentType)
                    .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(m.as_str())),
            ),
        }
    }))
}

fn fixup_append_to_reply(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        let text = ctx.render(&f);
        ctx.reply_headers.push(text);
        Flow::True
    }))
}
