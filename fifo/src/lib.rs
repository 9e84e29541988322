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
//! - [`client`]: the binrpc client side and kamcmd-style reply printing used by the `sercmd`
//!   binary (replaces `utils/sercmd/sercmd.c`, today's `utils/kamcmd/kamcmd.c`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binrpc;
pub mod client;
pub mod ctl;
pub mod fifo_server;
pub mod rpc;

pub use ctl::{serve, serve_with, CtlAddr, CtlConfig, CtlError, CtlListener, SocketPerms};
pub use fifo_server::serve_fifo;
pub use rpc::{
    CallCtx, RegistryError, RpcCtx, RpcFault, RpcHandler, RpcMethod, RpcRegistry, RpcValue,
};
