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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ser_children::{ChildInit, ListenSocket, Rank, SipHandler, StreamReply, TimerCallback};
use ser_fifo::{CtlConfig, CtlListener, RpcFault, RpcRegistry, RpcValue};
use ser_modules::registry::Modules;
use ser_modules::runtime::cfg::CfgStore;
use ser_modules::runtime::ctx::{Env, MsgCtx};
use ser_modules::runtime::transport::{Dest, Listen, Myself, Proto, Transport};
use ser_modules::Value;
use ser_parser::{Diagnostic, Parsed};
use ser_sip::SipMsg;

use super::{LoadOptions, Script};

/// A loaded script plus what it needs to know about us.
pub struct ScriptInit {
    script: Arc<Script>,
    myself: Myself,
    listen: Vec<Listen>,
    core_rpc: Option<CoreRpcFn>,
    cfg: Arc<dyn CfgStore>,
    /// The management listeners bound in main, taken by the ctl process.
    ctl: Mutex<Option<(Vec<CtlListener>, CtlConfig)>>,
}

/// Registers the core's RPC methods; gets the loaded modules too.
pub type CoreRpcFn = Box<dyn Fn(&mut RpcRegistry, &Modules)>;

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
        let cfg: Arc<dyn CfgStore> = script.cfg();
        ScriptInit {
            script: script.into_shared(),
            myself,
            listen,
            core_rpc: None,
            cfg,
            ctl: Mutex::new(None),
        }
    }

    /// Methods the core serves besides the modules' (`core.ps`, `core.version`...),
    /// registered in the ctl process.
    pub fn with_core_rpc(mut self, register: CoreRpcFn) -> ScriptInit {
        self.core_rpc = Some(register);
        self
    }

    /// The cfg store workers read (`@cfg_get`), instead of the config's fixed
    /// values: the runtime store, refreshed at each message boundary.
    pub fn with_cfg(mut self, cfg: Arc<dyn CfgStore>) -> ScriptInit {
        self.cfg = cfg;
        self
    }

    /// Hands the management listeners (bound in main before fork) to the ctl
    /// process, which serves them with `config`.
    pub fn set_ctl(&self, listeners: Vec<CtlListener>, config: CtlConfig) {
        *self.ctl.lock().unwrap_or_else(|p| p.into_inner()) = Some((listeners, config));
    }

    /// Whether the modules ask for a ctl process (`ctl` / `mi_fifo` loaded
    /// with an address).  Start-up forks one when it bound any management
    /// listener ([`crate::ctl`], which adds the core `fifo=`).
    pub fn wants_ctl(&self) -> bool {
        !ser_modules::ctl::listen_addrs(self.script.modules()).is_empty()
    }

    /// The ctl process's registry: core methods, every loaded module's, and
    /// `cfg.get` when `cfg_rpc` is loaded.
    pub fn rpc_registry(&self) -> RpcRegistry {
        let mut reg = RpcRegistry::new();
        if let Some(core) = &self.core_rpc {
            core(&mut reg, self.script.modules());
        }
        self.script.modules().register_rpc(&mut reg);
        if self
            .script
            .modules()
            .iter()
            .any(|l| l.module.name() == "tls")
        {
            register_tls_list(&mut reg);
        }
        if reg.lookup("cfg.get").is_none()
            && self
                .script
                .modules()
                .iter()
                .any(|l| l.module.name() == "cfg_rpc")
        {
            let cfg = self.script.cfg();
            let doc: &'static [&'static str] =
                &["Returns the value of a cfg parameter: group, name."];
            let r = reg.register("cfg.get", doc, move |ctx| {
                let group = ctx.scan_str(0)?;
                let name = ctx.scan_str(1)?;
                match cfg.get(&group, &name) {
                    Some(Value::Int(i)) => {
                        ctx.add(RpcValue::Int(i32::try_from(i).unwrap_or(i32::MAX)))
                    }
                    Some(v) => ctx.add(RpcValue::Str(v.as_str().into_owned())),
                    None => {
                        return Err(RpcFault::new(
                            400,
                            format!("unknown cfg parameter {group}.{name}"),
                        ))
                    }
                }
                Ok(())
            });
            if let Err(e) = r {
                log::warn!("cfg.get not registered: {e:?}");
            }
        }
        reg
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
        env.cfg = self.cfg.clone();
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
        // xmlrpc's dispatch_rpc() and jsonrpcs' jsonrpc_dispatch() run in the SIP workers: each gets its own
        // copy of the ctl registry (the methods read shared state in shm).
        if self
            .script
            .modules()
            .iter()
            .any(|l| matches!(l.module.name(), "xmlrpc" | "jsonrpcs"))
        {
            ser_modules::xmlrpc::install_registry(self.rpc_registry());
        }
        Box::new(Worker {
            script: self.script.clone(),
            env: self.env(),
        })
    }

    fn run_ctl(&self, stop: &AtomicBool) {
        let reg = self.rpc_registry();
        let taken = self.ctl.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((listeners, config)) = taken.filter(|(l, _)| !l.is_empty()) else {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        };
        if let Err(e) = ser_fifo::serve_with(listeners, &reg, stop, &config) {
            log::error!("ctl: {e}");
        }
    }

    fn timers(&self) -> Vec<Box<dyn TimerCallback>> {
        vec![Box::new(ModuleTicks {
            script: self.script.clone(),
            env: self.env(),
        })]
    }
}

/// `tls.list`: the TLS connections the TCP workers hold (asked over
/// `ser_children::tls_relay`).
fn register_tls_list(reg: &mut RpcRegistry) {
    let doc: &'static [&'static str] =
        &["TLS connections: worker pid, peer, protocol version, cipher suite."];
    let r = reg.register("tls.list", doc, |ctx| {
        for (pid, peer, version, cipher) in ser_children::tls_relay::list_all() {
            ctx.add(RpcValue::Struct(vec![
                ("pid".into(), RpcValue::Int(pid)),
                ("peer".into(), RpcValue::Str(peer.to_string())),
                ("version".into(), RpcValue::Str(version)),
                ("cipher".into(), RpcValue::Str(cipher)),
            ]));
        }
        Ok(())
    });
    if let Err(e) = r {
        log::warn!("tls.list not registered: {e:?}");
    }
}

/// Sends over the installed UDP sockets: the one asked for (`force_send_socket`,
/// the receiving socket), else the first of the destination's address family;
/// TCP over a connection this process holds to the peer, else a new one
/// (`ser_children::tcp_conn`).
struct SocketsTransport;

impl Transport for SocketsTransport {
    fn send(&self, buf: &[u8], dst: &Dest) -> io::Result<()> {
        match super::blacklist::global() {
            Some(b) => b.guard(dst, || send_now(buf, dst)),
            None => send_now(buf, dst),
        }
    }
}

/// Sends at once, without the blacklist.
fn send_now(buf: &[u8], dst: &Dest) -> io::Result<()> {
    match dst.proto {
        Proto::Udp => {}
        Proto::Tcp => return ser_children::tcp_conn::send(dst.addr, buf),
        Proto::Tls => return ser_children::tls::send(dst.addr, buf),
        Proto::Sctp => return send_sctp(buf, dst),
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

/// SCTP: one message from the asked-for SCTP socket, else the first of the
/// destination's family (one-to-many sockets reach any peer).
fn send_sctp(buf: &[u8], dst: &Dest) -> io::Result<()> {
    let socks = ser_children::socket::all();
    let sctp = |s: &&ListenSocket| s.sctp().is_some();
    let sock = dst
        .send_sock
        .and_then(|a| socks.iter().filter(sctp).find(|s| s.addr() == a))
        .or_else(|| {
            socks
                .iter()
                .filter(sctp)
                .find(|s| s.addr().is_ipv4() == dst.addr.is_ipv4())
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no SCTP socket to send from (listen on sctp:...)",
            )
        })?;
    sock.send_to(buf, dst.addr).map(|_| ())
}

struct Worker {
    script: Arc<Script>,
    env: Env,
}

/// A received message that failed the pre-script checks but still parsed
/// as a request: `error_route` may handle it.
struct Faulty {
    msg: SipMsg,
    err: ser_sip::ParseError,
}

/// Parse and run SER's pre-script checks; on failure send what ser-sip says
/// (400 for a broken request that can still be answered) through `answer`,
/// unless the script has an `error_route` and the request parsed far enough
/// to run it (then it is returned as `Err`).  `stream`: the message came
/// over TCP/TLS, where an HTTP request (XML-RPC) is accepted too.
fn parse_checked(
    script: &Script,
    buf: &[u8],
    src: SocketAddr,
    stream: bool,
    answer: impl FnOnce(&[u8]),
) -> Option<Result<SipMsg, Faulty>> {
    let parsed = if stream {
        SipMsg::parse_stream(buf.to_vec())
    } else {
        SipMsg::parse(buf.to_vec())
    };
    let (msg, e) = match parsed {
        Ok(m) => match m.validate() {
            Ok(()) => return Some(Ok(m)),
            Err(e) => (Some(m), e),
        },
        Err(e) => (None, e),
    };
    if let Some(msg) = msg.filter(|m| m.is_request() && script.has_error_route()) {
        return Some(Err(Faulty { msg, err: e }));
    }
    match ser_sip::bad_message_reaction(buf, &e, Some(src)) {
        ser_sip::Reaction::Reply { code, bytes } => {
            log::info!("bad request from {src} ({e}): answering {code}");
            answer(&bytes);
        }
        ser_sip::Reaction::Drop => log::debug!("dropping unparsable message from {src}: {e}"),
    }
    None
}

/// `error_route` for a request that failed the checks, with `$err.*`: class
/// 1 (parser), level 3 (medium), the error, and the reply ser-sip would have
/// sent (400 Bad Request, or 505/413/414).
fn run_error_route(script: &Script, ctx: &mut MsgCtx<'_>, buf: &[u8], err: &ser_sip::ParseError) {
    let (code, reason) = match ser_sip::bad_message_reaction(buf, err, Some(ctx.src)) {
        ser_sip::Reaction::Reply { code, bytes } => {
            let line = bytes.split(|c| *c == b'\r').next().unwrap_or_default();
            let reason = String::from_utf8_lossy(line)
                .splitn(3, ' ')
                .nth(2)
                .unwrap_or("Bad Request")
                .to_owned();
            (code, reason)
        }
        ser_sip::Reaction::Drop => (400, "Bad Request".to_owned()),
    };
    log::info!("bad request from {} ({err}): error_route", ctx.src);
    ctx.set_error_info(1, 3, &err.to_string(), code, &reason);
    script.run_route(ser_parser::ast::RouteKind::Error, None, ctx);
}

fn run(script: &Script, ctx: &mut MsgCtx<'_>) {
    if ctx.is_request() {
        script.run_request(ctx);
    } else {
        script.run_reply(ctx);
    }
}

impl SipHandler for Worker {
    fn on_datagram(&mut self, buf: &[u8], src: SocketAddr, sock: &ListenSocket) {
        // One snapshot of the runtime cfg per message.
        self.env.cfg.refresh();
        let Some(checked) = parse_checked(&self.script, buf, src, false, |bytes| {
            if let Err(err) = sock.send_to(bytes, src) {
                log::warn!("cannot answer {src}: {err}");
            }
        }) else {
            return;
        };
        // datagrams come on UDP sockets, and whole messages on SCTP ones
        let proto = match sock.proto() {
            ser_children::Proto::Sctp => Proto::Sctp,
            _ => Proto::Udp,
        };
        match checked {
            Ok(msg) => {
                let mut ctx = MsgCtx::new(msg, &self.env, src, sock.addr(), proto);
                run(&self.script, &mut ctx);
            }
            Err(f) => {
                let mut ctx = MsgCtx::new(f.msg, &self.env, src, sock.addr(), proto);
                run_error_route(&self.script, &mut ctx, buf, &f.err);
            }
        }
    }

    fn on_stream_message(
        &mut self,
        buf: &[u8],
        src: SocketAddr,
        sock: &ListenSocket,
        reply: &mut dyn StreamReply,
    ) {
        self.env.cfg.refresh();
        let Some(checked) = parse_checked(&self.script, buf, src, true, |bytes| {
            if let Err(err) = reply.send(bytes) {
                log::warn!("cannot answer {src}: {err}");
            }
        }) else {
            return;
        };
        let tls = sock.proto() == ser_children::Proto::Tls;
        let msg = match checked {
            Ok(msg) => msg,
            Err(f) => {
                let proto = if tls { Proto::Tls } else { Proto::Tcp };
                let mut ctx = MsgCtx::new(f.msg, &self.env, src, sock.addr(), proto);
                run_error_route(&self.script, &mut ctx, buf, &f.err);
                return;
            }
        };
        // Everything to the peer goes out on its connection: this worker
        // holds it (ser_children::tcp_conn / tls), also under the Via's sent-by.
        if msg.is_request() && !msg.is_http() {
            if let Ok(v) = msg.via1() {
                let port = v.port.unwrap_or(if tls { 5061 } else { 5060 });
                if port != src.port() {
                    let alias = SocketAddr::new(src.ip(), port);
                    if tls {
                        ser_children::tls::add_alias(alias, src);
                    } else {
                        ser_children::tcp_conn::add_alias(alias, src);
                    }
                }
            }
        }
        let proto = if tls { Proto::Tls } else { Proto::Tcp };
        let mut ctx = MsgCtx::new(msg, &self.env, src, sock.addr(), proto);
        run(&self.script, &mut ctx);
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
        self.env.cfg.refresh();
        self.script.modules().tick_all(&self.env, now);
        // expired DNS cache / blacklist entries, at their gc intervals
        ser_modules::runtime::dns::gc_tick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ser_modules::runtime::transport::Recorder;

    fn script(cfg: &str) -> Arc<Script> {
        let parsed = ser_parser::parse_str("unit.cfg", cfg, &ser_parser::ParseOptions::default())
            .unwrap_or_else(|d| panic!("{d:?}"));
        super::super::load(&parsed, &LoadOptions::default())
            .unwrap_or_else(|d| panic!("{d:?}"))
            .into_shared()
    }

    /// A request whose body is shorter than its Content-Length: it parses,
    /// the pre-script checks refuse it.
    const TRUNCATED: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: er-1\r\nCSeq: 1 MESSAGE\r\n\
Content-Length: 50\r\n\r\nshort";

    /// The replies sent for `buf` received from 127.0.0.1:5070: the
    /// automatic one, or what error_route sent.
    fn replies(s: &Script, buf: &[u8]) -> Vec<String> {
        let rec = Arc::new(Recorder::default());
        let env = Env::new(rec.clone(), Myself::default(), Vec::new());
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let mut out = Vec::new();
        match parse_checked(s, buf, src, false, |b| out.push(b.to_vec())) {
            Some(Ok(_)) => panic!("accepted"),
            Some(Err(f)) => {
                let mut ctx = MsgCtx::new(
                    f.msg,
                    &env,
                    src,
                    "127.0.0.1:5060".parse().unwrap(),
                    Proto::Udp,
                );
                run_error_route(s, &mut ctx, buf, &f.err);
            }
            None => {}
        }
        out.extend(rec.take().into_iter().map(|(_, b)| b));
        out.iter()
            .map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn error_route_handles_requests_failing_the_checks() {
        let plain = script("loadmodule \"sl.so\"\nroute { drop; }\n");
        assert_eq!(replies(&plain, TRUNCATED), ["SIP/2.0 400 Bad Request"]);
        let with = script(
            "loadmodule \"sl.so\"\nroute { drop; }\n\
             error_route {\n if ($err.class == 1 && $err.level == 3 && $err.info != \"\") {\n\
               sl_send_reply(\"$err.rcode\", \"handled $err.rreason\");\n }\n exit;\n}\n",
        );
        assert_eq!(
            replies(&with, TRUNCATED),
            ["SIP/2.0 400 handled Bad Request"]
        );
        // not even a request line: nothing to run error_route on
        assert!(replies(&with, b"garbage\r\n\r\n").is_empty());
    }
}
