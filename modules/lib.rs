//! ser-modules (placeholder until its issue lands).
