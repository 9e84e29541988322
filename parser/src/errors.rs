//! Turning lalrpop's parse errors into [`Diagnostic`]s, without cascades.
//!
//! After an error the parser resynchronises at the next statement or top-level item. Like
//! bison's `yyerrok` rule, an error is only reported if at least [`QUIET_TOKENS`] tokens
//! were parsed since the previous one resumed. Errors that are consequences of something
//! already reported are dropped: right after a lexer error, at braces the brace pass added
//! at the end of the file, at the end of a file cut short by an unterminated string.

use std::collections::HashMap;

use lalrpop_util::{ErrorRecovery, ParseError};
use ser_lexer::{Diagnostic, Kw, Pos, SourceMap, Span, Spanned, Tok};

type PErr = ParseError<Pos, Tok, String>;

/// Tokens that must parse cleanly after a recovery before a new error is reported.
pub const QUIET_TOKENS: usize = 3;

/// Friendly name of an expected terminal as lalrpop spells it (`"\";\""`, `ident`).
fn expected_name(e: &str) -> String {
    match e {
        "ident" => "a name".into(),
        "int" => "a number".into(),
        "string" => "a string".into(),
        "ip" => "an address".into(),
        "ipnet" => "a network".into(),
        "dollar" => "a variable".into(),
        "select" => "a select".into(),
        "subject" => "a message keyword".into(),
        "kwvalue" => "a keyword".into(),
        "routename" => "a route name".into(),
        "value_end" => "end of value".into(),
        other => format!("`{}`", other.trim_matches('"')),
    }
}

/// `a, b or c` for short lists; "an expression" when any value may start there.
fn expected_list(expected: &[String]) -> Option<String> {
    let has = |t: &str| expected.iter().any(|e| e == t);
    if has("int") && has("string") && has("dollar") && !has("\"if\"") {
        return Some("an expression".into());
    }
    if expected.is_empty() || expected.len() > 5 {
        return None;
    }
    let names: Vec<String> = expected.iter().map(|e| expected_name(e)).collect();
    Some(match names.len() {
        1 => names[0].clone(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    })
}

/// Context for translating errors.
pub struct Translator<'a> {
    toks: &'a [Spanned],
    sources: &'a SourceMap,
    index: HashMap<Pos, usize>,
    lex_errors: Vec<Span>,
    /// A file was cut short by an unterminated string/comment.
    truncated: bool,
    /// Index of the first `}` the brace pass appended at the end.
    synthetic_from: usize,
    /// Errors at or after this token index are consequences of an earlier lexer error.
    quiet_from: usize,
}

impl<'a> Translator<'a> {
    /// `toks` is the stream that was parsed, whose last `synthetic_eof_braces` tokens were
    /// added by [`crate::tokens::repair_braces`]; `lex_errors` are the lexer errors' spans.
    pub fn new(
        toks: &'a [Spanned],
        sources: &'a SourceMap,
        lex_errors: Vec<Span>,
        truncated: bool,
        synthetic_eof_braces: usize,
    ) -> Translator<'a> {
        let mut index = HashMap::new();
        for (i, t) in toks.iter().enumerate() {
            index.entry(t.0).or_insert(i);
        }
        let synthetic_from = toks.len() - synthetic_eof_braces.min(toks.len());
        Translator {
            toks,
            sources,
            index,
            lex_errors,
            truncated,
            synthetic_from,
            quiet_from: usize::MAX,
        }
    }

    /// Drops errors at token index `idx` and later (after a file was cut short by an
    /// unterminated string or comment, what follows is out of sync).
    pub fn quiet_from(&mut self, idx: usize) {
        self.quiet_from = idx;
    }

    /// An empty span at the end of the last token.
    pub fn end_span(&self) -> Span {
        self.eof_span()
    }

    fn eof_span(&self) -> Span {
        self.toks
            .last()
            .map_or_else(Span::default, |t| Span::new(t.2, t.2))
    }

    /// Converts recovered errors plus an optional fatal one into diagnostics.
    pub fn translate(
        &self,
        recovered: Vec<ErrorRecovery<Pos, Tok, String>>,
        fatal: Option<PErr>,
    ) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut resume_at: Option<usize> = None;
        let all = recovered
            .into_iter()
            .map(|r| (r.error, r.dropped_tokens.len()))
            .chain(fatal.map(|f| (f, 0)));
        let mut seen_error = false;
        for (err, dropped) in all {
            let idx = self.token_index(&err);
            // Braces are balanced by the brace pass, so an unexpected `}` after an earlier
            // error is that error's recovery closing the wrong block.
            let at_rbrace = matches!(&err, ParseError::UnrecognizedToken { token, .. } if token.1 == Tok::RBrace);
            if seen_error && at_rbrace {
                continue;
            }
            seen_error = true;
            if let (Some(i), Some(r)) = (idx, resume_at) {
                if i < r + QUIET_TOKENS {
                    resume_at = Some(i + dropped);
                    continue;
                }
            }
            if let Some(i) = idx {
                resume_at = Some(i + dropped);
                if i >= self.quiet_from {
                    continue;
                }
                if i >= self.synthetic_from && i < self.toks.len() {
                    continue;
                }
            }
            if let Some(d) = self.diagnostic(err, idx) {
                out.push(d);
            }
        }
        out
    }

    fn token_index(&self, e: &PErr) -> Option<usize> {
        match e {
            ParseError::UnrecognizedToken { token, .. } | ParseError::ExtraToken { token } => {
                // Several tokens may share a start (a define's expansion): pick the one
                // that is exactly this token.
                let first = *self.index.get(&token.0)?;
                (first..self.toks.len())
                    .take_while(|&i| self.toks[i].0 == token.0)
                    .find(|&i| self.toks[i].1 == token.1)
                    .or(Some(first))
            }
            ParseError::UnrecognizedEof { .. } => Some(self.toks.len()),
            _ => None,
        }
    }

    /// A lexer error between the previous token and this one explains this error.
    fn after_lex_error(&self, idx: usize) -> bool {
        let Some(cur) = self.toks.get(idx) else {
            return false;
        };
        let prev_lo = idx
            .checked_sub(1)
            .and_then(|p| self.toks.get(p))
            .map_or(Pos::default(), |t| t.0);
        self.lex_errors.iter().any(|s| {
            s.file == cur.0.file
                && s.start <= cur.2.offset
                && (prev_lo.file != s.file || s.start >= prev_lo.offset)
        })
    }

    fn line_of(&self, p: Pos) -> u32 {
        self.sources
            .get(p.file)
            .map_or(0, |f| f.line_col(p.offset).0)
    }

    fn diagnostic(&self, err: PErr, idx: Option<usize>) -> Option<Diagnostic> {
        match err {
            ParseError::UnrecognizedToken {
                token: (lo, tok, hi),
                expected,
            } => {
                if idx.is_some_and(|i| self.after_lex_error(i)) {
                    return None;
                }
                let here = Span::new(lo, hi);
                if tok == Tok::Assign && expected.iter().any(|e| e == "\"==\"") {
                    return Some(Diagnostic::error(
                        here,
                        "unexpected `=`; use `==` to compare",
                    ));
                }
                let prev = idx
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|p| self.toks.get(p));
                let has = |t: &str| expected.iter().any(|e| e == t);
                if let Some(p) = prev {
                    // `;` missing: the previous statement ends on an earlier line, or right
                    // before the next one on the same line (`f() g();`).
                    let ends_stmt = matches!(p.1, Tok::RParen)
                        || matches!(p.1, Tok::Kw(Kw::Break | Kw::Exit | Kw::Drop | Kw::Return));
                    let can_end = ends_stmt
                        || matches!(
                            p.1,
                            Tok::Ident(_)
                                | Tok::Int(_)
                                | Tok::Str(_)
                                | Tok::Dollar(_)
                                | Tok::Select(_)
                                | Tok::KwValue(_)
                                | Tok::Ip(_)
                                | Tok::IpNet(..)
                        );
                    let new_line =
                        can_end && p.0.file == lo.file && self.line_of(p.2) < self.line_of(lo);
                    if has("\";\"") && tok != Tok::Semi && (new_line || ends_stmt) {
                        let at = Span::new(p.2, p.2);
                        return Some(Diagnostic::error(at, format!("missing `;` before {tok}")));
                    }
                    if has("\")\"") && matches!(tok, Tok::LBrace | Tok::Semi) {
                        return Some(Diagnostic::error(here, format!("missing `)` before {tok}")));
                    }
                    if has("\")\"") && new_line {
                        let at = Span::new(p.2, p.2);
                        return Some(Diagnostic::error(at, format!("missing `)` before {tok}")));
                    }
                }
                if tok == Tok::Kw(Kw::Else) {
                    return Some(Diagnostic::error(here, "`else` without a matching `if`"));
                }
                let mut msg = format!("unexpected {tok}");
                if let Some(list) = expected_list(&expected) {
                    msg.push_str(&format!("; expected {list}"));
                }
                Some(Diagnostic::error(here, msg))
            }
            ParseError::UnrecognizedEof { expected, .. } => {
                if self.truncated {
                    return None;
                }
                let mut msg = "unexpected end of file".to_string();
                if let Some(list) = expected_list(&expected) {
                    msg.push_str(&format!("; expected {list}"));
                }
                Some(Diagnostic::error(self.eof_span(), msg))
            }
            ParseError::ExtraToken {
                token: (lo, tok, hi),
            } => Some(Diagnostic::error(
                Span::new(lo, hi),
                format!("unexpected {tok}"),
            )),
            ParseError::InvalidToken { location } => Some(Diagnostic::error(
                Span::new(location, location),
                "invalid token",
            )),
            ParseError::User { error } => Some(Diagnostic::error(self.eof_span(), error)),
        }
    }
}
