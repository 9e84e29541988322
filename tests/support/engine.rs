//! The routing engine in-process: a config parsed by ser-parser and loaded
//! by `ser::route::load`, SIP messages run through the script on a UDP
//! socket at [`PROXY`], sends caught by a recording transport.

use std::net::SocketAddr;
use std::sync::Arc;

use ser::route::{
    self, Env, Listen, LoadOptions, MsgCtx, Myself, Outcome, Proto, Recorder, Script,
};
use ser_parser::{render, ParseOptions};
use ser_sip::SipMsg;

/// The socket every in-process message is received on: `myself` with its port.
pub const PROXY: &str = "127.0.0.1:5060";

/// The shared memory [`load`] and [`load_with`] initialise (the first
/// `init_once` in a test binary sets the size for all its tests).
pub const SHM: usize = 32 << 20;

/// Parses and loads `text`; the error is the rendered diagnostics.
pub fn try_load_with(name: &str, text: &str, opts: &ParseOptions) -> Result<Script, String> {
    let parsed =
        ser_parser::parse_str(name, text, opts).map_err(|d| format!("parse failed: {d:?}"))?;
    route::load(&parsed, &LoadOptions::default()).map_err(|ds| {
        ds.iter()
            .map(|d| render(&parsed.sources, d))
            .collect::<String>()
    })
}

/// [`try_load_with`] for a `test.cfg` with default options.
pub fn try_load(cfg: &str) -> Result<Script, String> {
    try_load_with("test.cfg", cfg, &ParseOptions::default())
}

/// Loads `cfg` without initialising its modules (no shared memory needed);
/// panics with the diagnostics when it is rejected.
pub fn load_only(cfg: &str) -> Script {
    try_load(cfg).unwrap_or_else(|e| panic!("config rejected:\n{e}"))
}

/// Loads `text` and initialises its modules in a shared memory of
/// `shm_bytes`; panics with the diagnostics when it is rejected.
pub fn load_init_with(shm_bytes: usize, name: &str, text: &str, opts: &ParseOptions) -> Script {
    let _ = ser_shm::init_once(shm_bytes);
    let script =
        try_load_with(name, text, opts).unwrap_or_else(|e| panic!("config rejected:\n{e}"));
    script.init_modules().expect("modules init");
    script
}

/// [`load_init_with`] for a `test.cfg` with default options.
pub fn load_init(shm_bytes: usize, cfg: &str) -> Script {
    load_init_with(shm_bytes, "test.cfg", cfg, &ParseOptions::default())
}

/// A script ready to run with modules that call back into it (tm's
/// failure and branch routes): initialised in [`SHM`] and shared.
pub fn load(cfg: &str) -> Arc<Script> {
    load_with("test.cfg", cfg, &ParseOptions::default())
}

/// [`load`] with a file name and parse options (defines).
pub fn load_with(name: &str, text: &str, opts: &ParseOptions) -> Arc<Script> {
    load_init_with(SHM, name, text, opts).into_shared()
}

/// A config from the shared historical configs (`SER_SHARED_CONFIGS`, by
/// default `../shared/configs` beside the work tree).
pub fn shared_config(name: &str) -> String {
    let dir = std::env::var("SER_SHARED_CONFIGS")
        .unwrap_or_else(|_| format!("{}/../shared/configs", env!("CARGO_MANIFEST_DIR")));
    let path = format!("{dir}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An env sending through `rec`, listening on UDP [`PROXY`]; `myself` is
/// 127.0.0.1:5060 and every name in `domains`.
pub fn env(rec: &Arc<Recorder>, domains: &[&str]) -> Env {
    let mut myself = Myself::default();
    myself.add("127.0.0.1", Some(5060));
    for d in domains {
        myself.add(d, None);
    }
    Env::new(
        rec.clone(),
        myself,
        vec![Listen {
            proto: Proto::Udp,
            addr: PROXY.parse().unwrap(),
            advertise: None,
        }],
    )
}

/// A context for `msg` received over UDP from `src` on [`PROXY`].
pub fn ctx<'e>(msg: SipMsg, env: &'e Env, src: &str) -> MsgCtx<'e> {
    MsgCtx::new(
        msg,
        env,
        src.parse().unwrap(),
        PROXY.parse().unwrap(),
        Proto::Udp,
    )
}

/// Runs the request or the reply route, whichever the message is for.
pub fn dispatch(s: &Script, ctx: &mut MsgCtx<'_>) -> Outcome {
    if ctx.is_request() {
        s.run_request(ctx)
    } else {
        s.run_reply(ctx)
    }
}

/// Parses `buf` and runs it as received from `from`, in `env` (whose
/// recorder keeps what was sent).
pub fn run(s: &Script, env: &Env, buf: impl AsRef<[u8]>, from: &str) -> Outcome {
    let msg = SipMsg::parse(buf.as_ref().to_vec()).unwrap();
    dispatch(s, &mut ctx(msg, env, from))
}

/// Everything sent through `rec` so far, parsed, with its destination.
pub fn sent(rec: &Recorder) -> Vec<(SocketAddr, SipMsg)> {
    rec.take()
        .into_iter()
        .map(|(d, b)| (d.addr, SipMsg::parse(b).unwrap()))
        .collect()
}

/// The body of the first `name` header.
pub fn header(m: &SipMsg, name: &str) -> Option<String> {
    headers(m, name).into_iter().next()
}

/// The bodies of every `name` header, in order.
pub fn headers(m: &SipMsg, name: &str) -> Vec<String> {
    m.find_by_name(name.as_bytes())
        .map(|h| String::from_utf8_lossy(m.header_body(h)).into_owned())
        .collect()
}

/// What one message did when run on its own ([`run_once`]): everything it
/// sent and the context's routing state afterwards.
pub struct Run {
    pub outcome: Outcome,
    /// Everything sent, as text, with its destination.
    pub sent: Vec<(SocketAddr, String)>,
    /// (status, reason) of every reply sent.
    pub replies: Vec<(u16, String)>,
    pub new_uri: Option<String>,
    pub dst_uri: Option<String>,
    pub send_socket: Option<SocketAddr>,
    /// The URIs of the additional branches.
    pub branches: Vec<String>,
    pub flags: u32,
}

impl Run {
    /// The status of every reply sent.
    pub fn status(&self) -> Vec<u16> {
        self.replies.iter().map(|(code, _)| *code).collect()
    }

    /// The reason phrase of the first reply ("" without one).
    pub fn reason(&self) -> String {
        self.replies
            .first()
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    }

    /// The bodies of the `name` headers of every reply sent.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.sent
            .iter()
            .filter_map(|(_, b)| SipMsg::parse(b.clone().into_bytes()).ok())
            .filter(|m| !m.is_request())
            .flat_map(|m| headers(&m, name))
            .collect()
    }
}

/// Runs `msg`, received from `src`, in an env of its own (a fresh recorder,
/// `domains` in `myself`, the script's cfg); `inspect` sees the context
/// after the script.  `SER_TEST_DEBUG` in the environment prints each run.
pub fn run_once(
    script: &Script,
    domains: &[&str],
    src: &str,
    msg: SipMsg,
    inspect: impl FnOnce(&mut MsgCtx<'_>),
) -> Run {
    let rec = Arc::new(Recorder::default());
    let mut env = env(&rec, domains);
    env.cfg = script.cfg();
    let mut ctx = ctx(msg, &env, src);
    let outcome = dispatch(script, &mut ctx);
    inspect(&mut ctx);
    let sent: Vec<(SocketAddr, String)> = rec
        .take()
        .into_iter()
        .map(|(d, b)| (d.addr, String::from_utf8_lossy(&b).into_owned()))
        .collect();
    if std::env::var_os("SER_TEST_DEBUG").is_some() {
        eprintln!("outcome {outcome:?} rc {} sent {sent:?}", ctx.retcode);
    }
    let replies = sent
        .iter()
        .filter_map(|(_, b)| SipMsg::parse(b.clone().into_bytes()).ok())
        .filter(|m| !m.is_request())
        .map(|m| {
            (
                m.status().unwrap(),
                String::from_utf8_lossy(m.reason().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    Run {
        outcome,
        sent,
        replies,
        new_uri: ctx.new_uri.clone(),
        dst_uri: ctx.dst_uri.clone(),
        send_socket: ctx.send_socket,
        branches: ctx.branches.iter().map(|b| b.uri.clone()).collect(),
        flags: ctx.flags.0,
    }
}

/// A downstream UAS's `code` reply (reason "Whatever", To-tag `uas`) to a
/// request the proxy relayed.
pub fn uas_reply(req: &SipMsg, code: u16) -> Vec<u8> {
    ser_sip::build_reply(req, code, b"Whatever", b"", b"", Some(b"uas"), None).unwrap()
}
