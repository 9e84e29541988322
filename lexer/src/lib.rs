//! ser-lexer (placeholder until its issue lands).
