use std::sync::Arc;
use std::thread;

use ser_sip::SipMsg;

use super::*;
use crate::iface::{ParamValue, ScriptNames};
use crate::registry::Modules;
use crate::runtime::ctx::Env;
use crate::runtime::transport::{Myself, Proto, Recorder};

struct Names;
impl ScriptNames for Names {
    fn flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn avp_flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn has_route(&self, _: RouteMask, _: &str) -> bool {
        false
    }
}

const INVITE: &str = "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\n\
From: <sip:alice@x>;tag=ft\r\n\
To: <sip:bob@x>\r\n\
Call-ID: call-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 24\r\n\
\r\n\
v=0\r\nc=IN IP4 10.0.0.5\r\n";

/// A fake rtpengine answering `count` requests: echoes what it got as the
/// `sdp` of an ok answer (so the test sees the request it sent).
fn fake_engine(count: usize) -> (SocketAddr, thread::JoinHandle<Vec<Bencode>>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = s.local_addr().unwrap();
    let h = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 65_535];
        for _ in 0..count {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                break;
            };
            let pkt = &buf[..n];
            let sp = pkt.iter().position(|&c| c == b' ').unwrap();
            let (req, _) = bencode::decode(&pkt[sp + 1..]).unwrap();
            let mut d = BTreeMap::new();
            d.insert(b"result".to_vec(), Bencode::str("ok"));
            d.insert(
                b"sdp".to_vec(),
                Bencode::str("v=0\r\nc=IN IP4 127.0.0.1\r\n"),
            );
            let mut out = pkt[..=sp].to_vec();
            Bencode::Dict(d).encode(&mut out);
            s.send_to(&out, from).unwrap();
            seen.push(req);
        }
        seen
    });
    (addr, h)
}

#[test]
fn offer_sends_ng_and_replaces_the_body() {
    let (engine, seen) = fake_engine(2);
    let mut m = Modules::default();
    m.load("rtpengine").unwrap();
    m.modparam(
        "rtpengine",
        "rtpengine_sock",
        &ParamValue::Str(format!("udp:{engine}")),
        &|_| None,
    )
    .unwrap();
    let (l, _) = m.function("rtpengine_manage").unwrap();
    Rtpengine.init(&l.env).unwrap();
    let env = Env::new(Arc::new(Recorder::default()), Myself::default(), vec![]);
    let msg = SipMsg::parse(INVITE.as_bytes().to_vec()).unwrap();
    let src = "10.0.0.5:5060".parse().unwrap();
    let mut ctx = MsgCtx::new(
        msg,
        &env,
        src,
        "127.0.0.1:5060".parse().unwrap(),
        Proto::Udp,
    );
    let call = |name: &str, flags: &str, ctx: &mut MsgCtx<'_>| {
        let (l, f) = m.function(name).unwrap();
        let h = (f.fixup)(
            &FixupCtx {
                module: &l.env,
                names: &Names,
            },
            &[Arg::Str(flags.into())],
        )
        .unwrap();
        h(ctx)
    };
    let flow = call(
        "rtpengine_manage",
        "SIP-source-address replace-origin replace-session-connection direction=internal",
        &mut ctx,
    );
    assert_eq!(flow, Flow::True);
    let out = String::from_utf8(ser_sip::apply(&ctx.msg, &ctx.lumps).unwrap()).unwrap();
    assert!(
        out.ends_with("\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\n"),
        "{out}"
    );
    assert!(out.contains("Content-Length: 25\r\n"), "{out}");
    assert_eq!(call("rtpengine_delete", "", &mut ctx), Flow::True);

    let seen = seen.join().unwrap();
    let offer = &seen[0];
    let s = |k: &str| offer.get(k).and_then(Bencode::as_bytes).map(|b| b.to_vec());
    assert_eq!(s("command").unwrap(), b"offer");
    assert_eq!(s("call-id").unwrap(), b"call-1");
    assert_eq!(s("from-tag").unwrap(), b"ft");
    assert_eq!(s("sdp").unwrap(), b"v=0\r\nc=IN IP4 10.0.0.5\r\n");
    assert_eq!(
        offer.get("replace"),
        Some(&Bencode::List(vec![
            Bencode::str("origin"),
            Bencode::str("session-connection")
        ]))
    );
    assert_eq!(
        offer.get("flags"),
        Some(&Bencode::List(vec![Bencode::str("SIP-source-address")]))
    );
    assert_eq!(
        offer.get("received-from"),
        Some(&Bencode::List(vec![
            Bencode::str("IP4"),
            Bencode::str("10.0.0.5")
        ]))
    );
    assert_eq!(
        seen[1].get("command").and_then(Bencode::as_bytes),
        Some(&b"delete"[..])
    );
    assert!(seen[1].get("sdp").is_none());
}

#[test]
fn no_answer_is_false_and_bad_sockets_are_refused() {
    // A bound socket that never answers.
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = Control {
        addr: quiet.local_addr().unwrap(),
        timeout: Duration::from_millis(20),
        tries: 2,
    };
    let env = Env::new(Arc::new(Recorder::default()), Myself::default(), vec![]);
    let msg = SipMsg::parse(INVITE.as_bytes().to_vec()).unwrap();
    let a = "127.0.0.1:5060".parse().unwrap();
    let mut ctx = MsgCtx::new(msg, &env, a, a, Proto::Udp);
    assert_eq!(run(&c, &mut ctx, Command::Offer, ""), Flow::False);
    let mut m = Modules::default();
    m.load("rtpengine").unwrap();
    m.modparam(
        "rtpengine",
        "rtpengine_sock",
        &ParamValue::Str("unix:/x".into()),
        &|_| None,
    )
    .unwrap();
    let (l, _) = m.function("rtpengine_manage").unwrap();
    assert!(Rtpengine.init(&l.env).is_err());
}
