//! `siputils`: `has_totag()`, `is_request()`, `is_reply()`, `is_first_hop()`, `is_e164(x)`, `is_uri_user_e164(uri)`,
//! `uri_param(name[, value])`, `add_uri_param(param)`, `options_reply()`.

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ParamExport, RouteMask,
};
use crate::runtime::flow::Flow;

/// The `siputils` module.
pub struct Siputils;

const REQ: RouteMask = RouteMask::REQUEST
    .or(RouteMask::FAILURE)
    .or(RouteMask::BRANCH);

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "is_request",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_is_request,
    },
    FunctionExport {
        name: "is_reply",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_is_reply,
    },
    FunctionExport {
        name: "is_first_hop",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_is_first_hop,
    },
    FunctionExport {
        name: "has_totag",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_has_totag,
    },
    FunctionExport {
        name: "is_e164",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_is_e164,
    },
    FunctionExport {
        name: "is_uri_user_e164",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_is_uri_user_e164,
    },
    FunctionExport {
        name: "uri_param",
        min_args: 1,
        max_args: 2,
        routes: REQ,
        fixup: fixup_uri_param,
    },
    FunctionExport {
        name: "add_uri_param",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_add_uri_param,
    },
    FunctionExport {
        name: "options_reply",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST,
        fixup: fixup_options_reply,
    },
];

static PARAMS: &[ParamExport] = &[
    ParamExport::str(
        "options_allow",
        "INVITE, ACK, CANCEL, OPTIONS, BYE, REGISTER, SUBSCRIBE, NOTIFY, INFO, PRACK, UPDATE, REFER, MESSAGE",
    ),
    ParamExport::str("options_accept", "*/*"),
    ParamExport::str("options_accept_encoding", ""),
    ParamExport::str("options_accept_language", "en"),
    ParamExport::str("options_support", ""),
];

impl Module for Siputils {
    fn name(&self) -> &'static str {
        "siputils"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

fn fixup_is_request(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| Flow::from_bool(ctx.msg.is_request())))
}

fn fixup_is_reply(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| Flow::from_bool(!ctx.msg.is_request())))
}

/// Kamailio's `is_first_hop()`: a request with a single Via came straight
/// from the UA; a reply is at its first hop when the top Record-Route is ours.
fn fixup_is_first_hop(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        if ctx.msg.is_request() {
            return Flow::from_bool(ctx.msg.vias().take(2).count() == 1);
        }
        let Some(rr) = ctx.header_of(ser_sip::HeaderName::RecordRoute) else {
            return Flow::False;
        };
        let first = rr.split(',').next().unwrap_or("").trim();
        let uri = first
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map_or(first, |(u, _)| u);
        Flow::from_bool(ctx.env.myself.matches_uri(uri))
    }))
}

fn fixup_has_totag(_fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        Flow::from_bool(ctx.msg.to().is_ok_and(|t| t.tag.is_some()))
    }))
}

/// An E.164 number as SER checks it: `+` then 2 to 15 digits.
pub fn is_e164(s: &[u8]) -> bool {
    s.len() >= 3 && s.len() <= 16 && s[0] == b'+' && s[1..].iter().all(u8::is_ascii_digit)
}

fn fixup_is_e164(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(is_e164(ctx.render(&f).as_bytes()))
    }))
}

/// Whether the user part of `uri` is an E.164 number.
pub fn is_uri_user_e164(uri: &str) -> bool {
    let b = uri.trim().as_bytes();
    ser_sip::parse_uri(b).is_ok_and(|u| {
        u.user
            .is_some_and(|s| is_e164(&b[s.start as usize..s.end()]))
    })
}

fn fixup_is_uri_user_e164(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(is_uri_user_e164(&ctx.render(&f)))
    }))
}

/// Whether `uri` has the parameter `name` (with `value`, when given; a
/// parameter without value matches an empty `value`).
pub fn has_uri_param(uri: &str, name: &str, value: Option<&str>) -> bool {
    let b = uri.as_bytes();
    let Ok(u) = ser_sip::parse_uri(b) else {
        return false;
    };
    let Some(p) = u.param(b, name.as_bytes()) else {
        return false;
    };
    match value {
        None => true,
        Some(v) => {
            let have = p.value.map_or(&b[0..0], |s| &b[s.start as usize..s.end()]);
            have == v.as_bytes()
        }
    }
}

fn fixup_uri_param(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let name = fx.str_arg(args, 0)?;
    let value = if args.len() == 2 {
        Some(fx.str_arg(args, 1)?)
    } else {
        None
    };
    Ok(Box::new(move |ctx| {
        Flow::from_bool(
            ctx.ruri()
                .is_some_and(|u| has_uri_param(&u, &name, value.as_deref())),
        )
    }))
}

/// `uri` with `;param` added after its parameters (before any `?headers`).
pub fn add_uri_param(uri: &str, param: &str) -> Option<String> {
    let u = ser_sip::parse_uri(uri.as_bytes()).ok()?;
    let at = match u.headers {
        // the header part starts after its `?`
        Some(h) => h.start as usize - 1,
        None => uri.len(),
    };
    Some(format!("{};{param}{}", &uri[..at], &uri[at..]))
}

fn fixup_add_uri_param(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let param = fx.str_arg(args, 0)?;
    if param.is_empty() || param.contains([';', '?', ' ', '\r', '\n']) {
        return Err(FixupError::arg(0, format!("bad URI parameter `{param}`")));
    }
    Ok(Box::new(move |ctx| {
        match ctx.ruri().and_then(|u| add_uri_param(&u, &param)) {
            Some(new) => {
                ctx.new_uri = Some(new);
                Flow::True
            }
            None => Flow::False,
        }
    }))
}

fn fixup_options_reply(fx: &FixupCtx<'_>, _args: &[Arg]) -> Result<Handler, FixupError> {
    let mut headers = Vec::new();
    for (param, name) in [
        ("options_allow", "Allow"),
        ("options_accept", "Accept"),
        ("options_accept_encoding", "Accept-Encoding"),
        ("options_accept_language", "Accept-Language"),
        ("options_support", "Supported"),
    ] {
        let v = fx.module.str(param);
        if !v.is_empty() {
            headers.push(format!("{name}: {v}\r\n"));
        }
    }
    Ok(Box::new(move |ctx| {
        if !ctx.method().eq_ignore_ascii_case("OPTIONS") {
            log::error!("options_reply: called for a non-OPTIONS request");
            return Flow::False;
        }
        // addressed to the server itself: our host in the R-URI, no user
        let uri = ctx.ruri().unwrap_or_default();
        let no_user =
            ser_sip::parse_uri(uri.as_bytes()).is_ok_and(|p| p.user.is_none_or(|s| s.len == 0));
        if !no_user || !ctx.env.myself.matches_uri(&uri) {
            log::error!("options_reply: the R-URI `{uri}` is not the server's own");
            return Flow::False;
        }
        ctx.reply_headers.extend(headers.iter().cloned());
        crate::sl::send_reply(ctx, 200, "OK")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        assert!(is_e164(b"+49"));
        assert!(is_e164(b"+123456789012345"));
        assert!(!is_e164(b"+1"));
        assert!(!is_e164(b"+1234567890123456"));
        assert!(!is_e164(b"49301234"));
        assert!(!is_e164(b"+49a"));
        assert!(is_uri_user_e164("sip:+4930123@example.com"));
        assert!(is_uri_user_e164("tel:+4930123"));
        assert!(!is_uri_user_e164("sip:alice@example.com"));
        assert!(!is_uri_user_e164("sip:example.com"));
        assert!(!is_uri_user_e164("garbage"));
    }

    #[test]
    fn uri_params() {
        let u = "sip:a@h;user=phone;lr";
        assert!(has_uri_param(u, "user", None));
        assert!(has_uri_param(u, "USER", Some("phone")));
        assert!(!has_uri_param(u, "user", Some("ip")));
        assert!(has_uri_param(u, "lr", None));
        assert!(has_uri_param(u, "lr", Some("")));
        assert!(!has_uri_param(u, "maddr", None));
        assert_eq!(
            add_uri_param("sip:a@h:5060", "lr").as_deref(),
            Some("sip:a@h:5060;lr")
        );
        assert_eq!(
            add_uri_param("sip:a@h;x=1?subject=hi", "y=2").as_deref(),
            Some("sip:a@h;x=1;y=2?subject=hi")
        );
    }
}
