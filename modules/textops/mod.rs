//! `textops`: header and body text operations: `append_hf`, `insert_hf`,
//! `remove_hf`, `is_present_hf`, `is_method`, `search`, `search_body`,
//! `search_append`, `replace`, `replace_all`, `subst`, `subst_uri`,
//! `subst_user`, `has_body`, `append_to_reply`, `starts_with`.
//!
//! Edits of the message go through its lumps; regular expressions and subst
//! expressions are compiled at fixup.  Like SER, the regex functions that
//! edit work on the header section (after the first line).

mod subst;

use regex::bytes::Regex;
use ser_sip::Span;

use self::subst::Subst;

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::ctx::MsgCtx;
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
        name: "search_body",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_search_body,
    },
    FunctionExport {
        name: "search_append",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_search_append,
    },
    FunctionExport {
        name: "replace",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_replace,
    },
    FunctionExport {
        name: "replace_all",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_replace_all,
    },
    FunctionExport {
        name: "subst",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_subst,
    },
    FunctionExport {
        name: "subst_uri",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_subst_uri,
    },
    FunctionExport {
        name: "subst_user",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_subst_user,
    },
    FunctionExport {
        name: "insert_hf",
        min_args: 1,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_insert_hf,
    },
    FunctionExport {
        name: "append_to_reply",
        min_args: 1,
        max_args: 1,
        routes: REQ,
        fixup: fixup_append_to_reply,
    },
    FunctionExport {
        name: "starts_with",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_starts_with,
    },
];

/// Kamailio's `starts_with(text, prefix)` (both may hold pvars).
fn fixup_starts_with(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let text = fx.format_arg(args, 0)?;
    let prefix = fx.format_arg(args, 1)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(ctx.render(&text).starts_with(&ctx.render(&prefix)))
    }))
}

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

/// A regex argument compiled for raw message bytes (offsets stay exact
/// whatever the encoding): case-insensitive, `^`/`$` at line ends, as SER
/// compiles them (`REG_EXTENDED|REG_ICASE|REG_NEWLINE`).
fn bytes_regex_arg(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Regex, FixupError> {
    let re = fx.str_arg(args, i)?;
    regex::bytes::RegexBuilder::new(&re)
        .case_insensitive(true)
        .multi_line(true)
        .crlf(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| FixupError::arg(i, format!("bad regular expression `{re}`: {e}")))
}

/// The header section: after the first line, up to the empty line.
fn header_part(ctx: &MsgCtx<'_>) -> (usize, usize) {
    let end = ctx.msg.headers_end();
    let start = ctx
        .msg
        .headers()
        .first()
        .map_or(end, |h| h.span.start as usize);
    (start.min(end), end)
}

/// Replaces the matches of `edits` (offsets relative to the header section)
/// through the lumps; true when there was one.
fn replace_in_headers(ctx: &mut MsgCtx<'_>, edits: Vec<subst::Edit>, base: usize) -> Flow {
    if edits.is_empty() {
        return Flow::False;
    }
    for (start, end, text) in edits {
        ctx.lumps
            .replace(&ctx.msg, Span::new(base + start, base + end), &text);
    }
    Flow::True
}

fn fixup_search_body(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let re = bytes_regex_arg(fx, args, 0)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(re.is_match(ctx.msg.body()))
    }))
}

fn fixup_search_append(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let re = bytes_regex_arg(fx, args, 0)?;
    let text = fx.str_arg(args, 1)?;
    Ok(Box::new(move |ctx| {
        let (start, end) = header_part(ctx);
        match re.find(&ctx.msg.buf()[start..end]) {
            Some(m) => {
                ctx.lumps.insert(&ctx.msg, start + m.end(), text.as_bytes());
                Flow::True
            }
            None => Flow::False,
        }
    }))
}

fn fixup_replace_n(args: &[Arg], fx: &FixupCtx<'_>, all: bool) -> Result<Handler, FixupError> {
    let re = bytes_regex_arg(fx, args, 0)?;
    let text = fx.str_arg(args, 1)?.into_bytes();
    Ok(Box::new(move |ctx| {
        let (start, end) = header_part(ctx);
        let hay = &ctx.msg.buf()[start..end];
        let edits: Vec<subst::Edit> = re
            .find_iter(hay)
            .take(if all { usize::MAX } else { 1 })
            .map(|m| (m.start(), m.end(), text.clone()))
            .collect();
        replace_in_headers(ctx, edits, start)
    }))
}

fn fixup_replace(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_replace_n(args, fx, false)
}

fn fixup_replace_all(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    fixup_replace_n(args, fx, true)
}

fn subst_arg(fx: &FixupCtx<'_>, args: &[Arg], i: usize) -> Result<Subst, FixupError> {
    Subst::parse(&fx.str_arg(args, i)?).map_err(|e| FixupError::arg(i, e))
}

fn fixup_subst(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let se = subst_arg(fx, args, 0)?;
    Ok(Box::new(move |ctx| {
        let (start, end) = header_part(ctx);
        let edits = se.edits(&ctx.msg.buf()[start..end]);
        replace_in_headers(ctx, edits, start)
    }))
}

fn fixup_subst_uri(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let se = subst_arg(fx, args, 0)?;
    Ok(Box::new(move |ctx| {
        let Some(uri) = ctx.ruri() else {
            return Flow::False;
        };
        match se.apply(uri.as_bytes()) {
            Some(new) => {
                ctx.new_uri = Some(String::from_utf8_lossy(&new).into_owned());
                Flow::True
            }
            None => Flow::False,
        }
    }))
}

fn fixup_subst_user(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let se = subst_arg(fx, args, 0)?;
    Ok(Box::new(move |ctx| {
        let Some(uri) = ctx.ruri() else {
            return Flow::False;
        };
        match subst_user(&se, &uri) {
            Some(new) => {
                ctx.new_uri = Some(new);
                Flow::True
            }
            None => Flow::False,
        }
    }))
}

/// `uri` with its user part (empty when it has none) substituted; `None`
/// when the expression does not match or the URI does not parse.
fn subst_user(se: &Subst, uri: &str) -> Option<String> {
    let b = uri.as_bytes();
    let u = ser_sip::parse_uri(b).ok()?;
    let (user_start, user_end) = match u.user {
        Some(s) => (s.start as usize, s.end()),
        None => {
            let at = u.scheme_span.end() + 1; // after `scheme:`
            (at, at)
        }
    };
    let new = se.apply(&b[user_start..user_end])?;
    let new = String::from_utf8_lossy(&new);
    let mut out = uri[..user_start].to_owned();
    match (u.user.is_some(), new.is_empty()) {
        // a user appears: it needs its `@`
        (false, false) => {
            out.push_str(&new);
            out.push('@');
            out.push_str(&uri[user_end..]);
        }
        // the user goes away: so does its `@` (unless a password follows)
        (true, true) if uri[user_end..].starts_with('@') => out.push_str(&uri[user_end + 1..]),
        _ => {
            out.push_str(&new);
            out.push_str(&uri[user_end..]);
        }
    }
    Some(out)
}

fn fixup_insert_hf(fx: &FixupCtx<'_>, args: &[Arg]) -> Result<Handler, FixupError> {
    let f = fx.format_arg(args, 0)?;
    let before = if args.len() == 2 {
        Some(fx.str_arg(args, 1)?)
    } else {
        None
    };
    Ok(Box::new(move |ctx| {
        let at = match &before {
            Some(name) => match ctx.msg.find_by_name(name.as_bytes()).next() {
                Some(h) => h.span.start as usize,
                None => return Flow::False,
            },
            None => header_part(ctx).0,
        };
        let text = ctx.render(&f);
        ctx.lumps.insert(&ctx.msg, at, text.as_bytes());
        Flow::True
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subst_user_rewrites_adds_and_removes_the_user() {
        let se = Subst::parse("/^0+/+49/").unwrap();
        assert_eq!(
            subst_user(&se, "sip:0301234@h;x=1").as_deref(),
            Some("sip:+49301234@h;x=1")
        );
        assert_eq!(subst_user(&se, "sip:alice@h"), None);
        let add = Subst::parse("/^$/bob/").unwrap();
        assert_eq!(
            subst_user(&add, "sip:h:5060").as_deref(),
            Some("sip:bob@h:5060")
        );
        let del = Subst::parse("/.*//").unwrap();
        assert_eq!(subst_user(&del, "sip:bob@h").as_deref(), Some("sip:h"));
    }
}
