//! The ser core library: start-up of the `ser` binary (replaces SER's
//! `main.c` start-up sequence and its command-line handling), the core
//! globals (`globals.h`), listen address parsing (`socket_info.c`'s
//! `-l` parsing), logging (`dprint.c`), and the seam to the routing engine.
#![forbid(unsafe_code)]

pub mod cfg_runtime;
pub mod config;
pub mod core_rpc;
pub mod ctl;
pub mod engine;
pub mod flags;
pub mod globals;
pub mod listen;
pub mod logging;
pub mod route;
pub mod startup;
pub mod transports;
pub mod version;
