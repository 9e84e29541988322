//! `ser-fifo`: SER's management plumbing.
//!
//! - [`rpc`]: the transport-neutral RPC API — [`RpcValue`], [`RpcFault`], the [`RpcCtx`] trait
//!   handlers read their parameters from and add their reply to, and the [`RpcRegistry`] that
//!   the core and the modules register their methods in (replaces `core/rpc.h`,
//!   `core/rpc_lookup.c` and the `system.*` methods of `core/core_cmd.c`).
//! - [`binrpc`]: the binrpc wire codec, pure (no I/O), wire-compatible with Kamailio's ctl
//!   module and `kamcmd` (replaces `modules/ctl/binrpc.h`, `binrpc.c`, `binrpc_run.c`).
//! - [`ctl`]: the ctl server — listeners on `unixs:`/`unixd:`/`tcp:`/`udp:` addresses and a
//!   single-threaded poll loop serving the registry over binrpc (replaces `modules/ctl/ctl.c`,
//!   `init_socks.c`, `io_listener.c`).
//! - [`fifo_server`]: the FIFO text protocol of SER (`fifo=`) and Kamailio's `mi_fifo`,
//!   serving the same registry (replaces `modules/ctl/fifo_server.c`).
//! - [`jsonrpc`]: JSON-RPC 2.0 as Kamailio's `jsonrpcs` (FIFO with `reply_name`, datagrams),
//!   served by the ctl loop on `json:` addresses.
//! - [`client`]: the binrpc client side and kamcmd-style reply printing used by the `sercmd`
//!   binary (replaces `utils/sercmd/sercmd.c`, today's `utils/kamcmd/kamcmd.c`).
//!
//! # Writing a method
//!
//! ```
//! use ser_fifo::{RpcRegistry, RpcValue};
//!
//! let mut registry = RpcRegistry::new(); // has system.listMethods/methodHelp/methodSignature
//! registry
//!     .register("core.echo", &["Returns back its parameters."], |ctx| {
//!         for p in ctx.params().to_vec() {
//!             ctx.add(p);
//!         }
//!         Ok(())
//!     })
//!     .unwrap();
//! let reply = registry.call("core.echo", vec![RpcValue::Int(1)]).unwrap();
//! assert_eq!(reply, vec![RpcValue::Int(1)]);
//! ```
//!
//! The ctl process then runs [`serve`] on its [`CtlListener`]s (`CtlListener::bind("unixs:/tmp/ser_ctl")`).
//!
//! # Differences from Kamailio (user-visible)
//!
//! - [`RpcValue::Array`] goes on the wire as a STRUCT of bare values — what Kamailio's
//!   `rpc->add("[")` produces, and the only array kamcmd can print inside a struct; a decoded
//!   struct whose members are all unnamed comes back as an `Array`. [`RpcValue::Null`] is sent
//!   as an empty BYTES record.
//! - Parameter scanning always converts between numbers and numeric strings (as ctl's
//!   `autoconversion=1`), since the FIFO only carries text.
//! - The reply limit defaults to 120 KiB ([`CtlConfig::max_reply`]) instead of 32 KiB, so big
//!   dumps still fit kamcmd's 128 KiB buffer; larger replies are a `500 reply too big` fault.
//! - `sercmd` exits 1 on a fault and 2 on a usage/connection error (kamcmd exits 0 on faults),
//!   stops option parsing at the first non-option (so `sercmd core.printi -5` works), accepts
//!   `i:` besides `s:`, and has no tab completion (it reads plain lines).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binrpc;
pub mod client;
pub mod ctl;
pub mod fifo_server;
pub mod jsonrpc;
pub mod rpc;

pub use ctl::{serve, serve_with, CtlAddr, CtlConfig, CtlError, CtlListener, SocketPerms};
pub use fifo_server::serve_fifo;
pub use rpc::{
    CallCtx, RegistryError, RpcCtx, RpcFault, RpcHandler, RpcMethod, RpcRegistry, RpcValue,
};
