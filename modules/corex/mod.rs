//! `corex`: Kamailio's core extensions, as a module name configs load.
//!
//! What Kamailio 5 configs use of it is in the core here already:
//! `append_branch` is a core function, and the `corex.debug` RPC is
//! registered by the core (src/core_rpc.rs).  The module has no parameters
//! and functions of its own yet (`send_data`, `sendx`, `set_recv_socket`,
//! `is_socket_name` are not built in).

use crate::iface::Module;

/// The `corex` module.
pub struct Corex;

impl Module for Corex {
    fn name(&self) -> &'static str {
        "corex"
    }
}
