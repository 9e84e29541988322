//! Harness shared by the root integration tests: scratch directories, the
//! routing engine run in-process with a recording transport, and the real
//! `ser` binary as a child process.  A test file says `mod support;`; Cargo
//! builds `tests/support/mod.rs` only as that module, never as a test of its
//! own.

// Each test binary compiles this whole module but uses only some of it; the
// helpers another binary uses would otherwise warn as dead code.
#![allow(dead_code)]

pub mod engine;
pub mod mariadb;
pub mod pg;
pub mod proc;
pub mod registrar_db;
pub mod sipp;
pub mod tmp;
