//! `ser-lexer`: the config lexer and preprocessor of the Rust SER.
//!
//! Replaces Kamailio's `core/cfg.lex` (the flex scanner with its start conditions) and
//! `core/ppcfg.c` (the define and subst tables). It is a hand-written modal scanner that runs
//! the preprocessor while it cuts tokens, and produces `(Pos, Tok, Pos)` triples for the
//! lalrpop grammar in `ser-parser`:
//!
//! - `#!define NAME [value]` (`#!def`, `#!trydef`, `#!redefine`), `#!undef`, `-A` defines
//!   ([`LexOptions::defines`]); an identifier that names a define is replaced by the
//!   tokens of its value;
//! - `#!ifdef` / `#!ifndef` / `#!else` / `#!endif`, nested; inactive text is never
//!   tokenised (it may hold SQL or unbalanced quotes);
//! - `include_file "f"` / `import_file "f"` (with or without `#!`), relative to the
//!   including file, with cycle detection; `import_file` of a missing file is not an error;
//! - `#!subst "/re/repl/flags"`, `#!substdef "/ID/value/"`, `#!substdefs`;
//! - dialect markers `#!SER`, `#!KAMAILIO`, `#!OPENSER`, `#!ALL`, `#!MAXCOMPAT`.
//!
//! Lexing never stops at the first problem: errors are collected in [`Lexed::errors`] with
//! their [`Span`]s and the scan goes on, so the parser can report more.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod diag;
pub mod preproc;
pub mod scan;
pub mod span;
pub mod subst;
pub mod token;

pub use diag::{render, Diagnostic, Severity};
pub use preproc::{lex_file, lex_str, parse_define_arg, Dialect, LexOptions, Lexed, Spanned};
pub use span::{FileId, Pos, SourceFile, SourceMap, Span};
pub use token::{Keyword, Kw, Tok};
