//! `ser-lexer`: the config lexer and preprocessor of the Rust SER.
//!
//! Replaces Kamailio's `core/cfg.lex` (the flex scanner with its start conditions) and
//! `core/ppcfg.c` (the define table). It is a hand-written modal scanner that runs the
//! preprocessor (`#!define`, `#!ifdef`, `#!subst`, `include_file`, `-A` defines) while it
//! cuts tokens, and emits `(Pos, Tok, Pos)` triples for the lalrpop grammar in `ser-parser`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod diag;
pub mod span;
pub mod token;

pub use diag::{render, Diagnostic, Severity};
pub use span::{FileId, Pos, SourceFile, SourceMap, Span};
pub use token::{Keyword, Kw, Tok};
