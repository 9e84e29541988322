//! `ser-parser`: the config grammar, syntax tree and diagnostics of the Rust SER.
//!
//! Replaces Kamailio's `core/cfg.y`. The pipeline is:
//!
//! 1. [`ser_lexer`] preprocesses and lexes (defines, `#!ifdef`, includes) into spanned
//!    tokens;
//! 2. two token passes ([`tokens`]) balance braces and mark the end of top-level values;
//! 3. the lalrpop grammar (`src/cfg.lalrpop`) builds the [`ast`], recovering at statement and
//!    item boundaries so that every error is reported, each once;
//! 4. checks that need names (core parameters, modparam arguments, route types) run in the
//!    grammar actions ([`actions`]).
//!
//! The 2001 `sip_router.cfg` regex table is recognised before lexing and returned as
//! [`ast::Config::LegacyTable`].
//!
//! ```
//! let parsed = ser_parser::parse_str("t.cfg", "debug=3\nroute { drop; }\n", &Default::default())
//!     .unwrap();
//! assert_eq!(parsed.config.items().len(), 2);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod actions;
pub mod ast;
pub mod core_params;
pub mod dump;
pub mod errors;
pub mod legacy;
pub mod tokens;
pub mod values;
pub mod vars;

#[allow(clippy::all, missing_docs, unused_parens, dead_code)]
mod grammar {
    lalrpop_util::lalrpop_mod!(cfg);
    pub use cfg::*;
}

use std::path::{Path, PathBuf};

pub use ser_lexer::{
    parse_define_arg, render, Diagnostic, Dialect, FileId, Keyword, Pos, Severity, SourceMap, Span,
};

/// Options for one parse.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// `-A NAME` / `-A NAME=value` command-line defines, applied before the file is read.
    pub defines: Vec<(String, Option<String>)>,
    /// Extra directories searched for `include_file`/`import_file` when the file is not found
    /// relative to the including file.
    pub include_dirs: Vec<PathBuf>,
}

/// The result of a successful parse.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The syntax tree.
    pub config: ast::Config,
    /// Every file read (main + includes), for turning spans into `file:line:column`.
    pub sources: SourceMap,
    /// Warnings (e.g. Kamailio core parameters this server ignores).
    pub warnings: Vec<Diagnostic>,
    /// The `#!SER` / `#!KAMAILIO` / ... marker, if the file has one.
    pub dialect: Option<Dialect>,
}

/// Everything a parse found, successful or not: the tree (if there were no errors), the
/// sources (needed to render diagnostics), errors and warnings.
#[derive(Clone, Debug)]
pub struct Report {
    /// The syntax tree, present only when `errors` is empty.
    pub config: Option<ast::Config>,
    /// Every file read, for [`render`].
    pub sources: SourceMap,
    /// Errors, sorted by position.
    pub errors: Vec<Diagnostic>,
    /// Warnings, sorted by position.
    pub warnings: Vec<Diagnostic>,
    /// The dialect marker, if any.
    pub dialect: Option<Dialect>,
}

impl Report {
    /// `Ok(Parsed)` without errors, else `Err(errors followed by warnings)`.
    pub fn into_result(self) -> Result<Parsed, Vec<Diagnostic>> {
        match self.config {
            Some(config) if self.errors.is_empty() => Ok(Parsed {
                config,
                sources: self.sources,
                warnings: self.warnings,
                dialect: self.dialect,
            }),
            _ => {
                let mut all = self.errors;
                all.extend(self.warnings);
                Err(all)
            }
        }
    }

    /// All errors then warnings, each rendered with its source line and caret.
    pub fn render(&self) -> String {
        self.errors
            .iter()
            .chain(&self.warnings)
            .map(|d| render(&self.sources, d))
            .collect()
    }
}

/// Parses a config file (following its includes).
///
/// On failure returns every error found (sorted by position), then the warnings. To print
/// them with file names and source lines, use [`parse_file_report`] instead, which keeps
/// the [`SourceMap`].
pub fn parse_file(path: &Path, opts: &ParseOptions) -> Result<Parsed, Vec<Diagnostic>> {
    parse_file_report(path, opts).into_result()
}

/// Parses config text; `name` is used in diagnostics and its directory is the base for
/// relative includes.
pub fn parse_str(name: &str, text: &str, opts: &ParseOptions) -> Result<Parsed, Vec<Diagnostic>> {
    parse_str_report(name, text, opts).into_result()
}

/// [`parse_file`], returning a [`Report`].
pub fn parse_file_report(path: &Path, opts: &ParseOptions) -> Report {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_str_report(&name, &String::from_utf8_lossy(&bytes), opts),
        Err(e) => {
            let mut sources = SourceMap::new();
            let id = sources.add(name.clone(), String::new(), None);
            let span = Span {
                file: id,
                start: 0,
                end: 0,
            };
            Report {
                config: None,
                sources,
                errors: vec![Diagnostic::error(
                    span,
                    format!("cannot read config file `{name}`: {e}"),
                )],
                warnings: Vec::new(),
                dialect: None,
            }
        }
    }
}

/// [`parse_str`], returning a [`Report`].
pub fn parse_str_report(name: &str, text: &str, opts: &ParseOptions) -> Report {
    if legacy::looks_like_table(text) {
        let mut sources = SourceMap::new();
        let id = sources.add(name.to_string(), text.to_string(), None);
        let rules = legacy::parse_table(id, text);
        return Report {
            config: Some(ast::Config::LegacyTable(rules)),
            sources,
            errors: Vec::new(),
            warnings: Vec::new(),
            dialect: None,
        };
    }
    let lex_opts = ser_lexer::LexOptions {
        defines: opts.defines.clone(),
        include_dirs: opts.include_dirs.clone(),
    };
    parse_lexed(ser_lexer::lex_str(name, text, &lex_opts))
}

/// Parses an already preprocessed token stream (see [`ser_lexer::lex_str`]).
pub fn parse_lexed(lexed: ser_lexer::Lexed) -> Report {
    let mut errors = lexed.errors;
    let mut warnings = lexed.warnings;
    let lex_error_spans: Vec<Span> = errors.iter().map(|d| d.span).collect();
    let truncated = !lexed.truncated.is_empty();
    let cut_pos = lexed
        .cut_at_token
        .and_then(|k| lexed.tokens.get(k))
        .map(|t| t.0);
    let (toks, synthetic) = tokens::repair_braces(lexed.tokens, &mut errors, truncated);
    let toks = tokens::mark_value_ends(toks, &lexed.sources);
    if let Some(d) = tokens::check_complexity(&toks) {
        errors.push(d);
        errors.sort_by_key(|d| (d.span.file, d.span.start, d.span.end));
        return Report {
            config: None,
            sources: lexed.sources,
            errors,
            warnings,
            dialect: lexed.dialect,
        };
    }

    let mut sink = actions::Sink {
        dialect: lexed.dialect,
        ..Default::default()
    };
    let parser = grammar::ConfigParser::new();
    let result = parser.parse(&mut sink, toks.iter().cloned().map(Ok::<_, String>));
    let (items, fatal) = match result {
        Ok(items) => (items, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let mut tr =
        errors::Translator::new(&toks, &lexed.sources, lex_error_spans, truncated, synthetic);
    if let Some(p) = cut_pos {
        tr.quiet_from(toks.iter().position(|t| t.0 == p).unwrap_or(toks.len()));
    }
    let failed = fatal.is_some() || !sink.recovered.is_empty();
    errors.extend(tr.translate(std::mem::take(&mut sink.recovered), fatal));
    if failed && errors.is_empty() {
        // Every syntax error was judged a consequence of another; never accept the file.
        errors.push(Diagnostic::error(tr.end_span(), "syntax error"));
    }
    for d in sink.diags {
        match d.severity {
            Severity::Error => errors.push(d),
            Severity::Warning => warnings.push(d),
        }
    }
    let key = |d: &Diagnostic| (d.span.file, d.span.start, d.span.end);
    warnings.sort_by_key(key);
    errors.sort_by_key(key);
    errors.dedup();
    let config = errors.is_empty().then_some(ast::Config::Script { items });
    Report {
        config,
        sources: lexed.sources,
        errors,
        warnings,
        dialect: lexed.dialect,
    }
}

/// Parses a single expression (`$rU == "alice" && src_ip == 10.0.0.0/8`), e.g. for RPC
/// commands or tests. Defines and `#!` directives are not available. Errors come back
/// rendered (with the caret under the problem).
pub fn parse_expr(text: &str) -> Result<ast::Expr, String> {
    let lexed = ser_lexer::lex_str("<expr>", text, &ser_lexer::LexOptions::default());
    let mut errors = lexed.errors;
    let toks = lexed.tokens;
    if let Some(d) = tokens::check_complexity(&toks) {
        errors.push(d);
    }
    let mut sink = actions::Sink {
        dialect: lexed.dialect,
        ..Default::default()
    };
    let mut expr = None;
    if errors.is_empty() {
        let parser = grammar::ExprParser::new();
        let result = parser.parse(&mut sink, toks.iter().cloned().map(Ok::<_, String>));
        let fatal = match result {
            Ok(e) => {
                expr = Some(e);
                None
            }
            Err(e) => Some(e),
        };
        let tr = errors::Translator::new(&toks, &lexed.sources, Vec::new(), false, 0);
        errors.extend(tr.translate(std::mem::take(&mut sink.recovered), fatal));
        errors.extend(
            sink.diags
                .into_iter()
                .filter(|d| d.severity == Severity::Error),
        );
    }
    match expr {
        Some(e) if errors.is_empty() => Ok(e),
        _ => Err(errors.iter().map(|d| render(&lexed.sources, d)).collect()),
    }
}
