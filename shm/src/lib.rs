//! ser-shm (placeholder until its issue lands).
