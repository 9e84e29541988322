//! tm end to end through the module interface, without the engine: the
//! request "script" calls tm's fixed-up handlers, a mock engine runs the
//! failure/onreply routes, a recording transport stands for the network, and
//! the timer is driven by explicit instants.  After every scenario the table
//! must be empty after the wait timer and shm back at its baseline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ser_modules::iface::{
    Arg, FixupCtx, Handler, ParamValue, RouteEnd, RouteMask, RouteRunner, ScriptNames,
};
use ser_modules::registry::Modules;
use ser_modules::runtime::ctx::{Env, MsgCtx};
use ser_modules::runtime::transport::{Listen, Myself, Proto, Recorder};
use ser_modules::tm::core::Tm as TmCore;
use ser_modules::tm::tm_of;
use ser_sip::SipMsg;

const UAC: &str = "127.0.0.1:5070";
const PROXY: &str = "127.0.0.1:5060";
const UAS1: &str = "127.0.0.1:5081";
const UAS2: &str = "127.0.0.1:5082";

struct Names;
impl ScriptNames for Names {
    fn flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn avp_flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn has_route(&self, _: RouteMask, _: &str) -> bool {
        true
    }
}

type RouteFn = Box<dyn Fn(&mut MsgCtx<'_>) -> RouteEnd + Send + Sync>;

/// The mock engine: named failure/onreply routes.
#[derive(Default)]
struct Engine {
    routes: Mutex<HashMap<(u32, String), Arc<RouteFn>>>,
    runs: Mutex<Vec<String>>,
}

impl RouteRunner for Engine {
    fn run_route(&self, kind: RouteMask, name: &str, ctx: &mut MsgCtx<'_>) -> RouteEnd {
        let f = self
            .routes
            .lock()
            .unwrap()
            .get(&(kind.0, name.to_owned()))
            .cloned();
        self.runs.lock().unwrap().push(format!("{}:{name}", kind.0));
        match f {
            Some(f) => f(ctx),
            None => RouteEnd::Missing,
        }
    }
}

struct Harness {
    modules: Modules,
    engine: Arc<Engine>,
    rec: Arc<Recorder>,
    env: Env,
}

impl Harness {
    fn new() -> Harness {
        ser_shm::init_once(16 << 20).unwrap();
        let mut modules = Modules::default();
        modules.load("tm").unwrap();
        modules.load("tmx").unwrap();
        let no_flags = |_: &str| None;
        for (p, v) in [
            ("fr_timer", 2000),
            ("fr_inv_timer", 4000),
            ("wt_timer", 1000),
            ("retr_timer1", 400),
            ("retr_timer2", 1600),
        ] {
            modules
                .modparam("tm", p, &ParamValue::Int(v), &no_flags)
                .unwrap();
        }
        modules.init_all().unwrap();
        let engine = Arc::new(Engine::default());
        let weak = Arc::downgrade(&engine);
        modules.set_route_runner(weak);
        let rec = Arc::new(Recorder::default());
        let mut myself = Myself::default();
        myself.add("127.0.0.1", Some(5060));
        let listen = vec![Listen {
            proto: Proto::Udp,
            addr: PROXY.parse().unwrap(),
            advertise: None,
        }];
        let env = Env::new(rec.clone(), myself, listen);
        Harness {
            modules,
            engine,
            rec,
            env,
        }
    }

    fn tm(&self) -> &TmCore {
        let l = self
            .modules
            .iter()
            .find(|l| l.module.name() == "tm")
            .unwrap();
        tm_of(&l.env.state).unwrap()
    }

    fn func(&self, name: &str, args: &[Arg]) -> Handler {
        let (l, f) = self.modules.function(name).unwrap();
        (f.fixup)(
            &FixupCtx {
                module: &l.env,
                names: &Names,
            },
            args,
        )
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
    }

    fn route(&self, kind: RouteMask, name: &str, f: RouteFn) {
        self.engine
            .routes
            .lock()
            .unwrap()
            .insert((kind.0, name.to_owned()), Arc::new(f));
    }

    /// A request from `src` through the pre-script hooks and `script`.
    fn request(&self, buf: &str, src: &str, script: &dyn Fn(&mut MsgCtx<'_>)) -> bool {
        let msg = SipMsg::parse(buf.as_bytes().to_vec()).unwrap();
        let mut ctx = MsgCtx::new(
            msg,
            &self.env,
            src.parse().unwrap(),
            PROXY.parse().unwrap(),
            Proto::Udp,
        );
        for l in self.modules.iter() {
            if !l.module.on_request(&l.env, &mut ctx) {
                return false;
            }
        }
        script(&mut ctx);
        true
    }

    /// A reply from downstream; `true` if tm left it to stateless forwarding.
    fn reply(&self, buf: &[u8], src: &str) -> bool {
        let msg = SipMsg::parse(buf.to_vec()).unwrap();
        let mut ctx = MsgCtx::new(
            msg,
            &self.env,
            src.parse().unwrap(),
            PROXY.parse().unwrap(),
            Proto::Udp,
        );
        self.modules.on_reply_all(&mut ctx)
    }

    fn tick_after(&self, ms: u64) {
        self.modules
            .tick_all(&self.env, Instant::now() + Duration::from_millis(ms));
    }

    fn sent(&self) -> Vec<(SocketAddr, SipMsg)> {
        self.rec
            .take()
            .into_iter()
            .map(|(d, b)| (d.addr, SipMsg::parse(b).unwrap()))
            .collect()
    }

    fn wait_empty(&self) {
        self.tick_after(60_000);
        self.tick_after(120_000);
        assert_eq!(
            self.tm().table_count(),
            0,
            "transactions left: {:?}",
            self.tm().list()
        );
        self.rec.take();
    }
}

fn invite(callid: &str, branch: &str) -> String {
    format!(
        "INVITE sip:bob@{UAS1} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{UAC}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn in_dialog(method: &str, callid: &str, branch: &str, cseq: u32, to_tag: &str) -> String {
    format!(
        "{method} sip:bob@{UAS1} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>{to_tag}\r\nCall-ID: {callid}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The UAS's reply to a request it received.
fn uas_reply(req: &SipMsg, code: u16) -> Vec<u8> {
    ser_sip::build_reply(req, code, b"Whatever", b"", b"", Some(b"uas-tag"), None).unwrap()
}

fn is_to(sent: &[(SocketAddr, SipMsg)], to: &str, what: &dyn Fn(&SipMsg) -> bool) -> bool {
    sent.iter().any(|(a, m)| a.to_string() == to && what(m))
}

fn status(c: u16) -> impl Fn(&SipMsg) -> bool {
    move |m: &SipMsg| m.status() == Some(c)
}

fn method(name: &'static str) -> impl Fn(&SipMsg) -> bool {
    move |m: &SipMsg| m.is_request() && m.method_bytes() == name.as_bytes()
}

fn take_request(sent: &[(SocketAddr, SipMsg)], to: &str, name: &str) -> SipMsg {
    let (_, m) = sent
        .iter()
        .find(|(a, m)| a.to_string() == to && m.is_request() && m.method_bytes() == name.as_bytes())
        .unwrap_or_else(|| {
            panic!(
                "no {name} to {to} in {:?}",
                sent.iter()
                    .map(|(a, m)| (a, m.first_line()))
                    .collect::<Vec<_>>()
            )
        });
    SipMsg::parse(m.buf().to_vec()).unwrap()
}

#[test]
fn stateful_proxy_scenarios() {
    let h = Harness::new();
    let relay = h.func("t_relay", &[]);
    let baseline = ser_shm::stats().used;

    // 1. INVITE / 100 / 180 / 200 / ACK (end to end) / BYE.
    let inv = invite("call-1", "z9hG4bK-uac-1");
    assert!(h.request(&inv, UAC, &|ctx| assert!(relay(ctx).is_true())));
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(100)), "100 Trying upstream");
    let fwd = take_request(&s, UAS1, "INVITE");
    assert_eq!(fwd.vias().count(), 2, "our Via on top");
    assert!(h.tm().current_count() >= 1);
    // Retransmitted INVITE: absorbed, last reply (100) re-sent.
    assert!(h.request(&inv, UAC, &|ctx| assert!(relay(ctx).stops())));
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(100)) && !is_to(&s, UAS1, &method("INVITE")));
    assert!(!h.reply(&uas_reply(&fwd, 100), UAS1));
    assert!(h.sent().is_empty(), "100 is absorbed");
    assert!(!h.reply(&uas_reply(&fwd, 180), UAS1));
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(180)));
    assert_eq!(s[0].1.vias().count(), 1, "our Via removed");
    // The INVITE is retransmitted again: now the 180 comes back.
    h.request(&inv, UAC, &|ctx| {
        relay(ctx);
    });
    assert!(is_to(&h.sent(), UAC, &status(180)));
    assert!(!h.reply(&uas_reply(&fwd, 200), UAS1));
    assert!(is_to(&h.sent(), UAC, &status(200)));
    // ACK to the 2xx: a new branch, not absorbed, forwarded statelessly.
    let ack = in_dialog("ACK", "call-1", "z9hG4bK-uac-ack", 1, ";tag=uas-tag");
    assert!(h.request(&ack, UAC, &|ctx| assert!(relay(ctx).is_true())));
    assert!(is_to(&h.sent(), UAS1, &method("ACK")));
    // A retransmitted 200 from the UAS is relayed again.
    assert!(!h.reply(&uas_reply(&fwd, 200), UAS1));
    assert!(is_to(&h.sent(), UAC, &status(200)));
    let bye = in_dialog("BYE", "call-1", "z9hG4bK-uac-bye", 2, ";tag=uas-tag");
    assert!(h.request(&bye, UAC, &|ctx| assert!(relay(ctx).is_true())));
    let fbye = take_request(&h.sent(), UAS1, "BYE");
    assert!(!h.reply(&uas_reply(&fbye, 200), UAS1));
    assert!(is_to(&h.sent(), UAC, &status(200)));
    h.wait_empty();

    // 2. 486 -> failure_route -> serial fork to UAS2 -> 200.
    let relay2 = h.func("t_relay", &[]);
    h.route(
        RouteMask::FAILURE,
        "busy",
        Box::new(move |ctx| {
            ctx.new_uri = Some(format!("sip:bob@{UAS2}"));
            assert!(relay2(ctx).is_true(), "t_relay in failure_route");
            RouteEnd::Done
        }),
    );
    let on_failure = h.func("t_on_failure", &[Arg::Str("busy".into())]);
    let inv = invite("call-2", "z9hG4bK-uac-2");
    h.request(&inv, UAC, &|ctx| {
        on_failure(ctx);
        assert!(relay(ctx).is_true());
    });
    let fwd1 = take_request(&h.sent(), UAS1, "INVITE");
    assert!(!h.reply(&uas_reply(&fwd1, 486), UAS1));
    let s = h.sent();
    assert!(
        is_to(&s, UAS1, &method("ACK")),
        "hop-by-hop ACK for the 486"
    );
    assert!(
        !is_to(&s, UAC, &status(486)),
        "486 not relayed: failure route forked"
    );
    let fwd2 = take_request(&s, UAS2, "INVITE");
    assert!(h
        .engine
        .runs
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.ends_with(":busy")));
    assert!(!h.reply(&uas_reply(&fwd2, 200), UAS2));
    assert!(is_to(&h.sent(), UAC, &status(200)));
    h.wait_empty();

    // 3. No answer: fr_timer -> 408 upstream (with INVITE retransmissions before it).
    let inv = invite("call-3", "z9hG4bK-uac-3");
    h.request(&inv, UAC, &|ctx| assert!(relay(ctx).is_true()));
    take_request(&h.sent(), UAS1, "INVITE");
    h.tick_after(450);
    assert!(
        is_to(&h.sent(), UAS1, &method("INVITE")),
        "timer A retransmission"
    );
    h.tick_after(2100);
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(408)), "408 after fr_timer");
    // Timer G: the 408 again while no ACK comes (T1 = 400 ms after it).
    h.tick_after(2600);
    assert!(
        is_to(&h.sent(), UAC, &status(408)),
        "timer G retransmission"
    );
    // The UAC ACKs our 408: absorbed (hop-by-hop).
    let ack = in_dialog(
        "ACK",
        "call-3",
        "z9hG4bK-uac-3",
        1,
        &format!(";tag={}", tag_of(&s, 408)),
    );
    assert!(!h.request(&ack, UAC, &|_| panic!("ACK must not reach the script")));
    h.wait_empty();

    // 4. CANCEL -> 200 for the CANCEL, CANCEL downstream, 487 upstream.
    let inv = invite("call-4", "z9hG4bK-uac-4");
    h.request(&inv, UAC, &|ctx| assert!(relay(ctx).is_true()));
    let fwd = take_request(&h.sent(), UAS1, "INVITE");
    assert!(!h.reply(&uas_reply(&fwd, 180), UAS1));
    h.sent();
    let cancel = in_dialog("CANCEL", "call-4", "z9hG4bK-uac-4", 1, "");
    h.request(&cancel, UAC, &|ctx| {
        relay(ctx);
    });
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(200)), "200 for the CANCEL");
    let fcancel = take_request(&s, UAS1, "CANCEL");
    assert_eq!(
        fcancel
            .via1()
            .unwrap()
            .branch
            .map(|b| fcancel.s(b).to_vec()),
        fwd.via1().unwrap().branch.map(|b| fwd.s(b).to_vec())
    );
    assert!(!h.reply(&uas_reply(&fcancel, 200), UAS1));
    assert!(!h.reply(&uas_reply(&fwd, 487), UAS1));
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(487)), "487 upstream");
    assert!(is_to(&s, UAS1, &method("ACK")));
    h.wait_empty();

    // 5. Parallel fork: two branches, 404 and 486 -> the 404 (lowest) wins... 486 vs 404: 404 first.
    let inv = invite("call-5", "z9hG4bK-uac-5");
    h.request(&inv, UAC, &|ctx| {
        ctx.branches.push(ser_modules::runtime::ctx::Branch {
            uri: format!("sip:bob@{UAS2}"),
            dst_uri: None,
            bflags: Default::default(),
        });
        assert!(relay(ctx).is_true());
    });
    let s = h.sent();
    let f1 = take_request(&s, UAS1, "INVITE");
    let f2 = take_request(&s, UAS2, "INVITE");
    assert!(!h.reply(&uas_reply(&f1, 486), UAS1));
    assert!(
        !is_to(&h.sent(), UAC, &status(486)),
        "waits for the other branch"
    );
    assert!(!h.reply(&uas_reply(&f2, 404), UAS2));
    assert!(is_to(&h.sent(), UAC, &status(404)));
    h.wait_empty();

    // 6. t_reply on a t_newtran transaction, then its retransmission.
    let newtran = h.func("t_newtran", &[]);
    let treply = h.func("t_reply", &[Arg::Int(404), Arg::Str("Not Here".into())]);
    let msg = in_dialog("OPTIONS", "call-6", "z9hG4bK-uac-6", 1, "");
    h.request(&msg, UAC, &|ctx| {
        assert!(newtran(ctx).is_true());
        assert!(treply(ctx).is_true());
    });
    assert!(is_to(&h.sent(), UAC, &status(404)));
    h.request(&msg, UAC, &|ctx| assert!(newtran(ctx).stops()));
    assert!(is_to(&h.sent(), UAC, &status(404)));
    h.wait_empty();

    // 4b. CANCEL before any reply: no CANCEL on the wire until the callee's
    // first provisional (RFC 3261 9.1), then the 487 goes upstream.
    let inv = invite("call-4b", "z9hG4bK-uac-4b");
    h.request(&inv, UAC, &|ctx| assert!(relay(ctx).is_true()));
    let fwd = take_request(&h.sent(), UAS1, "INVITE");
    let cancel = in_dialog("CANCEL", "call-4b", "z9hG4bK-uac-4b", 1, "");
    h.request(&cancel, UAC, &|ctx| {
        relay(ctx);
    });
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(200)) && !is_to(&s, UAS1, &method("CANCEL")));
    assert!(!h.reply(&uas_reply(&fwd, 180), UAS1));
    let fcancel = take_request(&h.sent(), UAS1, "CANCEL");
    assert!(!h.reply(&uas_reply(&fcancel, 200), UAS1));
    assert!(!h.reply(&uas_reply(&fwd, 487), UAS1));
    assert!(is_to(&h.sent(), UAC, &status(487)));
    h.wait_empty();

    // 7. tmx t_reply_callid answers a pending INVITE from elsewhere; its
    // ringing branch is cancelled.
    let inv = invite("call-7", "z9hG4bK-uac-7");
    h.request(&inv, UAC, &|ctx| assert!(relay(ctx).is_true()));
    let fwd = take_request(&h.sent(), UAS1, "INVITE");
    assert!(!h.reply(&uas_reply(&fwd, 180), UAS1));
    h.sent();
    let by_callid = h.func(
        "t_reply_callid",
        &[
            Arg::Str("call-7".into()),
            Arg::Int(1),
            Arg::Int(480),
            Arg::Str("Later".into()),
        ],
    );
    let other = in_dialog("OPTIONS", "call-8", "z9hG4bK-uac-8", 1, "");
    h.request(&other, UAC, &|ctx| assert!(by_callid(ctx).is_true()));
    let s = h.sent();
    assert!(is_to(&s, UAC, &status(480)));
    assert!(is_to(&s, UAS1, &method("CANCEL")));
    assert!(!h.reply(&uas_reply(&fwd, 487), UAS1));
    let s = h.sent();
    assert!(is_to(&s, UAS1, &method("ACK")) && !is_to(&s, UAC, &status(487)));
    h.wait_empty();

    let tm = h.tm();
    assert_eq!(tm.current_count(), 0);
    assert_eq!(tm.stat(ser_modules::tm::core::Stat::Waiting), 0);
    assert!(tm.stat(ser_modules::tm::core::Stat::Rpl2xx) >= 3);
    assert!(tm.stat(ser_modules::tm::core::Stat::RepliedLocally) >= 2);
    // The same numbers over RPC.
    let mut reg = ser_fifo::RpcRegistry::new();
    h.modules.register_rpc(&mut reg);
    let stats = reg.call("tm.stats", Vec::new()).unwrap();
    let ser_fifo::RpcValue::Struct(fields) = &stats[0] else {
        panic!("tm.stats: {stats:?}")
    };
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(field("current"), Some(ser_fifo::RpcValue::long(0)));
    assert_eq!(field("waiting"), Some(ser_fifo::RpcValue::long(0)));
    assert!(
        matches!(field("total"), Some(ser_fifo::RpcValue::Double(t)) if t >= 11.0),
        "{fields:?}"
    );
    assert!(reg.call("tm.list", Vec::new()).unwrap().is_empty());
    assert_eq!(ser_shm::stats().used, baseline, "shm back at baseline");
    ser_shm::check().unwrap();
}

fn tag_of(sent: &[(SocketAddr, SipMsg)], code: u16) -> String {
    let (_, m) = sent.iter().find(|(_, m)| m.status() == Some(code)).unwrap();
    m.to()
        .unwrap()
        .tag
        .map(|t| String::from_utf8_lossy(m.s(t)).into_owned())
        .unwrap()
}
