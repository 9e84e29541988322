//! The script behind the spine's per-process seam (`ser_children::ChildInit`):
//! each SIP worker parses a datagram, builds a [`MsgCtx`] and runs the
//! request or reply path; replies and forwards leave through the socket the
//! message came in on (inherited, shared by every child).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use ser_children::{ChildInit, ListenSocket, Rank, SipHandler};
use ser_modules::runtime::ctx::{Env, MsgCtx};
use ser_modules::runtime::transport::{Dest, Listen, Myself, Proto, Transport};
use ser_sip::SipMsg;

use super::Script;

/// A loaded script plus what it needs to know about us.
pub struct ScriptInit {
    script: Arc<Script>,
    myself: Myself,
    listen: Vec<Listen>,
}

impl ScriptInit {
    /// `myself` holds our listen addresses and aliases; `listen` the sockets
    /// (with advertised names).
    pub fn new(script: Script, myself: Myself, listen: Vec<Listen>) -> ScriptInit {
        ScriptInit { script: script.into_shared(), myself, listen }
    }

    /// The script.
    pub fn script(&self) -> &Script {
        &self.script
    }
}

fn rank_number(rank: Rank) -> i32 {
    // SER's PROC_* ranks: main 0, timer -1, ctl/fifo -2, tcp main -4, workers 1..
    match rank {
        Rank::Main => 0,
        Rank::Timer => -1,
        Rank::Ctl => -2,
        Rank::TcpMain => -4,
        Rank::Sip(n) => n as i32,
    }
}

impl ChildInit for ScriptInit {
    fn init(&self, rank: Rank, _desc: &str) -> Result<(), String> {
        self.script.child_init(rank_number(rank))
    }

    fn handler(&self, _rank: Rank) -> Box<dyn SipHandler> {
        Box::new(Worker {
            script: self.script.clone(),
            myself: self.myself.clone(),
            listen: self.listen.clone(),
            envs: HashMap::new(),
        })
    }
}

/// Sends over one inherited UDP socket.
struct UdpTransport(UdpSocket);

impl Transport for UdpTransport {
    fn send(&self, buf: &[u8], dst: &Dest) -> io::Result<()> {
        if dst.proto != Proto::Udp {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "only UDP sending is wired yet"));
        }
        self.0.send_to(buf, dst.addr).map(|_| ())
    }
}

struct Worker {
    script: Arc<Script>,
    myself: Myself,
    listen: Vec<Listen>,
    /// One env per receiving socket (its transport is that socket).
    envs: HashMap<SocketAddr, Env>,
}

impl Worker {
    fn env_for(&mut self, sock: &ListenSocket) -> Option<&Env> {
        let addr = sock.addr();
        if !self.envs.contains_key(&addr) {
            let udp = sock.udp()?.try_clone().ok()?;
            let mut myself = self.myself.clone();
            myself.add(&addr.ip().to_string(), Some(addr.port()));
            let mut env = Env::new(Arc::new(UdpTransport(udp)), myself, self.listen.clone());
            env.cfg = self.script.cfg();
            self.envs.insert(addr, env);
        }
        self.envs.get(&addr)
    }
}

impl SipHandler for Worker {
    fn on_datagram(&mut self, buf: &[u8], src: SocketAddr, sock: &ListenSocket) {
        let msg = match SipMsg::parse(buf.to_vec()) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("dropping unparsable message from {src}: {e}");
                return;
            }
        };
        let script = self.script.clone();
        let local = sock.addr();
        let Some(env) = self.env_for(sock) else {
            log::error!("socket {} is not a UDP socket", sock.name());
            return;
        };
        let mut ctx = MsgCtx::new(msg, env, src, local, Proto::Udp);
        if ctx.is_request() {
            script.run_request(&mut ctx);
        } else {
            script.run_reply(&mut ctx);
        }
    }
}
