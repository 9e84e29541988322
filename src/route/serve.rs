//! The script behind the spine's per-process seam (`ser_children::ChildInit`):
//! modules' init in main, per-child init, and for each SIP worker a handler
//! that parses a datagram, builds a [`MsgCtx`] and runs the request or reply
//! path.  Everything is sent through the sockets start-up installed
//! (`ser_children::socket::all()`, inherited by every child).
//!
//! Start-up seam (in `src/engine.rs`):
//! ```text
//! let binds: Vec<_> = binds.iter().map(|b| (b.proto.as_str(), b.addr)).collect();
//! route::serve::load(parsed, &binds, &[], &route::LoadOptions::default())
//!     .map(|init| Box::new(init) as Box<dyn ChildInit>)
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ser_children::{ChildInit, ListenSocket, Rank, SipHandler, TimerCallback};
use ser_modules::runtime::ctx::{Env, MsgCtx};
use ser_modules::runtime::transport::{Dest, Listen, Myself, Proto, Transport};
use ser_parser::{Diagnostic, Parsed};
use ser_sip::SipMsg;

use super::{LoadOptions, Script};

/// A loaded script plus what it needs to know about us.
pub struct ScriptInit {
    script: Arc<Script>,
    myself: Myself,
    listen: Vec<Listen>,
}

/// Load the config and wrap it for the spine.  `binds` are the resolved listen
/// addresses as `(proto name, address)`; `aliases` are `alias=` host[:port]s.
pub fn load(
    parsed: &Parsed,
    binds: &[(&str, SocketAddr)],
    aliases: &[(String, Option<u16>)],
    opts: &LoadOptions,
) -> Result<ScriptInit, Vec<Diagnostic>> {
    let script = super::load(parsed, opts)?;
    let mut myself = Myself::default();
    let mut listen = Vec::new();
    for (proto, addr) in binds {
        myself.add(&addr.ip().to_string(), Some(addr.port()));
        let proto = Proto::from_name(proto).unwrap_or(Proto::Udp);
        listen.push(Listen {
            proto,
            addr: *addr,
            advertise: None,
        });
    }
    for (host, port) in aliases {
        myself.add(host, *port);
    }
    Ok(ScriptInit::new(script, myself, listen))
}

impl ScriptInit {
    /// `myself` holds our listen addresses and aliases; `listen` the sockets
    /// (with advertised names).
    pub fn new(script: Script, myself: Myself, listen: Vec<Listen>) -> ScriptInit {
        ScriptInit {
            script: script.into_shared(),
            myself,
            listen,
        }
    }

    /// The script.
    pub fn script(&self) -> &Script {
        &self.script
    }

    fn env(&self) -> Env {
        let mut env = Env::new(
            Arc::new(SocketsTransport),
            self.myself.clone(),
            self.listen.clone(),
        );
        env.cfg = self.script.cfg();
        env
    }
}

fn rank_number(rank: Rank) -> i32 {
    // SER's PROC_* ranks: main 0, timer -1, ctl/fifo -2, tcp main -4, workers 1..
    match rank {
        Rank::Main => 0,
        Rank::Timer => -1,
        Rank::Ctl => -2,
        Rank::TcpMain => -4,
        Rank::Sip(n) => i32::try_from(n).unwrap_or(i32::MAX),
    }
}

impl ChildInit for ScriptInit {
    fn init_main(&self, _sockets: &'static [ListenSocket]) -> Result<(), String> {
        self.script.init_modules()
    }

    fn destroy(&self) {
        self.script.modules().destroy_all();
    }

    fn init(&self, rank: Rank, _desc: &str) -> Result<(), String> {
        self.script.child_init(rank_number(rank))
    }

    fn handler(&self, _rank: Rank) -> Box<dyn SipHandler> {
        Box::new(Worker {
            script: self.script.clone(),
            env: self.env(),
        })
    }

    fn timers(&self) -> Vec<Box<dyn TimerCallback>> {
        vec![Box::new(ModuleTicks {
            script: self.script.clone(),
            env: self.env(),
        })]
    }
}

/// Sends over the installed UDP sockets: the one asked for (`force_send_socket`,
/// the receiving socket), else the first of the destination's address family.
struct SocketsTransport;

impl Transport for SocketsTransport {
    fn send(&self, buf: &[u8], dst: &Dest) -> io::Result<()> {
        if dst.proto != Proto::Udp {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only UDP sending is wired yet",
            ));
        }
        let socks = ser_children::socket::all();
        let udp = |s: &&ListenSocket| s.udp().is_some();
        let sock = dst
            .send_sock
            .and_then(|a| socks.iter().filter(udp).find(|s| s.addr() == a))
            .or_else(|| {
                socks
                    .iter()
                    .filter(udp)
                    .find(|s| s.addr().is_ipv4() == dst.addr.is_ipv4())
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no UDP socket to send from"))?;
        sock.send_to(buf, dst.addr).map(|_| ())
    }
}

struct Worker {
    script: Arc<Script>,
    env: Env,
}

impl SipHandler for Worker {
    fn on_datagram(&mut self, buf: &[u8], src: SocketAddr, sock: &ListenSocket) {
        // parse, then SER's checks before the script (key headers present and
        // parseable, Content-Length consistent)
        let parsed = SipMsg::parse(buf.to_vec()).and_then(|m| m.validate().map(|()| m));
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                // SER answers a broken request it can still identify with 400
                match ser_sip::bad_message_reaction(buf, &e, Some(src)) {
                    ser_sip::Reaction::Reply { code, bytes } => {
                        log::info!("bad request from {src} ({e}): answering {code}");
                        if let Err(err) = sock.send_to(&bytes, src) {
                            log::warn!("cannot send {code} to {src}: {err}");
                        }
                    }
                    ser_sip::Reaction::Drop => {
                        log::debug!("dropping unparsable message from {src}: {e}")
                    }
                }
                return;
            }
        };
        let mut ctx = MsgCtx::new(msg, &self.env, src, sock.addr(), Proto::Udp);
        if ctx.is_request() {
            self.script.run_request(&mut ctx);
        } else {
            self.script.run_reply(&mut ctx);
        }
    }
}

/// The modules' timer hooks (tm retransmissions, usrloc expiry) in the timer process.
struct ModuleTicks {
    script: Arc<Script>,
    env: Env,
}

impl TimerCallback for ModuleTicks {
    fn interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn on_tick(&mut self, now: Instant) {
        self.script.modules().tick_all(&self.env, now);
    }
}
