//! ser-fifo (placeholder until its issue lands).
