//! `sanity`: `sanity_check([msg_checks [, uri_checks]])` with Kamailio's
//! default checks; a failed check is answered with 400 and returns false
//! (`autodrop` 1, Kamailio's default: it stops the script instead).

use ser_sip::HeaderName;

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport, RouteMask,
};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;

/// The `sanity` module.
pub struct Sanity;

static FUNCTIONS: &[FunctionExport] = &[FunctionExport {
    name: "sanity_check",
    min_args: 0,
    max_args: 2,
    routes: RouteMask::REQUEST.or(RouteMask::ONREPLY),
    fixup: fixup_check,
}];

/// Kamailio's default `default_checks` (999) and `uri_checks` (7).
static PARAMS: &[ParamExport] = &[
    ParamExport::int("default_checks", 999),
    ParamExport::int("uri_checks", 7),
    // Kamailio 5: 1 = a failed check (already answered) stops the script.
    ParamExport::int("autodrop", 1),
];

impl Module for Sanity {
    fn name(&self) -> &'static str {
        "sanity"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

const RURI_SIP_VERSION: u32 = 1;
const RURI_SCHEME: u32 = 2;
const REQUIRED_HEADERS: u32 = 4;
const VIA_SIP_VERSION: u32 = 8;
const VIA_PROTOCOL: u32 = 16;
const CSEQ_METHOD: u32 = 32;
const CSEQ_VALUE: u32 = 64;
const CL: u32 = 128;
const EXPIRES_VALUE: u32 = 256;
const PARSE_URIS: u32 = 1024;

fn fail(ctx: &mut MsgCtx<'_>, why: &str) -> Flow {
    log::info!("sanity check failed: {why}");
    if ctx.msg.is_request() && !ctx.method().eq_ignore_ascii_case("ACK") {
        crate::sl::send_reply(ctx, 400, why);
    }
    Flow::False
}

/// Run the checks selected by `checks` (bitmask as Kamailio's).
pub fn check(ctx: &mut MsgCtx<'_>, checks: u32, uri_checks: u32) -> Flow {
    let m = &ctx.msg;
    if !m.is_request() {
        return Flow::True;
    }
    if checks & RURI_SIP_VERSION != 0
        && !m
            .buf()
            .split(|&b| b == b'\n')
            .next()
            .is_some_and(|l| l.trim_ascii_end().ends_with(b"SIP/2.0"))
    {
        return fail(ctx, "Version Not Supported");
    }
    if checks & RURI_SCHEME != 0 && m.parsed_ruri().is_err() {
        return fail(ctx, "Bad Request URI");
    }
    if checks & REQUIRED_HEADERS != 0
        && [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ]
        .iter()
        .any(|h| m.find(*h).is_none())
    {
        return fail(ctx, "Missing Required Header in Request");
    }
    if checks & (VIA_SIP_VERSION | VIA_PROTOCOL) != 0 && m.via1().is_err() {
        return fail(ctx, "Bad Via");
    }
    if checks & (CSEQ_METHOD | CSEQ_VALUE) != 0 {
        match m.cseq() {
            Ok(c)
                if checks & CSEQ_METHOD == 0
                    || m.s(c.method_span).eq_ignore_ascii_case(m.method_bytes()) => {}
            _ => return fail(ctx, "Bad CSeq"),
        }
    }
    if checks & CL != 0 && m.truncated_body().is_some() {
        return fail(ctx, "Bad Content-Length");
    }
    if checks & EXPIRES_VALUE != 0 && m.expires().is_err() {
        return fail(ctx, "Bad Expires");
    }
    if checks & PARSE_URIS != 0 {
        let bad_ruri = uri_checks & 1 != 0 && m.parsed_ruri().is_err();
        let bad_from = uri_checks & 2 != 0 && m.from().is_err();
        let bad_to = uri_checks & 4 != 0 && m.to().is_err();
        if bad_ruri || bad_from || bad_to {
            return fail(ctx, "Bad URI");
        }
    }
    Flow::True
}

fn fixup_check(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let checks = if args.is_empty() {
        fx.module.int("default_checks")
    } else {
        fx.int_arg(args, 0)?
    };
    let uri = if args.len() < 2 {
        fx.module.int("uri_checks")
    } else {
        fx.int_arg(args, 1)?
    };
    let (checks, uri) = (checks as u32, uri as u32);
    let autodrop = fx.module.int("autodrop") != 0;
    Ok(Box::new(move |ctx| match check(ctx, checks, uri) {
        Flow::False if autodrop => Flow::Exit,
        other => other,
    }))
}
