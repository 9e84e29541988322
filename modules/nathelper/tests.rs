use std::sync::Arc;

use ser_sip::SipMsg;

use super::*;
use crate::iface::{FixupCtx, ParamValue, ScriptNames};
use crate::registry::Modules;
use crate::runtime::ctx::Env;
use crate::runtime::transport::{Listen, Myself, Recorder};

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

fn env() -> Env {
    let listen = vec![Listen {
        proto: Proto::Udp,
        addr: "127.0.0.1:5060".parse().unwrap(),
        advertise: None,
    }];
    Env::new(Arc::new(Recorder::default()), Myself::default(), listen)
}

fn modules(params: &[(&str, ParamValue)]) -> Modules {
    let mut m = Modules::default();
    m.load("nathelper").unwrap();
    for (p, v) in params {
        m.modparam("nathelper", p, v, &|_| None).unwrap();
    }
    m
}

fn call(m: &Modules, ctx: &mut MsgCtx<'_>, name: &str, args: &[Arg]) -> Flow {
    let (l, f) = m.function(name).unwrap();
    let h = (f.fixup)(
        &FixupCtx {
            module: &l.env,
            names: &Names,
        },
        args,
    )
    .unwrap();
    h(ctx)
}

fn ctx<'e>(env: &'e Env, msg: &str, src: &str) -> MsgCtx<'e> {
    let m = SipMsg::parse(msg.replace('\n', "\r\n").into_bytes()).unwrap();
    MsgCtx::new(
        m,
        env,
        src.parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        Proto::Udp,
    )
}

fn out(ctx: &MsgCtx<'_>) -> String {
    String::from_utf8(ser_sip::apply(&ctx.msg, &ctx.lumps).unwrap()).unwrap()
}

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bK1;rport
From: <sip:alice@example.com>;tag=1
To: <sip:alice@example.com>
Call-ID: r1
CSeq: 1 REGISTER
Contact: <sip:alice@192.168.1.10:5062;ob>;expires=60
Content-Type: application/sdp
Content-Length: 27

v=0
c=IN IP4 10.0.0.5
m=x
";

const NATTED: &str = "203.0.113.7:40000";

#[test]
fn nat_uac_tests() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, REGISTER, NATTED);
    for (flags, want) in [
        (1, true),
        (2, true),
        (4, true),
        (8, true),
        (16, true),
        (32, false),
        (64, false),
        (128, true),
        (256, true),
        (512, true),
    ] {
        assert_eq!(
            call(&m, &mut c, "nat_uac_test", &[Arg::Int(flags)]),
            Flow::from_bool(want),
            "flags {flags}"
        );
    }
    let direct = REGISTER
        .replace("192.168.1.10:5062", "203.0.113.7:40000")
        .replace("10.0.0.5", "203.0.113.7");
    let mut c = ctx(&env, &direct, NATTED);
    assert_eq!(
        call(&m, &mut c, "nat_uac_test", &[Arg::Int(1023)]),
        Flow::False
    );
    let (l, f) = m.function("nat_uac_test").unwrap();
    let fx = FixupCtx {
        module: &l.env,
        names: &Names,
    };
    assert!((f.fixup)(&fx, &[Arg::Int(0)]).is_err());
}

#[test]
fn private_ranges() {
    for (ip, p) in [
        ("10.1.2.3", true),
        ("172.16.0.1", true),
        ("172.32.0.1", false),
        ("192.168.0.1", true),
        ("100.64.0.1", true),
        ("8.8.8.8", false),
        ("fd00::1", true),
        ("::1", false),
    ] {
        assert_eq!(is_private(ip.parse().unwrap()), p, "{ip}");
    }
}

#[test]
fn fix_nated_contact_rewrites_host_port() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, REGISTER, NATTED);
    assert_eq!(call(&m, &mut c, "fix_nated_contact", &[]), Flow::True);
    assert!(out(&c).contains("Contact: <sip:alice@203.0.113.7:40000;ob>;expires=60\r\n"));
    let noport = REGISTER.replace("192.168.1.10:5062;ob", "192.168.1.10");
    let mut c = ctx(&env, &noport, NATTED);
    call(&m, &mut c, "fix_nated_contact", &[]);
    assert!(out(&c).contains("Contact: <sip:alice@203.0.113.7:40000>;expires=60\r\n"));
}

#[test]
fn fix_nated_register_sets_received_avp() {
    let env = env();
    let m = modules(&[("received_avp", ParamValue::Str("$avp(i:42)".into()))]);
    let mut c = ctx(&env, REGISTER, NATTED);
    assert_eq!(call(&m, &mut c, "fix_nated_register", &[]), Flow::True);
    let pv = parse_pv("$avp(i:42)").unwrap();
    assert_eq!(c.get_pv(&pv), Value::Str("sip:203.0.113.7:40000".into()));
    // a bad received_avp is refused at init
    let m = modules(&[("received_avp", ParamValue::Str("$ru(".into()))]);
    assert!(m.init_all().is_err());
}

#[test]
fn add_rcv_param_header_and_uri_forms() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, REGISTER, NATTED);
    call(&m, &mut c, "add_rcv_param", &[]);
    assert!(out(&c).contains(
        "Contact: <sip:alice@192.168.1.10:5062;ob>;expires=60;received=\"sip:203.0.113.7:40000\"\r\n"
    ));
    let mut c = ctx(&env, REGISTER, NATTED);
    call(&m, &mut c, "add_rcv_param", &[Arg::Int(1)]);
    let o = out(&c);
    assert!(
        o.contains("Contact: <sip:alice@192.168.1.10:5062;ob;received=sip:203.0.113.7:40000>;expires=60\r\n"),
        "{o}"
    );
}

#[test]
fn contact_alias_round_trip() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, REGISTER, NATTED);
    assert_eq!(call(&m, &mut c, "add_contact_alias", &[]), Flow::True);
    let o = out(&c);
    assert!(
        o.contains("<sip:alice@192.168.1.10:5062;ob;alias=203.0.113.7~40000~1>"),
        "{o}"
    );
    let inv = "INVITE sip:alice@192.168.1.10:5062;ob;alias=203.0.113.7~40000~1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK9
From: <sip:bob@b>;tag=2
To: <sip:alice@example.com>
Call-ID: i1
CSeq: 1 INVITE
Content-Length: 0

";
    let mut c = ctx(&env, inv, "127.0.0.1:5090");
    assert_eq!(call(&m, &mut c, "handle_ruri_alias", &[]), Flow::True);
    assert_eq!(c.dst_uri.as_deref(), Some("sip:203.0.113.7:40000"));
    assert_eq!(c.new_uri.as_deref(), Some("sip:alice@192.168.1.10:5062;ob"));
}

#[test]
fn ping_targets_and_sip_ping_text() {
    use crate::usrloc::Ucontact;
    let mut c = Ucontact {
        uri: "sip:bob@10.0.0.2:5070".into(),
        ruid: "r1".into(),
        socket: "udp:127.0.0.1:5060".into(),
        ..Ucontact::default()
    };
    assert_eq!(
        ping::ping_target(&c),
        Some(("10.0.0.2:5070".parse().unwrap(), Proto::Udp))
    );
    c.received = "sip:127.0.0.1:40000".into();
    assert_eq!(
        ping::ping_target(&c),
        Some(("127.0.0.1:40000".parse().unwrap(), Proto::Udp))
    );
    c.received = "sip:host.example:1;transport=tcp".into();
    assert_eq!(ping::ping_target(&c), None, "names are not resolved");

    let m = modules(&[
        ("sipping_from", ParamValue::Str("sip:pinger@x".into())),
        ("natping_interval", ParamValue::Int(5)),
    ]);
    let (l, _) = m.function("nat_uac_test").unwrap();
    let cfg = ping::PingCfg::from_env(&l.env).unwrap();
    let bad = modules(&[("natping_socket", ParamValue::Str("nowhere".into()))]);
    let (bl, _) = bad.function("nat_uac_test").unwrap();
    assert!(ping::PingCfg::from_env(&bl.env).is_err());
    let text = ping::sip_ping(&cfg, &c, "bob", "127.0.0.1:5060".parse().unwrap());
    assert!(text.starts_with("OPTIONS sip:bob@10.0.0.2:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"), "{text}");
    assert!(
        text.contains("\r\nFrom: sip:pinger@x;tag=r1-")
            && text.ends_with("CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
        "{text}"
    );

    // its 200 is recognised; another reply is not
    let cid = text
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap();
    let env = env();
    let reply = |cid: &str| {
        format!("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\nFrom: <sip:pinger@x>;tag=1\nTo: <sip:bob@b>;tag=2\nCall-ID: {cid}\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n")
    };
    assert!(ping::is_ping_reply(
        &cfg,
        &ctx(&env, &reply(cid), "127.0.0.1:40000")
    ));
    assert!(!ping::is_ping_reply(
        &cfg,
        &ctx(&env, &reply("other-1@x"), "127.0.0.1:40000")
    ));
}

#[test]
fn fix_nated_sdp_rewrites_and_marks() {
    let env = env();
    let m = modules(&[("append_sdp_oldmediaip", ParamValue::Int(1))]);
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    let msg = format!(
        "INVITE sip:b@x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>\nCall-ID: s1\nCSeq: 1 INVITE\nContent-Type: application/sdp\nContent-Length: {}\n\n",
        body.len()
    ) + &body.replace("\r\n", "\n");
    let mut c = ctx(&env, &msg, NATTED);
    assert_eq!(
        call(&m, &mut c, "fix_nated_sdp", &[Arg::Int(15)]),
        Flow::True
    );
    let o = out(&c);
    assert!(o.contains("o=- 1 1 IN IP4 203.0.113.7\r\n"), "{o}");
    assert!(o.contains("c=IN IP4 203.0.113.7\r\n"), "{o}");
    assert!(
        o.ends_with("m=audio 6000 RTP/AVP 0\r\na=direction:active\r\na=oldmediaip:10.0.0.5\r\na=nortpproxy:yes\r\n"),
        "{o}"
    );
    let mut c = ctx(&env, &msg, NATTED);
    assert_eq!(
        call(
            &m,
            &mut c,
            "fix_nated_sdp",
            &[Arg::Int(2), Arg::Str("192.0.2.1".into())]
        ),
        Flow::True
    );
    assert!(out(&c).contains("c=IN IP4 192.0.2.1\r\n"));
    let mut c = ctx(&env, &msg, NATTED);
    for (ip, want) in [("10.0.0.5", true), ("$si", false), ("nonsense", false)] {
        assert_eq!(
            call(&m, &mut c, "is_rfc1918", &[Arg::Str(ip.into())]),
            Flow::from_bool(want),
            "{ip}"
        );
    }
}
