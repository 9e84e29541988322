//! tm and routing-engine features Kamailio configs rely on, through the
//! in-process engine: branch flags in onreply/failure routes,
//! `onsend_route` with `$snd(...)`, `t_relay("proto:host:port")` and
//! `t_relay_to`, our CANCEL retransmitted until its 200, `failure_reply_mode`,
//! `t_drop_replies`, `noisy_ctimer`, `t_grep_status`, `$(hdr(X)[i])`,
//! `append_branch()` consuming the R-URI.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ser::route::{Recorder, Script};
use ser_sip::SipMsg;
use support::engine::{self, header, load, run, sent, uas_reply};

const UAC: &str = "127.0.0.1:5070";
const UAS1: &str = "127.0.0.1:5081";
const UAS2: &str = "127.0.0.1:5082";

fn request(method: &str, callid: &str, to: &str) -> String {
    format!(
        "{method} sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{callid}\r\n\
         Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-far\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>\r\nCall-ID: {callid}\r\n\
         CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn find<'a>(s: &'a [(SocketAddr, SipMsg)], to: &str, what: &str) -> Option<&'a SipMsg> {
    s.iter()
        .find(|(a, m)| {
            a.to_string() == to
                && if m.is_request() {
                    m.method_bytes() == what.as_bytes()
                } else {
                    m.status().map(|c| c.to_string()).as_deref() == Some(what)
                }
        })
        .map(|(_, m)| m)
}

fn lines(s: &[(SocketAddr, SipMsg)]) -> Vec<String> {
    s.iter()
        .map(|(a, m)| format!("{a} {:?}", m.first_line()))
        .collect()
}

fn reason(m: &SipMsg) -> String {
    String::from_utf8_lossy(m.reason().unwrap_or_default()).into_owned()
}

/// The timer, `ms` from now.
fn tick(script: &Script, env: &ser::route::Env, ms: u64) {
    script
        .modules()
        .tick_all(env, Instant::now() + Duration::from_millis(ms))
}

/// tm's counters of this script's tm.
fn tm_stat(script: &Script, s: ser_modules::tm::core::Stat) -> u64 {
    let l = script
        .modules()
        .iter()
        .find(|l| l.module.name() == "tm")
        .expect("tm loaded");
    ser_modules::tm::tm_of(&l.env.state)
        .expect("tm init")
        .stat(s)
}

const BFLAGS: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "textops.so"

route {
	append_branch("sip:bob@127.0.0.1:5082");
	setbflag(6);
	t_on_reply("r");
	t_on_failure("f");
	t_relay();
	exit;
}

onreply_route[r] {
	if (isbflagset(6)) {
		append_hf("X-B6: yes\r\n");
		setbflag(7);
	} else {
		append_hf("X-B6: no\r\n");
	}
}

failure_route[f] {
	if (isbflagset(6) && isbflagset(7)) {
		t_reply("580", "branch flags 6 and 7");
	} else {
		t_reply("581", "other flags $bf");
	}
}
"#;

#[test]
fn onreply_and_failure_routes_see_the_branch_flags() {
    let script = load(BFLAGS);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("INVITE", "bf-1", UAS1), UAC);
    let s = sent(&rec);
    let to1 = find(&s, UAS1, "INVITE").expect("branch 0").clone();
    let to2 = find(&s, UAS2, "INVITE").expect("branch 1").clone();
    run(&script, &env, uas_reply(&to1, 180), UAS1);
    run(&script, &env, uas_reply(&to2, 183), UAS2);
    let s = sent(&rec);
    let r180 = find(&s, UAC, "180").expect("180 relayed");
    let r183 = find(&s, UAC, "183").expect("183 relayed");
    assert_eq!(
        header(r180, "X-B6").as_deref(),
        Some("yes"),
        "branch 0 flags"
    );
    assert_eq!(
        header(r183, "X-B6").as_deref(),
        Some("no"),
        "branch 1 flags"
    );
    // 486 on the flagged branch wins over 503: failure_route runs with its
    // flags, 6 from the request route and 7 from onreply_route.
    run(&script, &env, uas_reply(&to2, 503), UAS2);
    run(&script, &env, uas_reply(&to1, 486), UAS1);
    let s = sent(&rec);
    let fin = find(&s, UAC, "580").unwrap_or_else(|| panic!("580 upstream: {:?}", lines(&s)));
    assert_eq!(reason(fin), "branch flags 6 and 7");
}

const ONSEND: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"

route {
	if (method == "MESSAGE") {
		setflag(2);
		forward();
		exit;
	}
	append_branch("sip:bob@127.0.0.1:5082");
	t_relay();
	exit;
}

onsend_route {
	if (isflagset(2) && $snd(port) == 5081) {
		drop;
	}
	if ($snd(ip) == "127.0.0.1" && $snd(port) == 5082 && $snd(proto) == 1
	    && $snd(sproto) == "udp" && $snd(af) == 2 && $snd(len) > 100
	    && $snd(buf) =~ "^INVITE sip:bob@127.0.0.1:5082" && $snd(sport) == 5060) {
		drop;
	}
}
"#;

#[test]
fn onsend_route_sees_the_send_and_drop_stops_it() {
    let script = load(ONSEND);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("INVITE", "os-1", UAS1), UAC);
    let s = sent(&rec);
    assert!(find(&s, UAS1, "INVITE").is_some(), "{:?}", lines(&s));
    assert!(
        find(&s, UAS2, "INVITE").is_none(),
        "dropped by onsend_route: {:?}",
        lines(&s)
    );
    // forward(): the flag set in the request route is seen there too
    run(&script, &env, request("MESSAGE", "os-2", UAS1), UAC);
    assert!(sent(&rec).is_empty(), "forward() dropped");
    run(&script, &env, request("MESSAGE", "os-3", UAS2), UAC);
    assert!(
        find(&sent(&rec), UAS2, "MESSAGE").is_some(),
        "forward() sent"
    );
}

const RELAY_FORMS: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"

route {
	if ($ci == "rf-1") {
		t_relay("udp:127.0.0.1:5082");
	} else if ($ci == "rf-2") {
		t_relay_to("0x01");
	} else {
		t_relay_to("127.0.0.1:5082", "1");
	}
	exit;
}
"#;

#[test]
fn relay_to_a_proxy_string_and_relay_flags() {
    let script = load(RELAY_FORMS);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("INVITE", "rf-1", UAS1), UAC);
    let s = sent(&rec);
    assert!(find(&s, UAS2, "INVITE").is_some(), "{:?}", lines(&s));
    assert!(find(&s, UAC, "100").is_some(), "100 Trying by default");
    run(&script, &env, request("INVITE", "rf-2", UAS1), UAC);
    let s = sent(&rec);
    assert!(find(&s, UAS1, "INVITE").is_some(), "{:?}", lines(&s));
    assert!(find(&s, UAC, "100").is_none(), "flag 0x01: no 100");
    run(&script, &env, request("INVITE", "rf-3", UAS1), UAC);
    let s = sent(&rec);
    assert!(find(&s, UAS2, "INVITE").is_some(), "{:?}", lines(&s));
    assert!(find(&s, UAC, "100").is_none());
    for bad in [
        r#"route { t_relay("udp:127.0.0.1:x"); }"#,
        r#"route { t_relay_to("tcp:[::1"); }"#,
    ] {
        let cfg = format!("loadmodule \"tm.so\"\n{bad}\n");
        assert!(engine::try_load(&cfg).is_err(), "{bad}");
    }
}

const CANCEL: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
modparam("tm", "retr_timer1", 500)

route {
	if (method == "CANCEL") {
		t_relay_cancel();
		exit;
	}
	t_relay();
	exit;
}
"#;

#[test]
fn our_cancel_is_retransmitted_until_its_200() {
    let script = load(CANCEL);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    let local0 = tm_stat(&script, ser_modules::tm::core::Stat::TotalLocal);
    run(&script, &env, request("INVITE", "cx-1", UAS1), UAC);
    let fwd = find(&sent(&rec), UAS1, "INVITE").unwrap().clone();
    run(&script, &env, uas_reply(&fwd, 180), UAS1);
    sent(&rec);
    let cancel = request("CANCEL", "cx-1", UAS1);
    run(&script, &env, &cancel, UAC);
    let s = sent(&rec);
    assert!(find(&s, UAC, "200").is_some(), "200 to the CANCEL");
    let ours = find(&s, UAS1, "CANCEL").expect("CANCEL downstream").clone();
    // timer E: again after T1, then 2·T1
    tick(&script, &env, 600);
    assert!(find(&sent(&rec), UAS1, "CANCEL").is_some(), "retransmitted");
    tick(&script, &env, 1700);
    assert!(find(&sent(&rec), UAS1, "CANCEL").is_some(), "again");
    // its 200 ends the retransmissions
    run(&script, &env, uas_reply(&ours, 200), UAS1);
    assert!(sent(&rec).is_empty(), "200 to our CANCEL absorbed");
    tick(&script, &env, 4000);
    tick(&script, &env, 9000);
    assert!(
        find(&sent(&rec), UAS1, "CANCEL").is_none(),
        "no CANCEL after its 200"
    );
    run(&script, &env, uas_reply(&fwd, 487), UAS1);
    let s = sent(&rec);
    assert!(find(&s, UAS1, "ACK").is_some(), "ACK for the 487");
    assert!(
        find(&s, UAC, "487").is_some(),
        "487 upstream: {:?}",
        lines(&s)
    );
    // one CANCEL and one ACK generated here
    assert_eq!(
        tm_stat(&script, ser_modules::tm::core::Stat::TotalLocal) - local0,
        2
    );
}

fn serial(mode: u8) -> String {
    format!(
        r#"
loadmodule "sl.so"
loadmodule "tm.so"
modparam("tm", "failure_reply_mode", {mode})

route {{
	t_on_failure("next");
	t_relay();
	exit;
}}

failure_route[next] {{
	if (t_grep_status("486") && t_check_status("486")) {{
		rewritehostport("127.0.0.1:5082");
		t_relay();
		exit;
	}}
}}
"#
    )
}

/// INVITE → 486 → failure route forks to UAS2 → 503 there: with mode 3 the
/// 486 of the first step is forgotten (500 upstream), with mode 0 it stays
/// the best reply (486 upstream).
#[test]
fn failure_reply_mode_decides_what_earlier_steps_count() {
    for (mode, want) in [(3u8, "500"), (0, "486"), (2, "500")] {
        let script = load(&serial(mode));
        let rec = Arc::new(Recorder::default());
        let env = engine::env(&rec, &[]);
        let callid = format!("frm-{mode}");
        run(&script, &env, request("INVITE", &callid, UAS1), UAC);
        let fwd = find(&sent(&rec), UAS1, "INVITE").unwrap().clone();
        run(&script, &env, uas_reply(&fwd, 486), UAS1);
        let s = sent(&rec);
        let fwd2 = find(&s, UAS2, "INVITE")
            .unwrap_or_else(|| panic!("serial fork: {:?}", lines(&s)))
            .clone();
        run(&script, &env, uas_reply(&fwd2, 503), UAS2);
        let s = sent(&rec);
        assert!(
            find(&s, UAC, want).is_some(),
            "mode {mode}: {want} upstream, got {:?}",
            lines(&s)
        );
    }
}

const GREP: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"

route {
	append_branch("sip:bob@127.0.0.1:5082");
	t_on_failure("f");
	t_relay();
	exit;
}

failure_route[f] {
	if (t_grep_status("404") && t_grep_status("486") && !t_grep_status("503")) {
		t_reply("486", "Busy somewhere");
	}
}
"#;

#[test]
fn grep_status_looks_at_every_branch() {
    let script = load(GREP);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("INVITE", "gs-1", UAS1), UAC);
    let s = sent(&rec);
    let to1 = find(&s, UAS1, "INVITE").unwrap().clone();
    let to2 = find(&s, UAS2, "INVITE").unwrap().clone();
    run(&script, &env, uas_reply(&to1, 486), UAS1);
    run(&script, &env, uas_reply(&to2, 404), UAS2);
    let s = sent(&rec);
    let r = find(&s, UAC, "486").unwrap_or_else(|| panic!("{:?}", lines(&s)));
    assert_eq!(reason(r), "Busy somewhere");
}

const INDEXED: &str = r#"
loadmodule "sl.so"

route {
	sl_send_reply("200", "$(hdr(Via)[1]) | $(hdr(Via)[-1]) | $(hdr(Via)[0]) | $(hdr(Via)[5])|");
	exit;
}
"#;

#[test]
fn indexed_headers() {
    let script = load(INDEXED);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("OPTIONS", "ix-1", UAS1), UAC);
    let s = sent(&rec);
    let r = find(&s, UAC, "200").expect("reply");
    assert_eq!(
        reason(r),
        "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-far | SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-far | \
         SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ix-1 | <null>|"
    );
}

fn timeout_cfg(noisy: u8) -> String {
    format!(
        r#"
loadmodule "sl.so"
loadmodule "tm.so"
modparam("tm", "fr_timer", 1500)
modparam("tm", "noisy_ctimer", {noisy})

route {{
	t_relay();
	exit;
}}
"#
    )
}

/// An INVITE nobody answers: 408 upstream, unless `noisy_ctimer=0` (one
/// branch, no reply, no failure route: silence, as Kamailio).
#[test]
fn noisy_ctimer_zero_keeps_an_unanswered_invite_silent() {
    for (noisy, want_408) in [(1u8, true), (0, false)] {
        let script = load(&timeout_cfg(noisy));
        let rec = Arc::new(Recorder::default());
        let env = engine::env(&rec, &[]);
        run(
            &script,
            &env,
            request("INVITE", &format!("nc-{noisy}"), UAS1),
            UAC,
        );
        sent(&rec);
        tick(&script, &env, 1600);
        let s = sent(&rec);
        assert_eq!(
            find(&s, UAC, "408").is_some(),
            want_408,
            "noisy_ctimer={noisy}: {:?}",
            lines(&s)
        );
    }
}

const DROP: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
modparam("tm", "failure_reply_mode", 0)

route {
	t_on_failure("next");
	t_relay();
	exit;
}

failure_route[next] {
	if (t_check_status("486")) {
		t_drop_replies();
		rewritehostport("127.0.0.1:5082");
		t_relay();
	}
}
"#;

/// failure_reply_mode 0 keeps the 486, but t_drop_replies() in the failure
/// route forgets it: the 503 of the new step is relayed (as 500).
#[test]
fn drop_replies_forgets_earlier_steps() {
    let script = load(DROP);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("INVITE", "dr-1", UAS1), UAC);
    let fwd = find(&sent(&rec), UAS1, "INVITE").unwrap().clone();
    run(&script, &env, uas_reply(&fwd, 486), UAS1);
    let fwd2 = find(&sent(&rec), UAS2, "INVITE").unwrap().clone();
    run(&script, &env, uas_reply(&fwd2, 503), UAS2);
    let s = sent(&rec);
    assert!(find(&s, UAC, "500").is_some(), "{:?}", lines(&s));
}

const FAIL_RURI: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"

route {
	rewriteuser("carol");
	t_on_failure("f");
	t_relay();
	exit;
}

failure_route[f] {
	t_reply("599", "$ru");
}
"#;

/// In failure_route the R-URI is the one the request was relayed with.
#[test]
fn failure_route_sees_the_relayed_ruri() {
    let script = load(FAIL_RURI);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("INVITE", "fr-1", UAS1), UAC);
    let fwd = find(&sent(&rec), UAS1, "INVITE").unwrap().clone();
    run(&script, &env, uas_reply(&fwd, 404), UAS1);
    let s = sent(&rec);
    let r = find(&s, UAC, "599").unwrap_or_else(|| panic!("{:?}", lines(&s)));
    assert_eq!(reason(r), "sip:carol@127.0.0.1:5081");
}

const ONSEND_REPLY: &str = r#"
onsend_route_reply=yes
loadmodule "sl.so"
loadmodule "tm.so"

route {
	t_relay();
	exit;
}

onsend_route {
	if ($rs == 180 || $rs == 181) {
		drop;
	}
}
"#;

/// `onsend_route_reply=yes`: relayed replies (tm's and stateless ones) go
/// through onsend_route too.
#[test]
fn onsend_route_reply_filters_relayed_replies() {
    let script = load(ONSEND_REPLY);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, request("INVITE", "osr-1", UAS1), UAC);
    let fwd = find(&sent(&rec), UAS1, "INVITE").unwrap().clone();
    run(&script, &env, uas_reply(&fwd, 180), UAS1);
    run(&script, &env, uas_reply(&fwd, 183), UAS1);
    run(&script, &env, uas_reply(&fwd, 486), UAS1);
    let s = sent(&rec);
    assert!(find(&s, UAC, "180").is_none(), "{:?}", lines(&s));
    assert!(find(&s, UAC, "183").is_some(), "{:?}", lines(&s));
    assert!(find(&s, UAC, "486").is_some(), "{:?}", lines(&s));
    // a reply no transaction knows, forwarded statelessly by its next Via
    let stateless = |code: u16| {
        format!(
            "SIP/2.0 {code} Whatever\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnotours\r\n\
             Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\
             Call-ID: osr-2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    run(&script, &env, stateless(181), UAS1);
    assert!(sent(&rec).is_empty(), "181 dropped by onsend_route");
    run(&script, &env, stateless(182), UAS1);
    assert!(find(&sent(&rec), UAC, "182").is_some(), "182 forwarded");
}

const APPEND_RURI: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"

route {
	if ($ci == "ar-1") {
		append_branch();
	} else if ($ci == "ar-2") {
		append_branch();
		rewritehostport("127.0.0.1:5082");
	} else {
		append_branch("sip:bob@127.0.0.1:5082");
	}
	t_relay();
	exit;
}
"#;

/// `append_branch()` without arguments consumes the R-URI (Kamailio):
/// relaying then does not send the same R-URI twice; a later rewrite makes
/// it a branch of its own again.
#[test]
fn append_branch_of_the_ruri_is_not_sent_twice() {
    let script = load(APPEND_RURI);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    let invites_to = |s: &[(SocketAddr, SipMsg)], to: &str| {
        s.iter()
            .filter(|(a, m)| a.to_string() == to && m.method_bytes() == b"INVITE")
            .count()
    };
    run(&script, &env, request("INVITE", "ar-1", UAS1), UAC);
    let s = sent(&rec);
    assert_eq!(invites_to(&s, UAS1), 1, "{:?}", lines(&s));
    run(&script, &env, request("INVITE", "ar-2", UAS1), UAC);
    let s = sent(&rec);
    assert_eq!(
        (invites_to(&s, UAS1), invites_to(&s, UAS2)),
        (1, 1),
        "{:?}",
        lines(&s)
    );
    run(&script, &env, request("INVITE", "ar-3", UAS1), UAC);
    let s = sent(&rec);
    assert_eq!(
        (invites_to(&s, UAS1), invites_to(&s, UAS2)),
        (1, 1),
        "{:?}",
        lines(&s)
    );
}
