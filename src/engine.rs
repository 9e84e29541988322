//! The seam between the spine and the routing engine.
//!
//! Start-up calls [`load`] once in main, after the config is parsed and the
//! globals are final, and before anything is forked (`-c` stops right after
//! it): it compiles the script with `route::load` (every fixup runs here) and
//! wraps it as the [`ChildInit`] the process model drives:
//!
//! * `init_main(sockets)`: in main, after shm is mapped and the sockets are
//!   bound, before the first fork: the modules' `mod_init`;
//! * `init(rank, desc)`: in each child right after fork: the modules' child
//!   init;
//! * `handler(rank)`: the message handler of a SIP worker (parse, run the
//!   request or reply route);
//! * `timers()`: what the timer process runs;
//! * `destroy()`: in main after every child stopped.

use ser_children::{ChildInit, Proto};
use ser_parser::{Diagnostic, Parsed};

use crate::globals::Globals;
use crate::listen::BindAddr;
use crate::route::serve::ScriptInit;
use crate::route::{self, Listen, LoadOptions, Myself};

/// Builds the per-process behaviour from the parsed config. `binds` are the
/// resolved listen addresses: with the `alias=` values they make up what
/// `myself` matches.
pub fn load(
    parsed: &Parsed,
    globals: &Globals,
    binds: &[BindAddr],
) -> Result<Box<dyn ChildInit>, Vec<Diagnostic>> {
    let script = route::load(parsed, &LoadOptions::default())?;
    for w in &script.warnings {
        log::warn!("{}", w.headline(&parsed.sources));
    }
    let mut myself = Myself::default();
    for b in binds {
        myself.add(&b.addr.ip().to_string(), Some(b.addr.port()));
    }
    for alias in &globals.aliases {
        for host in &alias.hosts {
            myself.add(host, alias.port);
        }
    }
    let listen = binds
        .iter()
        .map(|b| Listen {
            proto: engine_proto(b.proto),
            addr: b.addr,
            advertise: None,
        })
        .collect();
    Ok(Box::new(ScriptInit::new(script, myself, listen)))
}

fn engine_proto(p: Proto) -> route::Proto {
    match p {
        Proto::Udp => route::Proto::Udp,
        Proto::Tcp => route::Proto::Tcp,
        Proto::Tls => route::Proto::Tls,
        Proto::Sctp => route::Proto::Sctp,
    }
}
