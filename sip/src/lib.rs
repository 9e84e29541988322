//! ser-sip (placeholder until its issue lands).
