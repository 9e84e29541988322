use std::sync::Arc;

use ser_sip::SipMsg;

use super::*;
use crate::iface::{FixupCtx, ScriptNames};
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

const PROXY: &str = "127.0.0.1:5060";

fn env() -> Env {
    let mut myself = Myself::default();
    myself.add("127.0.0.1", Some(5060));
    myself.add("127.0.0.1", Some(5061));
    let listen = vec![
        Listen {
            proto: Proto::Udp,
            addr: PROXY.parse().unwrap(),
            advertise: None,
        },
        Listen {
            proto: Proto::Tcp,
            addr: "127.0.0.1:5061".parse().unwrap(),
            advertise: None,
        },
    ];
    Env::new(Arc::new(Recorder::default()), myself, listen)
}

fn modules(params: &[(&str, i64)]) -> Modules {
    let mut m = Modules::default();
    m.load("rr").unwrap();
    for (p, v) in params {
        m.modparam("rr", p, &crate::iface::ParamValue::Int(*v), &|_| None)
            .unwrap();
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

fn ctx<'e>(env: &'e Env, msg: &str) -> MsgCtx<'e> {
    let m = SipMsg::parse(msg.replace('\n', "\r\n").into_bytes()).unwrap();
    MsgCtx::new(
        m,
        env,
        "127.0.0.1:5090".parse().unwrap(),
        PROXY.parse().unwrap(),
        Proto::Udp,
    )
}

fn out(ctx: &MsgCtx<'_>) -> String {
    String::from_utf8(ser_sip::apply(&ctx.msg, &ctx.lumps).unwrap()).unwrap()
}

const INVITE: &str = "INVITE sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK1
Record-Route: <sip:other.example;lr>
From: <sip:alice@a>;tag=ft1
To: <sip:bob@b>
Call-ID: c1
CSeq: 1 INVITE
Content-Length: 0

";

#[test]
fn record_route_goes_on_top_with_ftag_and_late_params() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, INVITE);
    assert_eq!(
        call(&m, &mut c, "add_rr_param", &[Arg::Str(";a=1".into())]),
        Flow::True
    );
    assert_eq!(call(&m, &mut c, "record_route", &[]), Flow::True);
    assert_eq!(
        call(&m, &mut c, "add_rr_param", &[Arg::Str("nat=yes".into())]),
        Flow::True
    );
    let o = out(&c);
    assert!(
        o.starts_with(
            "INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n\
             Record-Route: <sip:127.0.0.1:5060;lr;ftag=ft1;a=1;nat=yes>\r\n\
             Via: SIP/2.0/UDP"
        ),
        "{o}"
    );
    assert!(o.contains("Record-Route: <sip:other.example;lr>"));
    // a second record_route on the same request is refused
    assert_eq!(call(&m, &mut c, "record_route", &[]), Flow::False);
}

#[test]
fn full_lr_no_fromtag_params_string() {
    let env = env();
    let m = modules(&[("enable_full_lr", 1), ("append_fromtag", 0)]);
    let mut c = ctx(&env, INVITE);
    call(&m, &mut c, "record_route", &[Arg::Str("x=$rU".into())]);
    assert!(out(&c).contains("Record-Route: <sip:127.0.0.1:5060;lr=on;x=bob>\r\n"));
}

#[test]
fn double_rr_when_leaving_over_tcp() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, INVITE);
    c.dst_uri = Some("sip:127.0.0.1:5080;transport=tcp".into());
    call(&m, &mut c, "record_route", &[]);
    let o = out(&c);
    assert!(
        o.contains(
            "Record-Route: <sip:127.0.0.1:5061;transport=tcp;lr;ftag=ft1>\r\n\
             Record-Route: <sip:127.0.0.1:5060;lr;ftag=ft1>\r\n"
        ),
        "{o}"
    );
    let m = modules(&[("enable_double_rr", 0)]);
    let mut c = ctx(&env, INVITE);
    c.dst_uri = Some("sip:127.0.0.1:5080;transport=tcp".into());
    call(&m, &mut c, "record_route", &[]);
    assert_eq!(out(&c).matches("Record-Route: <sip:127").count(), 1);
}

#[test]
fn preset_adds_sip_scheme() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, INVITE);
    call(
        &m,
        &mut c,
        "record_route_preset",
        &[Arg::Str("example.org:5070".into())],
    );
    assert!(out(&c).contains("Record-Route: <sip:example.org:5070;lr;ftag=ft1>\r\n"));
}

const BYE: &str = "BYE sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK2
Route: <sip:127.0.0.1:5060;lr;ftag=ft1;nat=yes>, <sip:next.example;lr>
Route: <sip:last.example;lr>
From: <sip:alice@a>;tag=ft1
To: <sip:bob@b>;tag=tt1
Call-ID: c1
CSeq: 2 BYE
Content-Length: 0

";

#[test]
fn loose_route_consumes_our_route_and_sets_next_hop() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, BYE);
    assert_eq!(call(&m, &mut c, "loose_route", &[]), Flow::True);
    assert_eq!(c.dst_uri.as_deref(), Some("sip:next.example;lr"));
    let o = out(&c);
    assert!(
        o.contains("Route: <sip:next.example;lr>\r\nRoute: <sip:last.example;lr>\r\n"),
        "{o}"
    );
    assert!(!o.contains("5060;lr"));
    assert_eq!(
        call(
            &m,
            &mut c,
            "check_route_param",
            &[Arg::Str("nat=yes".into())]
        ),
        Flow::True
    );
    assert_eq!(
        call(
            &m,
            &mut c,
            "check_route_param",
            &[Arg::Str("nat=no".into())]
        ),
        Flow::False
    );
    assert_eq!(
        call(&m, &mut c, "is_direction", &[Arg::Str("downstream".into())]),
        Flow::True
    );
}

#[test]
fn upstream_direction_by_ftag() {
    let env = env();
    let m = modules(&[]);
    let msg = BYE
        .replace("From: <sip:alice@a>;tag=ft1", "From: <sip:bob@b>;tag=tt1")
        .replace("To: <sip:bob@b>;tag=tt1", "To: <sip:alice@a>;tag=ft1");
    let mut c = ctx(&env, &msg);
    call(&m, &mut c, "loose_route", &[]);
    assert_eq!(
        call(&m, &mut c, "is_direction", &[Arg::Str("upstream".into())]),
        Flow::True
    );
}

#[test]
fn only_our_route_left_means_ruri_is_next_hop() {
    let env = env();
    let m = modules(&[]);
    let msg = "ACK sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK3
Route: <sip:127.0.0.1:5060;lr>
From: <sip:alice@a>;tag=ft1
To: <sip:bob@b>;tag=tt1
Call-ID: c1
CSeq: 1 ACK
Content-Length: 0

";
    let mut c = ctx(&env, msg);
    assert_eq!(call(&m, &mut c, "loose_route", &[]), Flow::True);
    assert_eq!(c.dst_uri, None);
    assert!(!out(&c).contains("Route:"));
}

#[test]
fn strict_router_upstream_last_route_becomes_ruri() {
    let env = env();
    let m = modules(&[]);
    let msg = "BYE sip:127.0.0.1:5060;lr;ftag=ft1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK4
Route: <sip:next.example;lr>, <sip:bob@127.0.0.1:5080>
From: <sip:alice@a>;tag=ft1
To: <sip:bob@b>;tag=tt1
Call-ID: c1
CSeq: 3 BYE
Content-Length: 0

";
    let mut c = ctx(&env, msg);
    assert_eq!(call(&m, &mut c, "rewriteFromRoute", &[]), Flow::True);
    assert_eq!(c.new_uri.as_deref(), Some("sip:bob@127.0.0.1:5080"));
    assert_eq!(c.dst_uri.as_deref(), Some("sip:next.example;lr"));
    let o = out(&c);
    assert!(o.contains("Route: <sip:next.example;lr>\r\nFrom"), "{o}");
}

#[test]
fn no_route_or_foreign_strict_next_hop() {
    let env = env();
    let m = modules(&[]);
    let mut c = ctx(&env, INVITE);
    assert_eq!(call(&m, &mut c, "loose_route", &[]), Flow::False);
    let msg = BYE.replace("<sip:next.example;lr>", "<sip:strict.example>");
    let mut c = ctx(&env, &msg);
    assert_eq!(call(&m, &mut c, "loose_route", &[]), Flow::True);
    assert_eq!(c.new_uri.as_deref(), Some("sip:strict.example"));
    let o = out(&c);
    assert!(o.contains("Route: <sip:last.example;lr>\r\n"), "{o}");
    assert!(o.contains("Route: <sip:bob@127.0.0.1:5080>\r\n"), "{o}");
    assert!(!o.contains("strict.example>"), "{o}");
}

#[test]
fn bad_direction_is_a_fixup_error() {
    let m = modules(&[]);
    let (l, f) = m.function("is_direction").unwrap();
    let r = (f.fixup)(
        &FixupCtx {
            module: &l.env,
            names: &Names,
        },
        &[Arg::Str("sideways".into())],
    );
    assert!(r.is_err());
}

/// Script names with `avpflags dialog_cookie;` declared (bit 2).
struct CookieNames;
impl ScriptNames for CookieNames {
    fn flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn avp_flag(&self, name: &str) -> Option<u32> {
        (name == "dialog_cookie").then_some(2)
    }
    fn has_route(&self, _: RouteMask, _: &str) -> bool {
        false
    }
}

fn cookie_modules(secret: &str, filter: &str) -> Modules {
    let mut m = Modules::default();
    m.load("rr").unwrap();
    for (p, v) in [("cookie_secret", secret), ("cookie_filter", filter)] {
        m.modparam("rr", p, &crate::iface::ParamValue::Str(v.into()), &|_| None)
            .unwrap();
    }
    m
}

fn cookie_call(m: &Modules, ctx: &mut MsgCtx<'_>, name: &str) -> Flow {
    let (l, f) = m.function(name).unwrap();
    let h = (f.fixup)(
        &FixupCtx {
            module: &l.env,
            names: &CookieNames,
        },
        &[],
    )
    .unwrap();
    h(ctx)
}

fn user_avp(name: &str) -> crate::runtime::avp::AvpRef {
    crate::runtime::avp::AvpRef {
        track: Some(crate::runtime::avp::Track::From),
        class: Some(crate::runtime::avp::Class::User),
        name: crate::runtime::avp::AvpName::Str(name.into()),
    }
}

/// The Record-Route URI record_route() put on an INVITE carrying flagged
/// `account` and `other` AVPs and an unflagged `plain` one.
fn cookie_rr(m: &Modules) -> String {
    let env = env();
    let mut c = ctx(&env, INVITE);
    for (name, flagged) in [("account", true), ("other", true), ("plain", false)] {
        c.avps
            .assign(&user_avp(name), Value::Str(format!("{name}-v")));
        if flagged {
            c.avps.set_flag(&user_avp(name), 2);
        }
    }
    assert_eq!(cookie_call(m, &mut c, "record_route"), Flow::True);
    let o = out(&c);
    let rr = o.lines().nth(1).unwrap();
    let uri = rr
        .strip_prefix("Record-Route: <")
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{o}"));
    uri.to_owned()
}

/// A BYE routed through `rr_uri`; `upstream`: sent by the callee.
fn bye_through(rr_uri: &str, upstream: bool) -> String {
    let (from, to) = if upstream {
        ("<sip:bob@b>;tag=tt1", "<sip:alice@a>;tag=ft1")
    } else {
        ("<sip:alice@a>;tag=ft1", "<sip:bob@b>;tag=tt1")
    };
    format!(
        "BYE sip:bob@127.0.0.1:5080 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK2\n\
         Route: <{rr_uri}>\nFrom: {from}\nTo: {to}\nCall-ID: c1\nCSeq: 2 BYE\nContent-Length: 0\n\n"
    )
}

#[test]
fn avp_cookie_travels_in_record_route_and_comes_back_with_loose_route() {
    let m = cookie_modules("s3cret", "^(account)$");
    let uri = cookie_rr(&m);
    assert!(uri.contains(";avp="), "{uri}");
    assert!(!uri.contains("plain-v"), "the cookie is encoded: {uri}");

    let env = env();
    let mut c = ctx(&env, &bye_through(&uri, false));
    assert_eq!(cookie_call(&m, &mut c, "loose_route"), Flow::True);
    let account = user_avp("account");
    assert_eq!(c.avps.get(&account), Some(&Value::from("account-v")));
    assert_eq!(
        c.avps.flags(&account),
        Some(1 << 2),
        "restored with the flag"
    );
    assert!(c.avps.get(&user_avp("other")).is_none(), "filtered out");
    assert!(c.avps.get(&user_avp("plain")).is_none(), "never flagged");

    // The callee's BYE: From/To swapped, so the AVP comes back on the To track.
    let mut c = ctx(&env, &bye_through(&uri, true));
    cookie_call(&m, &mut c, "loose_route");
    assert!(c.avps.get(&account).is_none());
    let to_account = crate::runtime::avp::AvpRef {
        track: Some(crate::runtime::avp::Track::To),
        ..account.clone()
    };
    assert_eq!(c.avps.get(&to_account), Some(&Value::from("account-v")));

    // Another secret (another server, or a forged cookie): nothing restored.
    let other = cookie_modules("different", "");
    let mut c = ctx(&env, &bye_through(&uri, false));
    assert_eq!(cookie_call(&other, &mut c, "loose_route"), Flow::True);
    assert!(c.avps.is_empty());
    // An altered cookie neither.
    let (head, tail) = uri.split_once(";avp=").unwrap();
    let first = if tail.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{head};avp={first}{}", &tail[1..]);
    let mut c = ctx(&env, &bye_through(&forged, false));
    cookie_call(&m, &mut c, "loose_route");
    assert!(c.avps.is_empty());
}

#[test]
fn without_filter_every_flagged_avp_travels_and_bad_filters_are_fixup_errors() {
    let m = cookie_modules("", "");
    let uri = cookie_rr(&m);
    let env = env();
    let mut c = ctx(&env, &bye_through(&uri, false));
    cookie_call(&m, &mut c, "loose_route");
    assert!(c.avps.get(&user_avp("account")).is_some());
    assert!(c.avps.get(&user_avp("other")).is_some());
    assert!(c.avps.get(&user_avp("plain")).is_none());
    // No cookie without flagged AVPs, or without the avpflag declared.
    let mut c = ctx(&env, INVITE);
    cookie_call(&m, &mut c, "record_route");
    assert!(!out(&c).contains(";avp="));

    let bad = cookie_modules("", "(");
    let (l, f) = bad.function("record_route").unwrap();
    let r = (f.fixup)(
        &FixupCtx {
            module: &l.env,
            names: &CookieNames,
        },
        &[],
    );
    assert!(r.err().unwrap().message.contains("cookie_filter"));
}
