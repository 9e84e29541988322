//! `textopsx`: Kamailio's extra text operations, the cheap part.
//!
//! - `msg_apply_changes()`: true.  Our edits (lumps) are applied when the
//!   message is sent, and the functions reading the message here see the
//!   received text either way, so there is nothing to apply early.
//! - `fnmatch(value, pattern[, flags])`: shell wildcard match (`*`, `?`,
//!   `[...]`); flags `i` = case-insensitive.
//!
//! Not built in yet: `change_reply_status`, `remove_body`, `keep_hf`, the
//! `*_hf_value` family.

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
    use super::glob;

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
