//! Token passes run between the lexer and the grammar.
//!
//! - [`repair_braces`]: a missing or extra `}` is the most common config mistake and, left
//!   alone, turns every following route into a cascade of errors. The pass reports it once
//!   (at the unclosed `{`) and inserts/deletes braces so the grammar sees balanced blocks.
//! - [`mark_value_ends`]: top-level values are free-form (`alias=a.com b.com:5070`), so
//!   their end cannot be found with one token of lookahead. The pass inserts
//!   [`Tok::ValueEnd`] after each `name = value`.

use ser_lexer::{Diagnostic, Kw, Pos, SourceMap, Span, Spanned, Tok};

fn is_route_kw(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Kw(
            Kw::Route
                | Kw::RequestRoute
                | Kw::ReplyRoute
                | Kw::OnReplyRoute
                | Kw::FailureRoute
                | Kw::BranchRoute
                | Kw::OnSendRoute
                | Kw::EventRoute
                | Kw::ErrorRoute
        )
    )
}

/// True when token `i` starts a route block (`route {`, `failure_route[X] {`, ...).
fn starts_route_block(toks: &[Spanned], i: usize) -> bool {
    is_route_kw(&toks[i].1)
        && matches!(
            toks.get(i + 1).map(|t| &t.1),
            Some(Tok::LBracket | Tok::LBrace)
        )
}

/// Balances `{`/`}`; see the module docs. Returns the tokens and how many `}` were
/// appended at the end of the input (parse errors there are consequences).
/// `quiet_missing` skips the "missing `}`" errors (a lexer error already cut a file short and
/// may have swallowed the brace).
pub fn repair_braces(
    toks: Vec<Spanned>,
    errors: &mut Vec<Diagnostic>,
    quiet_missing: bool,
) -> (Vec<Spanned>, usize) {
    let mut out = Vec::with_capacity(toks.len() + 4);
    let mut open: Vec<Span> = Vec::new();
    for i in 0..toks.len() {
        let (lo, t, hi) = (toks[i].0, &toks[i].1, toks[i].2);
        if !open.is_empty() && starts_route_block(&toks, i) {
            if let (Some(&sp), false) = (open.last(), quiet_missing) {
                errors.push(Diagnostic::error(
                    sp,
                    "missing `}`: this block is still open where the next route starts",
                ));
            }
            for _ in open.drain(..) {
                out.push((lo, Tok::RBrace, lo));
            }
        }
        match t {
            Tok::LBrace => open.push(Span::new(lo, hi)),
            Tok::RBrace if open.is_empty() => {
                errors.push(Diagnostic::error(Span::new(lo, hi), "unmatched `}`"));
                continue;
            }
            Tok::RBrace => {
                open.pop();
            }
            _ => {}
        }
        out.push(toks[i].clone());
    }
    let mut synthetic = 0;
    if let Some(&sp) = open.last() {
        if !quiet_missing {
            errors.push(Diagnostic::error(
                sp,
                "missing `}`: this block is still open at the end of the file",
            ));
        }
        let end = out.last().map_or(sp.hi(), |t| t.2);
        synthetic = open.len();
        for _ in open.drain(..) {
            out.push((end, Tok::RBrace, end));
        }
    }
    (out, synthetic)
}

/// Deepest `(`/`[`/`{` nesting accepted.
pub const MAX_NESTING: usize = 128;
/// Most operators accepted in one statement, and `else` branches in one route.
pub const MAX_CHAIN: usize = 1000;

/// Rejects inputs whose syntax tree would be absurdly deep (the tree, and whatever walks
/// it, uses recursion): deep bracket nesting, huge operator chains, endless `else if`s.
pub fn check_complexity(toks: &[Spanned]) -> Option<Diagnostic> {
    let mut depth = 0usize;
    let mut ops = 0usize;
    let mut elses = 0usize;
    for (lo, t, hi) in toks {
        let here = Span::new(*lo, *hi);
        match t {
            Tok::LParen | Tok::LBracket | Tok::LBrace => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(Diagnostic::error(
                        here,
                        format!("nesting too deep (more than {MAX_NESTING} levels)"),
                    ));
                }
            }
            Tok::RParen | Tok::RBracket | Tok::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
        match t {
            Tok::Semi | Tok::LBrace | Tok::RBrace => ops = 0,
            Tok::Kw(Kw::Else) => elses += 1,
            t if is_route_kw(t) => elses = 0,
            Tok::Ident(_) | Tok::Int(_) | Tok::Str(_) | Tok::Dollar(_) | Tok::Select(_) => {}
            Tok::Ip(_) | Tok::IpNet(..) | Tok::Kw(_) | Tok::Subject(_) | Tok::KwValue(_) => {}
            _ => ops += 1,
        }
        if ops > MAX_CHAIN || elses > MAX_CHAIN {
            return Some(Diagnostic::error(
                here,
                format!("expression or `else if` chain too long (more than {MAX_CHAIN} parts)"),
            ));
        }
    }
    None
}

/// Index just past `name(.name)*` starting at `i`, if `toks[i]` is an identifier.
fn dotted_name_end(toks: &[Spanned], i: usize) -> Option<usize> {
    if !matches!(toks.get(i)?.1, Tok::Ident(_)) {
        return None;
    }
    let mut j = i + 1;
    while matches!(toks.get(j).map(|t| &t.1), Some(Tok::Dot))
        && matches!(toks.get(j + 1).map(|t| &t.1), Some(Tok::Ident(_)))
    {
        j += 2;
    }
    Some(j)
}

/// True when a new top-level item starts at `i` (ends the current value).
fn item_starts(toks: &[Spanned], i: usize) -> bool {
    match &toks[i].1 {
        Tok::Semi | Tok::LBrace | Tok::RBrace | Tok::LParen | Tok::RParen | Tok::ValueEnd => true,
        Tok::Kw(k) => !matches!(k, Kw::Desc | Kw::Default),
        Tok::Ident(_) => {
            let Some(j) = dotted_name_end(toks, i) else {
                return false;
            };
            matches!(toks.get(j).map(|t| &t.1), Some(Tok::Assign | Tok::LBrace))
                || (j == i + 1 && matches!(toks.get(j).map(|t| &t.1), Some(Tok::LBracket)))
        }
        _ => false,
    }
}

/// Inserts [`Tok::ValueEnd`] after every top-level `name = value`.
///
/// A value also ends at a line break, unless the line ends with `,` (values never span
/// lines in SER configs; this keeps `debug=3` + a garbage line from becoming a list).
pub fn mark_value_ends(toks: Vec<Spanned>, sources: &SourceMap) -> Vec<Spanned> {
    let line = |p: Pos| sources.get(p.file).map_or(0, |f| f.line_col(p.offset).0);
    let mut out = Vec::with_capacity(toks.len() + 16);
    let mut depth = 0i32;
    let mut i = 0;
    while i < toks.len() {
        if depth == 0 {
            if let Some(j) = dotted_name_end(&toks, i) {
                if matches!(toks.get(j).map(|t| &t.1), Some(Tok::Assign)) {
                    // name ... '='
                    out.extend_from_slice(&toks[i..=j]);
                    let mut k = j + 1;
                    while k < toks.len() && !item_starts(&toks, k) {
                        let prev = &toks[k - 1];
                        if k > j + 1
                            && prev.1 != Tok::Comma
                            && toks[k].1 != Tok::Comma
                            && (prev.2.file != toks[k].0.file || line(prev.2) < line(toks[k].0))
                        {
                            break;
                        }
                        out.push(toks[k].clone());
                        k += 1;
                    }
                    let at = out.last().map_or(toks[j].2, |t| t.2);
                    out.push((at, Tok::ValueEnd, at));
                    i = k;
                    continue;
                }
            }
        }
        match toks[i].1 {
            Tok::LBrace | Tok::LParen => depth += 1,
            Tok::RBrace | Tok::RParen => depth = (depth - 1).max(0),
            _ => {}
        }
        out.push(toks[i].clone());
        i += 1;
    }
    out
}
