//! Routing engine tests: small configs (parsed by ser-parser) run against real
//! SIP messages (ser-sip) with a recording transport.

mod support;

use std::sync::Arc;

use ser::route::{self, LoadOptions, MsgCtx, Outcome, Recorder, Script};
use ser_modules::registry;
use ser_modules::runtime::pvar::parse_pv;
use ser_modules::Value;
use ser_parser::ParseOptions;
use ser_sip::SipMsg;
// The configs here run without shared memory: loaded, modules not initialised.
use support::engine::{self, load_only as load, shared_config, try_load, Run, PROXY};

const SRC: &str = "127.0.0.2:5062";
/// Names `myself` has besides 127.0.0.1:5060.
const DOMAINS: &[&str] = &["proxy.example.com"];

fn request(method: &str, ruri: &str, extra: &str) -> SipMsg {
    let text = format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-test-1;rport\r\n\
         From: <sip:carol@example.org>;tag=from1\r\n\
         To: <sip:alice@proxy.example.com>\r\n\
         Call-ID: call-1@127.0.0.2\r\n\
         CSeq: 1 {method}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    );
    SipMsg::parse(text.into_bytes()).expect("test message parses")
}

fn run_with(script: &Script, msg: SipMsg, inspect: impl FnOnce(&mut MsgCtx<'_>)) -> Run {
    engine::run_once(script, DOMAINS, SRC, msg, inspect)
}

fn run(script: &Script, msg: SipMsg) -> Run {
    run_with(script, msg, |_| {})
}

fn reply_of(cfg: &str, msg: SipMsg) -> Vec<(u16, String)> {
    run(&load(cfg), msg).replies
}

fn one(code: u16, reason: &str) -> Vec<(u16, String)> {
    vec![(code, reason.to_owned())]
}

const SL: &str = "loadmodule \"sl\"\n";

#[test]
fn ruri_user_selects_the_reply() {
    let cfg = format!(
        "{SL}route {{ if ($rU == \"alice\") sl_send_reply(\"200\",\"A\"); else sl_send_reply(\"404\",\"B\"); }}"
    );
    let s = load(&cfg);
    assert_eq!(
        run(&s, request("INVITE", "sip:alice@proxy.example.com", "")).replies,
        one(200, "A")
    );
    assert_eq!(
        run(&s, request("INVITE", "sip:bob@proxy.example.com", "")).replies,
        one(404, "B")
    );
}

#[test]
fn reply_reason_expands_pvars_and_gets_our_tag() {
    let s = load(&format!(
        "{SL}route {{ sl_send_reply(\"404\", \"No $rU here\"); }}"
    ));
    let r = run(&s, request("INVITE", "sip:bob@proxy.example.com", ""));
    assert_eq!(r.replies, one(404, "No bob here"));
    let (dst, buf) = &r.sent[0];
    // rport in the Via: reply to the source port
    assert_eq!(dst.to_string(), SRC);
    assert!(buf.contains(";tag="), "{buf}");
    assert!(buf.contains("rport=5062"), "{buf}");
}

#[test]
fn flags_named_and_numbered() {
    let cfg = format!(
        "{SL}flags FLAG_ACC : 1, FLAG_X;\n\
         route {{ setflag(FLAG_ACC); setflag(5); resetflag(5);\n\
         if (isflagset(FLAG_ACC) && !isflagset(5)) sl_send_reply(\"200\",\"flags\"); }}"
    );
    let r = run(&load(&cfg), request("INVITE", "sip:a@b", ""));
    assert_eq!(r.replies, one(200, "flags"));
    assert_eq!(r.flags, 1 << 1);
    // undeclared flag name is a load error
    let e = try_load("route { setflag(NOPE); }").err().unwrap();
    assert!(e.contains("unknown flag `NOPE`"), "{e}");
}

#[test]
fn branch_flags_kex_string_form() {
    let cfg = format!(
        "{SL}route {{ setbflag(\"6\"); if (isbflagset(\"6\")) sl_send_reply(\"200\",\"bflag\"); }}"
    );
    assert_eq!(
        reply_of(&cfg, request("INVITE", "sip:a@b", "")),
        one(200, "bflag")
    );
}

#[test]
fn avps_in_every_syntax() {
    let cfg = format!(
        "{SL}route {{ $avp(s:x) = \"v\"; $t.did = \"d1\"; $account = \"yes\"; $avp(i:80) = 5;\n\
         if ($avp(s:x) == \"v\" && $t.did == \"d1\" && $f.did == $null && $account == \"yes\" && $avp(i:80) == 5)\n\
           sl_send_reply(\"200\", \"avp $t.did\");\n\
         else sl_send_reply(\"500\", \"bad\"); }}"
    );
    let mut avp = Value::Null;
    let r = run_with(&load(&cfg), request("INVITE", "sip:a@b", ""), |ctx| {
        avp = ctx.get_pv(&parse_pv("$avp(s:x)").unwrap());
    });
    assert_eq!(r.replies, one(200, "avp d1"));
    assert_eq!(avp, Value::from("v"));
}

#[test]
fn route_return_value_becomes_retcode() {
    let cfg = format!(
        "{SL}route {{ route(TWO); if ($? == -2) {{ sl_send_reply(\"200\",\"rc\"); exit; }} sl_send_reply(\"500\",\"no\"); }}\n\
         route[TWO] {{ return(-2); }}"
    );
    assert_eq!(
        reply_of(&cfg, request("INVITE", "sip:a@b", "")),
        one(200, "rc")
    );
}

#[test]
fn negative_return_is_false() {
    let cfg = format!(
        "{SL}route {{ if (route(NEG)) sl_send_reply(\"500\",\"true\"); else sl_send_reply(\"200\",\"false\"); }}\n\
         route[NEG] {{ return(-1); }}"
    );
    assert_eq!(
        reply_of(&cfg, request("INVITE", "sip:a@b", "")),
        one(200, "false")
    );
    // positive is true; `return;` is 1
    let cfg = format!(
        "{SL}route {{ if (route(POS)) sl_send_reply(\"200\",\"true\"); }}\nroute[POS] {{ return; }}"
    );
    assert_eq!(
        reply_of(&cfg, request("INVITE", "sip:a@b", "")),
        one(200, "true")
    );
}

#[test]
fn exit_and_drop_stop_the_script() {
    let s = load(&format!(
        "{SL}route {{ route(X); sl_send_reply(\"500\",\"after\"); }}\nroute[X] {{ exit; }}"
    ));
    let r = run(&s, request("INVITE", "sip:a@b", ""));
    assert_eq!((r.outcome, r.replies.len()), (Outcome::Exit, 0));
    let s = load(&format!(
        "{SL}route {{ drop; sl_send_reply(\"500\",\"after\"); }}"
    ));
    let r = run(&s, request("INVITE", "sip:a@b", ""));
    assert_eq!((r.outcome, r.replies.len()), (Outcome::Drop, 0));
    // return(0) from a sub-route stops everything
    let s = load(&format!(
        "{SL}route {{ route(Z); sl_send_reply(\"500\",\"after\"); }}\nroute[Z] {{ return(0); }}"
    ));
    assert_eq!(
        run(&s, request("INVITE", "sip:a@b", "")).outcome,
        Outcome::Exit
    );
}

#[test]
fn ser_08_break_ends_the_route() {
    let cfg = format!(
        "{SL}route {{ if (method==\"REGISTER\") {{ sl_send_reply(\"200\",\"reg\"); break; }}; sl_send_reply(\"404\",\"other\"); }}"
    );
    let s = load(&cfg);
    assert_eq!(
        run(&s, request("REGISTER", "sip:proxy.example.com", "")).replies,
        one(200, "reg")
    );
    assert_eq!(
        run(&s, request("INVITE", "sip:a@b", "")).replies,
        one(404, "other")
    );
}

#[test]
fn switch_falls_through_until_break() {
    let cfg = format!(
        "{SL}route {{ $var(x) = $avp(s:in); $var(y) = \"\";\n\
         switch ($var(x)) {{\n\
           case 1:\n\
           case 2: $var(y) = $var(y) + \"a\";\n\
           case 3: $var(y) = $var(y) + \"b\"; break;\n\
           case \"s\": $var(y) = \"str\"; break;\n\
           default: $var(y) = \"d\";\n\
         }}\n\
         sl_send_reply(\"200\", \"$var(y)\"); }}"
    );
    let s = load(&cfg);
    let with = |v: Value| {
        let rec = Arc::new(Recorder::default());
        let env = engine::env(&rec, DOMAINS);
        let mut ctx = engine::ctx(request("INVITE", "sip:a@b", ""), &env, SRC);
        ctx.set_pv(&parse_pv("$avp(s:in)").unwrap(), v, false)
            .unwrap();
        s.run_request(&mut ctx);
        let (_, b) = rec.take().pop().unwrap();
        let m = SipMsg::parse(b).unwrap();
        String::from_utf8_lossy(m.reason().unwrap()).into_owned()
    };
    assert_eq!(with(Value::Int(1)), "ab");
    assert_eq!(with(Value::Int(2)), "ab");
    assert_eq!(with(Value::Int(3)), "b");
    assert_eq!(with(Value::from("s")), "str");
    assert_eq!(with(Value::Int(9)), "d");
}

#[test]
fn kamailio_31_switch_on_rc() {
    let cfg = format!(
        "{SL}route {{ route(L); switch ($rc) {{ case -1: case -3: sl_send_reply(\"404\",\"Not Found\"); exit;\n\
         case -2: sl_send_reply(\"405\",\"Method Not Allowed\"); exit; }} sl_send_reply(\"200\",\"found\"); }}\n\
         route[L] {{ if ($rU == \"a\") return(-3); if ($rU == \"b\") return(-2); return(1); }}"
    );
    let s = load(&cfg);
    assert_eq!(
        run(&s, request("INVITE", "sip:a@h", "")).replies,
        one(404, "Not Found")
    );
    assert_eq!(
        run(&s, request("INVITE", "sip:b@h", "")).replies,
        one(405, "Method Not Allowed")
    );
    assert_eq!(
        run(&s, request("INVITE", "sip:c@h", "")).replies,
        one(200, "found")
    );
}

#[test]
fn while_is_bounded_by_max_while_loops() {
    let cfg = format!(
        "{SL}route {{ $var(i) = 0; while (1) {{ $var(i) = $var(i) + 1; }} sl_send_reply(\"200\", \"$var(i)\"); }}"
    );
    assert_eq!(
        reply_of(&cfg, request("INVITE", "sip:a@b", "")),
        one(200, "100")
    );
    let cfg = format!(
        "{SL}route {{ $var(i) = 0; while ($var(i) < 5) {{ $var(i) = $var(i) + 1; if ($var(i) == 3) break; }} sl_send_reply(\"200\", \"$var(i)\"); }}"
    );
    assert_eq!(
        reply_of(&cfg, request("INVITE", "sip:a@b", "")),
        one(200, "3")
    );
}

#[test]
fn recursion_is_limited() {
    let cfg = format!(
        "{SL}route {{ route(R); sl_send_reply(\"500\",\"x\"); }}\nroute[R] {{ route(R); }}"
    );
    let r = run(&load(&cfg), request("INVITE", "sip:a@b", ""));
    assert_eq!(r.outcome, Outcome::Exit);
}

#[test]
fn core_keyword_tests() {
    let cfg = format!(
        "{SL}route {{\n\
         if (uri==myself && method==\"invite\" && src_ip==127.0.0.0/8 && src_port==5062 && proto==UDP && af==INET && msg:len < 4096 && from_uri!=myself)\n\
           sl_send_reply(\"200\",\"kw\");\n\
         else sl_send_reply(\"500\",\"kw\"); }}"
    );
    let s = load(&cfg);
    assert_eq!(
        run(&s, request("INVITE", "sip:alice@127.0.0.1", "")).replies,
        one(200, "kw")
    );
    assert_eq!(
        run(&s, request("INVITE", "sip:alice@other.org", "")).replies,
        one(500, "kw")
    );
    // SER 3.0 `!method=="REGISTER"` and bare identifier `method == CANCEL`
    let cfg = format!(
        "{SL}route {{ if (method == CANCEL) sl_send_reply(\"200\",\"cancel\"); else if (!method==\"REGISTER\") sl_send_reply(\"200\",\"notreg\"); }}"
    );
    let s = load(&cfg);
    assert_eq!(
        run(&s, request("CANCEL", "sip:a@b", "")).replies,
        one(200, "cancel")
    );
    assert_eq!(
        run(&s, request("INVITE", "sip:a@b", "")).replies,
        one(200, "notreg")
    );
}

#[test]
fn regex_match_and_concat_assignment() {
    let cfg = format!(
        "{SL}custom.gw = \"10.0.0.1\" desc \"gw\"\n\
         route {{ if ($rU=~\"^(\\+|00)[1-9][0-9]{{3,20}}$\") {{ $ru = \"sip:\" + $rU + \"@\" + $sel(cfg_get.custom.gw); sl_send_reply(\"200\", \"$ru\"); }}\n\
         else sl_send_reply(\"404\",\"no\"); }}"
    );
    let s = load(&cfg);
    assert_eq!(
        run(&s, request("INVITE", "sip:+4912345@h", "")).replies,
        one(200, "sip:+4912345@10.0.0.1")
    );
    assert_eq!(
        run(&s, request("INVITE", "sip:alice@h", "")).replies,
        one(404, "no")
    );
    let e = try_load("route { if ($rU =~ \"(\") exit; }").err().unwrap();
    assert!(e.contains("bad regular expression"), "{e}");
}

#[test]
fn selects_and_strempty() {
    let cfg = format!(
        "{SL}route {{ if (strempty(@to.tag) && @from.uri.host == \"example.org\" && @ruri.host == \"h\") sl_send_reply(\"200\",\"%@from.tag\"); }}"
    );
    assert_eq!(
        reply_of(&cfg, request("INVITE", "sip:a@h", "")),
        one(200, "from1")
    );
}

#[test]
fn maxfwd_zero_is_483_and_missing_header_is_added() {
    let cfg = format!(
        "{SL}loadmodule \"maxfwd\"\nroute {{ if (!mf_process_maxfwd_header(\"10\")) {{ sl_send_reply(\"483\",\"Too Many Hops\"); exit; }}\n\
         forward(\"127.0.0.1\", 5070); }}"
    );
    let s = load(&cfg);
    let r = run(&s, request("INVITE", "sip:a@b", "Max-Forwards: 0\r\n"));
    assert_eq!(r.replies, one(483, "Too Many Hops"));
    // decremented
    let r = run(&s, request("INVITE", "sip:a@b", "Max-Forwards: 70\r\n"));
    assert_eq!(r.sent.len(), 1);
    assert!(
        r.sent[0].1.contains("Max-Forwards: 69\r\n"),
        "{}",
        r.sent[0].1
    );
    // missing: added with the limit
    let r = run(&s, request("INVITE", "sip:a@b", ""));
    assert!(
        r.sent[0].1.contains("Max-Forwards: 10\r\n"),
        "{}",
        r.sent[0].1
    );
}

#[test]
fn forward_adds_our_via_and_rewrites_the_ruri() {
    let cfg = "route { rewritehostport(\"127.0.0.1:5080\"); prefix(\"00\"); forward(); }";
    let r = run(
        &load(cfg),
        request("INVITE", "sip:alice@proxy.example.com", ""),
    );
    assert_eq!(r.sent.len(), 1, "{:?}", r.sent);
    let (dst, buf) = &r.sent[0];
    assert_eq!(dst.to_string(), "127.0.0.1:5080");
    assert!(
        buf.starts_with("INVITE sip:00alice@127.0.0.1:5080 SIP/2.0\r\n"),
        "{buf}"
    );
    assert!(
        buf.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"),
        "{buf}"
    );
    // the sender's Via gets received/rport
    assert!(buf.contains("rport=5062"), "{buf}");
    // SER 0.8 `forward(uri:host, uri:port)`: the R-URI's host and port
    let r = run(
        &load("route { forward(uri:host, uri:port); }"),
        request("OPTIONS", "sip:a@127.0.0.1:5077", ""),
    );
    assert_eq!(r.sent[0].0.to_string(), "127.0.0.1:5077");
    // RFC 3261 16.6: Max-Forwards added when missing
    assert!(buf.contains("Max-Forwards: 70\r\n"), "{buf}");
}

#[test]
fn ack_to_our_reply_is_absorbed() {
    let s = load(&format!("{SL}route {{ sl_send_reply(\"404\",\"Nope\"); }}"));
    let r = run(&s, request("INVITE", "sip:a@b", ""));
    let buf = &r.sent[0].1;
    let reply = SipMsg::parse(buf.clone().into_bytes()).unwrap();
    let tag = String::from_utf8_lossy(reply.s(reply.to().unwrap().tag.unwrap())).into_owned();
    let ack = |tag: &str| {
        let text = format!(
            "ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-test-1\r\n\
             From: <sip:carol@example.org>;tag=from1\r\nTo: <sip:alice@proxy.example.com>;tag={tag}\r\n\
             Call-ID: call-1@127.0.0.2\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        SipMsg::parse(text.into_bytes()).unwrap()
    };
    let r = run(&s, ack(&tag));
    assert_eq!((r.outcome, r.sent.len()), (Outcome::Drop, 0));
    // an ACK for someone else's reply runs the script (sl refuses to reply to ACK)
    let fwd = load("route { forward(\"127.0.0.1\", 5090); }");
    let r = run(&fwd, ack("other"));
    assert_eq!(r.sent.len(), 1);
    // 0.8.8 sl_filter_ACK() stops the script for our ACKs
    let s = load(&format!(
        "{SL}route {{ sl_filter_ACK(); forward(\"127.0.0.1\", 5090); }}"
    ));
    let r = run_with(&s, ack("other"), |_| {});
    assert_eq!(r.sent.len(), 1);
}

#[test]
fn sl_reply_error_uses_last_error() {
    let s = load(&format!(
        "{SL}route {{ forward(\"no-such-host.invalid\"); sl_reply_error(); }}"
    ));
    let r = run(&s, request("INVITE", "sip:a@b", ""));
    assert_eq!(r.replies.len(), 1);
    assert_eq!(r.replies[0].0, 478);
}

#[test]
fn replies_are_forwarded_by_the_next_via() {
    let s = load("onreply_route { if (status =~ \"^1\") drop; }");
    let reply = |code: &str| {
        let text = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n\
             Via: SIP/2.0/UDP 127.0.0.3:5099;branch=z9hG4bKtheirs\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        SipMsg::parse(text.into_bytes()).unwrap()
    };
    let r = run(&s, reply("200"));
    assert_eq!(r.sent.len(), 1);
    assert_eq!(r.sent[0].0.to_string(), "127.0.0.3:5099");
    assert!(!r.sent[0].1.contains("z9hG4bKours"));
    let r = run(&s, reply("180"));
    assert_eq!((r.outcome, r.sent.len()), (Outcome::Drop, 0));
}

#[test]
fn legacy_2001_table_forwards_by_first_match() {
    let cfg = "# t\n^INVITE   .*   127.0.0.1\n.   .   nowhere.invalid\n";
    let s = load(cfg);
    let r = run(&s, request("INVITE", "sip:a@b", ""));
    assert_eq!(r.sent.len(), 1);
    assert_eq!(r.sent[0].0.to_string(), "127.0.0.1:5060");
}

#[test]
fn the_2001_table_file_routes_by_its_rules() {
    // nothing is sent: the recording transport only notes the destination
    let s = load(&shared_config("sip_router-2001.cfg"));
    let r = run(&s, request("OPTIONS", "sip:x@example.org", ""));
    assert_eq!(r.sent.len(), 1);
    assert_eq!(r.sent[0].0.to_string(), "192.168.46.55:5060");
}

#[test]
fn module_pvars_and_named_routes_run_by_modules() {
    // what tm does for a failure route: fill $T_* and run the route by name
    let s = load("failure_route[F] { if ($T_reply_code == 486) $var(r) = \"busy\"; }");
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, DOMAINS);
    let mut ctx = engine::ctx(request("INVITE", "sip:a@b", ""), &env, SRC);
    ctx.module_pvs
        .insert("T_reply_code".into(), Value::Int(486));
    let out = s.run_route(ser_parser::ast::RouteKind::Failure, Some("F"), &mut ctx);
    assert_eq!(out, Outcome::Done);
    assert_eq!(
        ctx.get_pv(&parse_pv("$var(r)").unwrap()),
        Value::from("busy")
    );
    assert_eq!(
        s.run_route(ser_parser::ast::RouteKind::Failure, Some("NOPE"), &mut ctx),
        Outcome::NoRoute
    );
}

#[test]
fn load_time_diagnostics() {
    let e = try_load(&format!("{SL}route {{ sl_send_replay(\"200\",\"x\"); }}"))
        .err()
        .unwrap();
    assert!(
        e.contains("unknown function `sl_send_replay`")
            && e.contains("did you mean `sl_send_reply`"),
        "{e}"
    );
    let e = try_load("route { mf_process_maxfwd_header(\"10\"); }")
        .err()
        .unwrap();
    assert!(
        e.contains("module `maxfwd`, which is not loaded") && e.contains("loadmodule \"maxfwd\""),
        "{e}"
    );
    let e = try_load(&format!("{SL}route {{ sl_send_reply(\"200\"); }}"))
        .err()
        .unwrap();
    assert!(e.contains("takes 2 argument(s), 1 given"), "{e}");
    let e = try_load(&format!("{SL}route {{ sl_send_reply(\"2000\", \"x\"); }}"))
        .err()
        .unwrap();
    assert!(e.contains("out of range"), "{e}");
    let e = try_load("route { route(NOPE); }").err().unwrap();
    assert!(e.contains("route `NOPE` is not defined"), "{e}");
    let e = try_load("loadmodule \"/usr/lib/ser/modules/nosuch.so\"\nroute { exit; }")
        .err()
        .unwrap();
    assert!(e.contains("unknown module `nosuch`"), "{e}");
    let e = try_load("loadmodule \"sl\"\nmodparam(\"sl\", \"nope\", 1)\nroute { exit; }")
        .err()
        .unwrap();
    assert!(e.contains("has no parameter `nope`"), "{e}");
    let e = try_load(&format!(
        "{SL}onreply_route {{ sl_send_reply(\"200\", \"x\"); }}"
    ))
    .err()
    .unwrap();
    assert!(
        e.contains("`sl_send_reply` cannot be used in onreply_route"),
        "{e}"
    );
    let e = try_load("route { $rm = \"x\"; }").err().unwrap();
    assert!(e.contains("read-only"), "{e}");
    let e = try_load("route { if (uri == myself) { break; } }\nroute { exit; }")
        .err()
        .unwrap();
    assert!(e.contains("defined twice"), "{e}");
    // loadmodule with a path selects the built-in module
    assert!(
        try_load("loadmodule \"/usr/lib/ser/modules/sl.so\"\nroute { sl_reply_error(); }").is_ok()
    );
}

/// Load a shared config and return only the messages of its diagnostics.
fn missing_of(name: &str, defines: &[&str]) -> Vec<String> {
    let text = shared_config(name);
    let opts = ParseOptions {
        defines: defines.iter().map(|d| (d.to_string(), None)).collect(),
        ..ParseOptions::default()
    };
    let parsed = ser_parser::parse_str(name, &text, &opts)
        .unwrap_or_else(|d| panic!("{name} does not parse: {d:?}"));
    match route::load(&parsed, &LoadOptions::default()) {
        Ok(_) => Vec::new(),
        Err(ds) => ds.into_iter().map(|d| d.message).collect(),
    }
}

/// Every diagnostic must be about a missing module or function, and the
/// missing names must be exactly the listed ones that are still not built in
/// (the lists are the state when written; entries drop out as modules land).
fn assert_only_missing(name: &str, modules: &[&str], functions: &[&str]) {
    assert_only_missing_with(name, &[], modules, functions)
}

fn assert_only_missing_with(name: &str, defines: &[&str], modules: &[&str], functions: &[&str]) {
    let param_re =
        regex::Regex::new(r"^modparam: module `([a-z_0-9]+)` has no parameter `([a-z_0-9]+)`")
            .unwrap();
    let module_re =
        regex::Regex::new(r"^module `([a-z_0-9]+)` is not available in this build").unwrap();
    let func_re = regex::Regex::new(
        r"^function `([A-Za-z_0-9]+)` \(module `[a-z_0-9]+`\) is not available in this build",
    )
    .unwrap();
    let mut got_modules = std::collections::BTreeSet::new();
    let mut got_functions = std::collections::BTreeSet::new();
    for msg in missing_of(name, defines) {
        if let Some(c) = module_re.captures(&msg) {
            got_modules.insert(c[1].to_owned());
        } else if let Some(c) = func_re.captures(&msg) {
            got_functions.insert(c[1].to_owned());
        } else if param_re.is_match(&msg) {
            panic!("{name}: unexpected missing parameter: {msg}");
        } else {
            panic!("{name}: unexpected diagnostic: {msg}");
        }
    }
    let built_in = |f: &str| {
        registry::builtin()
            .iter()
            .any(|m| m.functions().iter().any(|e| e.name == f))
    };
    let want_modules: std::collections::BTreeSet<String> = modules
        .iter()
        .filter(|m| registry::find_builtin(m).is_none())
        .map(|s| s.to_string())
        .collect();
    let want_functions: std::collections::BTreeSet<String> = functions
        .iter()
        .filter(|f| !built_in(f))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got_modules, want_modules, "{name}: missing modules");
    assert_eq!(got_functions, want_functions, "{name}: missing functions");
}

#[test]
fn ser_088_config_lacks_only_missing_modules() {
    assert_only_missing(
        "ser-0.8.8.cfg",
        &["tm", "rr", "usrloc", "registrar"],
        &["rewriteFromRoute", "save", "lookup", "t_relay"],
    );
}

#[test]
fn ser_oob_30_config_loads_completely() {
    // Every module, function and parameter of the SER 3.0 sample config is
    // built in (xmlrpc and rr's AVP cookie parameters were the last).
    assert_eq!(
        missing_of("ser-oob-3.0.cfg", &[]),
        Vec::<String>::new(),
        "ser-oob-3.0.cfg"
    );
}

#[test]
fn kamailio_31_config_lacks_only_missing_modules() {
    assert_only_missing(
        "kamailio-3.1.cfg",
        &[
            "mi_fifo",
            "tm",
            "tmx",
            "rr",
            "usrloc",
            "registrar",
            "uri_db",
            "ctl",
            "mi_rpc",
            "acc",
        ],
        &[
            "t_check_trans",
            "t_relay",
            "t_on_reply",
            "t_on_failure",
            "t_newtran",
            "t_reply",
            "t_is_canceled",
            "record_route",
            "loose_route",
            "save",
            "lookup",
        ],
    );
}

#[test]
fn kamailio_31_config_with_every_feature_lacks_only_missing_modules() {
    assert_only_missing_with(
        "kamailio-3.1.cfg",
        &[
            "WITH_MYSQL",
            "WITH_AUTH",
            "WITH_IPAUTH",
            "WITH_USRLOCDB",
            "WITH_PRESENCE",
            "WITH_NAT",
            "WITH_PSTN",
            "WITH_ACCDB",
            "WITH_DEBUG",
        ],
        &[
            "db_mysql",
            "mi_fifo",
            "tm",
            "tmx",
            "rr",
            "usrloc",
            "registrar",
            "uri_db",
            "ctl",
            "mi_rpc",
            "acc",
            "auth",
            "auth_db",
            "permissions",
            "presence",
            "presence_xml",
            "nathelper",
            "rtpproxy",
        ],
        &[
            "t_check_trans",
            "t_relay",
            "t_on_reply",
            "t_on_failure",
            "t_newtran",
            "t_reply",
            "t_is_canceled",
            "t_release",
            "record_route",
            "loose_route",
            "add_rr_param",
            "check_route_param",
            "save",
            "lookup",
            "www_authorize",
            "proxy_authorize",
            "www_challenge",
            "proxy_challenge",
            "consume_credentials",
            "allow_source_address",
            "handle_publish",
            "handle_subscribe",
            "nat_uac_test",
            "fix_nated_register",
            "fix_nated_contact",
            "force_rtp_proxy",
            "unforce_rtp_proxy",
        ],
    );
}

#[test]
fn rpc_registry_has_module_methods_and_cfg_get() {
    use ser_fifo::RpcValue;
    let parsed = ser_parser::parse_str(
        "rpc.cfg",
        "pstn.gw_ip = \"10.0.0.9\" desc \"gw\"\nloadmodule \"ctl\"\nloadmodule \"cfg_rpc\"\nroute { drop; }\n",
        &ParseOptions::default(),
    )
    .unwrap();
    let init = route::serve::load(
        &parsed,
        &[("udp", PROXY.parse().unwrap())],
        &[],
        &LoadOptions::default(),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert!(init.wants_ctl());
    let reg = init.rpc_registry();
    let v = reg
        .call(
            "cfg.get",
            vec![RpcValue::Str("pstn".into()), RpcValue::Str("gw_ip".into())],
        )
        .unwrap();
    assert_eq!(v, vec![RpcValue::Str("10.0.0.9".into())]);
    assert!(reg
        .call(
            "cfg.get",
            vec![RpcValue::Str("x".into()), RpcValue::Str("y".into())]
        )
        .is_err());
}

/// `cargo test --release --test engine timing -- --ignored --nocapture`
#[test]
#[ignore]
fn timing() {
    use std::time::Instant;
    let text = shared_config("kamailio-3.1.cfg");
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        let parsed = ser_parser::parse_str("k.cfg", &text, &ParseOptions::default()).unwrap();
        let _ = route::load(&parsed, &LoadOptions::default());
    }
    let per_load = t.elapsed() / n;
    let s = load("route { }");
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, DOMAINS);
    let raw = request("INVITE", "sip:alice@proxy.example.com", "")
        .buf()
        .to_vec();
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let msg = SipMsg::parse(raw.clone()).unwrap();
        let mut ctx = engine::ctx(msg, &env, SRC);
        std::hint::black_box(s.run_request(&mut ctx));
    }
    let per_msg = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(SipMsg::parse(raw.clone()).unwrap());
    }
    let parse_only = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        let m = SipMsg::parse(raw.clone()).unwrap();
        std::hint::black_box(m.validate().is_ok());
    }
    let validate = t.elapsed() / n;
    let s = load(&format!(
        "{SL}loadmodule \"maxfwd\"\nroute {{ if (!mf_process_maxfwd_header(\"10\")) exit; if ($rU == \"alice\" && uri == myself) {{ setflag(1); $var(x) = $rU + \"@\" + $rd; }} }}"
    ));
    let t = Instant::now();
    for _ in 0..n {
        let msg = SipMsg::parse(raw.clone()).unwrap();
        let mut ctx = engine::ctx(msg, &env, SRC);
        std::hint::black_box(s.run_request(&mut ctx));
    }
    let small = t.elapsed() / n;
    println!(
        "kamailio-3.1.cfg parse+load: {per_load:?}; empty route incl. parse: {per_msg:?} (parse alone {parse_only:?}, parse+validate {validate:?}); small route: {small:?}"
    );
}

/// Mangled messages that still parse must never make the engine panic, whatever
/// the script reads or rewrites.
#[test]
fn mangled_messages_do_not_panic() {
    let cfg = format!(
        "{SL}loadmodule \"maxfwd\"\nloadmodule \"textops\"\nloadmodule \"sanity\"\nloadmodule \"siputils\"\n\
         route {{\n\
           $var(a) = $ru + $rU + $rd + $rp + $fu + $fU + $fd + $fn + $ft + $tu + $tU + $td + $tt + $ci + $cs + $rm + $ua + $au + $ar + $hdr(Via) + $ct + $cl + $rb;\n\
           $var(b) = @to.tag + @from.uri.host + @ruri.user + @call_id;\n\
           if (uri == myself || from_uri == myself || to_uri == myself) $var(c) = 1;\n\
           if ($rU =~ \"^a\") $var(c) = 2;\n\
           mf_process_maxfwd_header(\"10\");\n\
           has_totag(); is_method(\"INVITE|ACK\"); search(\"x\"); has_body(\"application/sdp\");\n\
           append_hf(\"X-A: $rU\\r\\n\"); remove_hf(\"Route\");\n\
           rewriteuser(\"bob\"); strip(1); prefix(\"9\"); rewritehostport(\"127.0.0.1:5099\");\n\
           $ru = \"sip:\" + $rU + \"@\" + $rd;\n\
           sanity_check();\n\
           if (has_totag()) sl_send_reply(\"404\", \"x $tU\"); else forward();\n\
         }}\n\
         onreply_route {{ $var(s) = $rs + $rr; }}"
    );
    let s = load(&cfg);
    let base = request(
        "INVITE",
        "sip:alice@127.0.0.1:5060;transport=udp",
        "Max-Forwards: 5\r\nRoute: <sip:127.0.0.1;lr>\r\nContact: <sip:c@127.0.0.2>\r\n",
    )
    .buf()
    .to_vec();
    let mut ran = 0;
    for i in 0..base.len() {
        for variant in 0..3u8 {
            let mut m = base.clone();
            match variant {
                0 => m.truncate(i),
                1 => m[i] = b'@',
                _ => m[i] = b' ',
            }
            if let Ok(msg) = SipMsg::parse(m) {
                let _ = run(&s, msg);
                ran += 1;
            }
        }
    }
    assert!(ran > 100, "only {ran} variants parsed");
}
