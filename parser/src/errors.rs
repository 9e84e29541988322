//! Turning lalrpop's parse errors into [`Diagnostic`]s, without cascades.
//!
//! After an error the parser resynchronises at the next statement or top-level item. Like
//! bison's `yyerrok` rule, an error is only reported if at least [`QUIET_TOKENS`] tokens
//! were parsed since the previous one resumed; an error right after a lexer error (on the
//! bad character's spot) is a consequence and is dropped too.

use std::collections::HashMap;

use lalrpop_util::{ErrorRecovery, ParseError};
use ser_lexer::{Diagnostic, FileId, Pos, Span, Spanned, Tok};

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

fn expected_list(expected: &[String]) -> Option<String> {
    if expected.is_empty() || expected.len() > 5 {
        return None;
    }
    let names: Vec<String> = expected.iter().map(|e| expected_name(e)).collect();
    Some(match names.len() {
        1 => names[0].clone(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    })
}

/// Context for translating errors: the token stream (to find the token before an error).
pub struct Translator<'a> {
    toks: &'a [Spanned],
    index: HashMap<Pos, usize>,
    lex_errors: Vec<Span>,
    truncated: Vec<FileId>,
}

impl<'a> Translator<'a> {
    /// `toks` is the stream that was parsed; `lex_errors` the spans of lexer errors.
    pub fn new(
        toks: &'a [Spanned],
        lex_errors: Vec<Span>,
        truncated: Vec<FileId>,
    ) -> Translator<'a> {
        let mut index = HashMap::new();
        for (i, t) in toks.iter().enumerate() {
            index.entry(t.0).or_insert(i);
        }
        Translator {
            toks,
            index,
            lex_errors,
            truncated,
        }
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
        for (err, dropped) in all {
            let idx = self.token_index(&err);
            if let (Some(i), Some(r)) = (idx, resume_at) {
                if i < r + QUIET_TOKENS {
                    resume_at = Some(i + dropped);
                    continue;
                }
            }
            if let Some(i) = idx {
                resume_at = Some(i + dropped);
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
                self.index.get(&token.0).copied()
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

    fn diagnostic(&self, err: PErr, idx: Option<usize>) -> Option<Diagnostic> {
        match err {
            ParseError::UnrecognizedToken {
                token: (lo, tok, hi),
                expected,
            } => {
                if idx.is_some_and(|i| self.after_lex_error(i)) {
                    return None;
                }
                let semi = expected.iter().any(|e| e == "\";\"");
                if semi && tok != Tok::Semi {
                    // Point where the `;` belongs: the end of the previous token.
                    let prev = idx
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|p| self.toks.get(p));
                    let span = prev.map_or(Span::new(lo, hi), |p| Span::new(p.2, p.2));
                    return Some(Diagnostic::error(span, format!("missing `;` before {tok}")));
                }
                let mut msg = format!("unexpected {tok}");
                if let Some(list) = expected_list(&expected) {
                    msg.push_str(&format!("; expected {list}"));
                }
                Some(Diagnostic::error(Span::new(lo, hi), msg))
            }
            ParseError::UnrecognizedEof { expected, .. } => {
                if !self.truncated.is_empty() {
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
