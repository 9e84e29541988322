//! ser-parser (placeholder until its issue lands).
