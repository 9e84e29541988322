//! `sl`: stateless replies (replaces SER `modules/sl`): `sl_send_reply`,
//! `sl_reply` (SER 3.0), `send_reply`, `sl_reply_error`, `sl_filter_ACK`
//! (0.8.8), and absorption of ACKs to our own stateless replies.

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, RouteMask,
};
use crate::runtime::build::hash_parts;
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::format::Format;

/// The `sl` module.
pub struct Sl;

const R: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH)
    .or(RouteMask::ERROR);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "sl_send_reply",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_reply,
    },
    FunctionExport {
        name: "sl_reply",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_reply,
    },
    FunctionExport {
        name: "send_reply",
        min_args: 2,
        max_args: 2,
        routes: R,
        fixup: fixup_reply,
    },
    FunctionExport {
        name: "sl_reply_error",
        min_args: 0,
        max_args: 0,
        routes: R,
        fixup: fixup_reply_error,
    },
    FunctionExport {
        name: "sl_filter_ACK",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_filter_ack,
    },
];

impl Module for Sl {
    fn name(&self) -> &'static str {
        "sl"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn on_request(&self, _env: &ModuleEnv, ctx: &mut MsgCtx<'_>) -> bool {
        if is_ack_to_own_reply(ctx) {
            log::debug!("sl: absorbing ACK to our stateless reply");
            return false;
        }
        true
    }
}

/// Prefix of every to-tag we generate: stable across children (derived from
/// the listen addresses), so any process recognises ACKs to our replies.
pub fn tag_prefix(ctx: &MsgCtx<'_>) -> String {
    let mut parts: Vec<Vec<u8>> = vec![b"SER-stateless".to_vec()];
    parts.extend(
        ctx.env
            .listen
            .iter()
            .map(|l| l.addr.to_string().into_bytes()),
    );
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    format!("{:016x}", hash_parts(&refs))
}

/// The to-tag for a reply to this request: prefix + hash of the transaction keys.
pub fn to_tag(ctx: &MsgCtx<'_>) -> String {
    let m = &ctx.msg;
    let callid = m.call_id().unwrap_or_default();
    let ftag = m
        .from()
        .ok()
        .and_then(|f| f.tag)
        .map(|t| m.s(t))
        .unwrap_or_default();
    let branch = m
        .via1()
        .ok()
        .and_then(|v| v.branch)
        .map(|b| m.s(b))
        .unwrap_or_default();
    format!(
        "{}-{:08x}",
        tag_prefix(ctx),
        hash_parts(&[callid, ftag, branch]) as u32
    )
}

/// Whether this is an ACK whose To-tag is one of ours.
pub fn is_ack_to_own_reply(ctx: &MsgCtx<'_>) -> bool {
    if !ctx.msg.is_request() || !ctx.method().eq_ignore_ascii_case("ACK") {
        return false;
    }
    let Some(tag) = ctx.msg.to().ok().and_then(|t| t.tag).map(|t| ctx.text(t)) else {
        return false;
    };
    tag.starts_with(&format!("{}-", tag_prefix(ctx)))
}

/// Send a stateless reply to the current request.
pub fn send_reply(ctx: &mut MsgCtx<'_>, code: u16, reason: &str) -> Flow {
    if !ctx.msg.is_request() {
        log::error!("sl: cannot reply to a reply");
        return Flow::False;
    }
    if ctx.method().eq_ignore_ascii_case("ACK") {
        log::warn!("sl: I won't send a reply to ACK");
        return Flow::False;
    }
    let tag = to_tag(ctx);
    let buf = match ctx.build_reply(code, reason, Some(&tag)) {
        Ok(b) => b,
        Err(e) => {
            log::error!("sl: cannot build {code} reply: {e}");
            return Flow::False;
        }
    };
    let dst = ctx.reply_dest();
    match ctx.env.transport.send(&buf, &dst) {
        Ok(()) => {
            ctx.replied = Some(code);
            Flow::True
        }
        Err(e) => {
            log::error!("sl: sending {code} to {} failed: {e}", dst.addr);
            Flow::False
        }
    }
}

enum Code {
    Const(u16),
    Dyn(Format),
}

fn check_code(n: i64) -> Option<u16> {
    (100..=699).contains(&n).then_some(n as u16)
}

fn fixup_reply(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let code_fmt = fx.format_arg(args, 0)?;
    let code = match code_fmt.as_constant() {
        Some(c) => {
            let n = c
                .trim()
                .parse::<i64>()
                .map_err(|_| FixupError::arg(0, format!("reply code `{c}` is not a number")))?;
            Code::Const(check_code(n).ok_or_else(|| {
                FixupError::arg(0, format!("reply code {n} out of range 100..699"))
            })?)
        }
        None => Code::Dyn(code_fmt),
    };
    let reason = fx.format_arg(args, 1)?;
    Ok(Box::new(move |ctx| {
        let code = match &code {
            Code::Const(c) => *c,
            Code::Dyn(f) => match ctx
                .render(f)
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(check_code)
            {
                Some(c) => c,
                None => {
                    log::error!("sl: bad reply code from variable");
                    return Flow::False;
                }
            },
        };
        let reason = ctx.render(&reason);
        send_reply(ctx, code, &reason)
    }))
}

fn fixup_reply_error(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        let (code, reason) = match &ctx.last_error {
            Some(e) => (e.code, e.reason.clone()),
            None => (500, "Server Internal Error".to_owned()),
        };
        send_reply(ctx, code, &reason)
    }))
}

fn fixup_filter_ack(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    // 0.8.8: an ACK to one of our replies ends the script (return 0), so the
    // "discard local ACKs" line of ser.cfg works; anything else goes on.
    Ok(Box::new(|ctx| {
        if is_ack_to_own_reply(ctx) {
            Flow::Drop
        } else {
            Flow::True
        }
    }))
}
