//! ser-children (placeholder until its issue lands).
