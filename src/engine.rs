//! The seam between the spine and the routing engine.
//!
//! Start-up calls [`load`] once in main, after the config is parsed and the
//! globals are final, and before anything is forked (`-c` stops right after
//! it). What it returns is a [`ChildInit`]: every forked process calls its
//! `init(rank, desc)` (the modules' child init), SIP workers get their
//! message handler from `handler(rank)`, the timer process runs its
//! `timers()`. The routing engine plugs in by making this function build its
//! script (fixups included) and return it, e.g.
//! `crate::route::load(parsed, &opts).map(|s| Box::new(ScriptInit::new(s, ..)) as _)`.
//!
//! Until then a received message is logged at debug level and dropped
//! ([`NullInit`]).

use ser_children::{ChildInit, NullInit};
use ser_parser::{Diagnostic, Parsed};

use crate::globals::Globals;
use crate::listen::BindAddr;

/// Builds the per-process behaviour from the parsed config.
/// `binds` are the resolved listen addresses (what `myself` matches); the
/// bound sockets themselves reach the engine later, through
/// [`ChildInit::init_main`] and `ser_children::socket::all()`.
pub fn load(
    parsed: &Parsed,
    globals: &Globals,
    binds: &[BindAddr],
) -> Result<Box<dyn ChildInit>, Vec<Diagnostic>> {
    let _ = (parsed, globals, binds);
    Ok(Box::new(NullInit))
}
