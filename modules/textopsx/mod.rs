//! `textopsx`: Kamailio's extra text operations, the cheap part.
//!
//! - `msg_apply_changes()`: true.  Our edits (lumps) are applied when the
//!   message is sent, and the functions reading the message here see the
//!   received text either way, so there is nothing to apply early.
//! - `fnmatch(value, pattern[, flags])`: shell wildcard match (`*`, `?`,
//!   `[...]`); flags `i` = case-insensitive.
//!
//! - `remove_body()`: drops the body and its Content-Type (false without a body).
//! - `keep_hf(regexp)`: removes every header whose name does not match, but
//!   never Via, From, To, Call-ID, CSeq, Contact, Route, Record-Route,
//!   Max-Forwards, Content-Length, Content-Type.
//! - `change_reply_status(code, reason)` in `onreply_route`: rewrites the
//!   forwarded reply's status line (a 1xx stays 1xx, a final reply final);
//!   the transaction logic still sees the received status.
//!
//! Not built in yet: the `*_hf_value` family.

use ser_sip::HeaderName;

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;

/// The `textopsx` module.
pub struct Textopsx;

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "msg_apply_changes",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::REQUEST.or(RouteMask::ONREPLY),
        fixup: fixup_apply,
    },
    FunctionExport {
        name: "remove_body",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_remove_body,
    },
    FunctionExport {
        name: "keep_hf",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_keep_hf,
    },
    FunctionExport {
        name: "change_reply_status",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ONREPLY,
        fixup: fixup_change_reply_status,
    },
    FunctionExport {
        name: "fnmatch",
        min_args: 2,
        max_args: 3,
        routes: RouteMask::ANY,
        fixup: fixup_fnmatch,
    },
];

impl Module for Textopsx {
    fn name(&self) -> &'static str {
        "textopsx"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

fn fixup_apply(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|_ctx| Flow::True))
}

fn fixup_remove_body(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|ctx| {
        if ctx.msg.body().is_empty() {
            return Flow::False;
        }
        ctx.lumps.set_body(&ctx.msg, b"");
        let types: Vec<_> = ctx.msg.find_all(HeaderName::ContentType).cloned().collect();
        for h in &types {
            ctx.lumps.remove_header(&ctx.msg, h);
        }
        // Said explicitly: a removal next to Content-Length would otherwise
        // keep the builder from fixing it.
        if let Some(cl) = ctx.msg.find(HeaderName::ContentLength).cloned() {
            ctx.lumps.replace_header_body(&ctx.msg, &cl, b"0");
        }
        Flow::True
    }))
}

/// Headers `keep_hf` never removes.
const KEEP_ALWAYS: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Contact,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
];

fn fixup_keep_hf(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let re = fx.regex_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        let drop: Vec<_> = ctx
            .msg
            .headers()
            .iter()
            .filter(|h| {
                !KEEP_ALWAYS.contains(&h.name)
                    && !re.is_match(&String::from_utf8_lossy(ctx.msg.header_name(h)))
            })
            .cloned()
            .collect();
        for h in &drop {
            ctx.lumps.remove_header(&ctx.msg, h);
        }
        Flow::True
    }))
}

fn fixup_change_reply_status(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let code = fx.int_arg(a, 0)?;
    let code = u16::try_from(code)
        .ok()
        .filter(|c| (100..=699).contains(c))
        .ok_or_else(|| FixupError::arg(0, format!("code {code} out of range 100..699")))?;
    let reason = fx.format_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        let Some(old) = ctx.status() else {
            return Flow::False;
        };
        // As Kamailio: a provisional reply stays provisional and a final one final.
        if (old < 200) != (code < 200) {
            log::warn!("change_reply_status: cannot turn {old} into {code}");
            return Flow::False;
        }
        let reason = ctx.render(&reason).replace(['\r', '\n'], " ");
        let line = format!("SIP/2.0 {code} {reason}");
        let span = ctx.msg.first_line_span();
        ctx.lumps.replace(&ctx.msg, span, line.as_bytes());
        Flow::True
    }))
}

fn fixup_fnmatch(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let value = fx.format_arg(a, 0)?;
    let pattern = fx.format_arg(a, 1)?;
    let icase = if a.len() > 2 {
        let f = fx.str_arg(a, 2)?;
        if !f.chars().all(|c| c == 'i') {
            return Err(FixupError::arg(
                2,
                format!("unknown flags `{f}` (only `i`)"),
            ));
        }
        !f.is_empty()
    } else {
        false
    };
    Ok(Box::new(move |ctx| {
        let (mut v, mut p) = (ctx.render(&value), ctx.render(&pattern));
        if icase {
            v = v.to_lowercase();
            p = p.to_lowercase();
        }
        Flow::from_bool(glob(p.as_bytes(), v.as_bytes()))
    }))
}

/// Shell wildcard match, iterative (backtracks to the last `*` only, so it is
/// linear-ish and never recurses).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(&p[pi..], s[si]) {
                        if matched {
                            pi += next;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == b'[' {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at the start of `p`: whether `c` matches and the class
/// length; `None` when the class is not closed.
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != b']' || first) {
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            matched |= (p[i]..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ser_sip::SipMsg;

    use super::glob;
    use crate::iface::{Arg, FixupCtx, RouteMask, ScriptNames};
    use crate::registry::Modules;
    use crate::runtime::ctx::{Env, MsgCtx};
    use crate::runtime::flow::Flow;
    use crate::runtime::transport::{Myself, Proto, Recorder};

    struct Names;
    impl ScriptNames for Names {
        fn flag(&self, _: &str) -> Option<u32> {
            None
        }
        fn avp_flag(&self, _: &str) -> Option<u32> {
            None
        }
        fn has_route(&self, _: RouteMask, _: &str) -> bool {
            false
        }
    }

    /// Runs `name(args)` on `msg`; the flow and the message as it would be sent.
    fn run(name: &str, args: &[Arg], msg: &str) -> (Flow, String) {
        let mut m = Modules::default();
        m.load("textopsx").unwrap();
        let (l, f) = m.function(name).unwrap();
        let h = (f.fixup)(
            &FixupCtx {
                module: &l.env,
                names: &Names,
            },
            args,
        )
        .unwrap();
        let env = Env::new(Arc::new(Recorder::default()), Myself::default(), vec![]);
        let msg = SipMsg::parse(msg.replace('\n', "\r\n").into_bytes()).unwrap();
        let addr = "127.0.0.1:5060".parse().unwrap();
        let mut ctx = MsgCtx::new(msg, &env, addr, addr, Proto::Udp);
        let flow = h(&mut ctx);
        let out = ser_sip::apply(&ctx.msg, &ctx.lumps).unwrap();
        (flow, String::from_utf8(out).unwrap())
    }

    const INVITE: &str = "INVITE sip:b@x SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
From: <sip:a@x>;tag=1
To: <sip:b@x>
Call-ID: c1
CSeq: 1 INVITE
X-Keep: 1
X-Drop: 2
Subject: s
Content-Type: application/sdp
Content-Length: 4

v=0
";

    #[test]
    fn remove_body_and_keep_hf() {
        let (f, out) = run("remove_body", &[], INVITE);
        assert_eq!(f, Flow::True);
        assert!(out.contains("Content-Length: 0\r\n"), "{out}");
        assert!(
            !out.contains("Content-Type") && !out.contains("v=0"),
            "{out}"
        );
        let (f, out) = run("keep_hf", &[Arg::Str("^X-Keep$".into())], INVITE);
        assert_eq!(f, Flow::True);
        assert!(
            out.contains("X-Keep: 1") && out.contains("Content-Type"),
            "{out}"
        );
        assert!(!out.contains("X-Drop") && !out.contains("Subject"), "{out}");
    }

    #[test]
    fn change_reply_status() {
        let reply = "SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
From: <sip:a@x>;tag=1
To: <sip:b@x>;tag=2
Call-ID: c1
CSeq: 1 INVITE
Content-Length: 0

";
        let args = [Arg::Int(404), Arg::Str("Not Here".into())];
        let (f, out) = run("change_reply_status", &args, reply);
        assert_eq!(f, Flow::True);
        assert!(out.starts_with("SIP/2.0 404 Not Here\r\nVia:"), "{out}");
        let args = [Arg::Int(180), Arg::Str("Ringing".into())];
        assert_eq!(run("change_reply_status", &args, reply).0, Flow::False);
    }

    #[test]
    fn wildcards() {
        let m = |p: &str, s: &str| glob(p.as_bytes(), s.as_bytes());
        assert!(m("*", ""));
        assert!(m("a*c", "abbbc"));
        assert!(!m("a*c", "abbb"));
        assert!(m("?b*", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("*.example.*", "sip.example.com"));
        assert!(m("\\*", "*"));
        assert!(!m("abc", "abcd"));
    }
}
