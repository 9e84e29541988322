//! `ser-modules`: the module interface of the Rust SER, the per-message runtime
//! every script function works on, and the built-in modules (one folder each).
//!
//! Replaces SER's `sr_module.c` (dlopen + `module_exports`) with a static
//! registry ([`registry`]), and the core parts of `pvapi.c`, `usr_avp.c`,
//! `select_core.c`, `flags.c`, `msg_translator.c` that modules share
//! ([`runtime`]).
//!
//! Adding a module: create `modules/<name>/mod.rs` with a unit struct that
//! implements [`iface::Module`] (name, params, functions with fixups), declare
//! it below and list it in [`registry::builtin`].
#![forbid(unsafe_code)]

pub mod iface;
pub mod registry;

/// The per-message runtime shared by the engine and the modules.
pub mod runtime {
    pub mod access;
    pub mod avp;
    pub mod build;
    pub mod cfg;
    pub mod ctx;
    pub mod dns;
    pub mod flags;
    pub mod flow;
    pub mod format;
    pub mod pvar;
    pub mod script_vars;
    pub mod select;
    pub mod transport;
    pub mod value;
}

pub mod acc;
pub mod acc_db;
pub mod alias_db;
pub mod auth;
pub mod auth_db;
pub mod avp;
pub mod avp_db;
pub mod corex;
pub mod counters;
pub mod ctl;
pub mod db;
pub mod debugger;
pub mod domain;
pub mod gflags;
pub mod htable;
pub mod jsonrpcs;
pub mod kex;
pub mod maxfwd;
pub mod nathelper;
pub mod permissions;
pub mod pike;
pub mod pipelimit;
pub mod presence;
pub mod presence_xml;
pub mod print;
pub mod pv;
pub mod registrar;
pub mod rr;
pub mod rtpengine;
pub mod rtpproxy;
pub mod sanity;
pub mod siputils;
pub mod sl;
pub mod speeddial;
pub mod textops;
pub mod textopsx;
pub mod tls;
pub mod tm;
pub mod tmx;
pub mod uri_db;
pub mod usrloc;
pub mod xhttp;
pub mod xlog;
pub mod xmlrpc;

pub use iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, RouteMask};
pub use runtime::ctx::{Env, MsgCtx};
pub use runtime::flow::Flow;
pub use runtime::transport::{Dest, Proto, Transport};
pub use runtime::value::Value;
