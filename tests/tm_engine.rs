//! tm through the routing engine: a config with `t_on_failure`,
//! `t_on_reply`, `t_on_branch`, `failure_route`s that fork serially and reply
//! with `t_reply`, `onreply_route` with `t_check_status`; messages run through
//! `Script::run_request` / `run_reply`, the timer through `tick_all`, sends
//! recorded.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ser::route::Recorder;
use ser_sip::SipMsg;
use support::engine::{self, header, load, run, sent, uas_reply};

const UAC: &str = "127.0.0.1:5070";
const UAS1: &str = "127.0.0.1:5081";
const UAS2: &str = "127.0.0.1:5082";

const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "textops.so"
modparam("tm", "fr_timer", 1500)
modparam("tm", "wt_timer", 1000)

route {
	if (method == "INVITE") {
		t_on_failure("next");
		t_on_reply("watch");
		t_on_branch("mark");
		setflag(3);
	}
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}

branch_route[mark] {
	append_hf("X-Branch: marked\r\n");
}

onreply_route[watch] {
	if (t_check_status("18[0-9]")) {
		append_hf("X-Seen: ringing\r\n");
	}
}

failure_route[next] {
	if (t_check_status("486") && isflagset(3)) {
		rewritehostport("127.0.0.1:5082");
		t_on_failure("last");
		t_relay();
		exit;
	}
}

failure_route[last] {
	if (t_branch_timeout()) {
		t_reply("599", "Nobody Home");
	}
}
"#;

fn invite(callid: &str) -> String {
    format!(
        "INVITE sip:bob@{UAS1} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{callid}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
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

#[test]
fn failure_onreply_branch_routes() {
    let script = load(CFG);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    let tick = |ms: u64| {
        script
            .modules()
            .tick_all(&env, Instant::now() + Duration::from_millis(ms))
    };

    // branch_route edits the branch; onreply_route sees the 180.
    run(&script, &env, invite("e-1"), UAC);
    let s = sent(&rec);
    let fwd = find(&s, UAS1, "INVITE").expect("INVITE downstream").clone();
    assert_eq!(
        header(&fwd, "X-Branch").as_deref(),
        Some("marked"),
        "branch_route lumps applied"
    );
    assert!(find(&s, UAC, "100").is_some());
    run(&script, &env, uas_reply(&fwd, 180), UAS1);
    let s = sent(&rec);
    let ringing = find(&s, UAC, "180").expect("180 upstream");
    assert_eq!(
        header(ringing, "X-Seen").as_deref(),
        Some("ringing"),
        "onreply_route ran with t_check_status"
    );
    // 486 -> failure_route[next] (flag 3 restored) -> serial fork to UAS2.
    run(&script, &env, uas_reply(&fwd, 486), UAS1);
    let s = sent(&rec);
    assert!(find(&s, UAS1, "ACK").is_some(), "ACK for the 486");
    assert!(find(&s, UAC, "486").is_none());
    let fwd2 = find(&s, UAS2, "INVITE").expect("serial fork").clone();
    assert_eq!(header(&fwd2, "X-Branch").as_deref(), Some("marked"));
    // UAS2 never answers: fr_timer -> failure_route[last] -> t_reply 599.
    tick(1600);
    let s = sent(&rec);
    assert!(
        find(&s, UAC, "599").is_some(),
        "t_reply from failure_route[last]: {:?}",
        s.iter()
            .map(|(a, m)| (a, m.first_line()))
            .collect::<Vec<_>>()
    );
    // The UAC's ACK for the 599 is absorbed.
    let ack = invite("e-1")
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    run(&script, &env, &ack, UAC);
    assert!(sent(&rec).is_empty(), "ACK absorbed");

    // A 2xx after a 486 on another fork... plain call: 200 relayed, table drains.
    run(&script, &env, invite("e-2"), UAC);
    let fwd = find(&sent(&rec), UAS1, "INVITE").unwrap().clone();
    run(&script, &env, uas_reply(&fwd, 200), UAS1);
    assert!(find(&sent(&rec), UAC, "200").is_some());
    tick(60_000);
    tick(120_000);
    let tm = ser_modules::tm::loaded_state().unwrap();
    let tm = ser_modules::tm::tm_of(&tm).unwrap();
    assert_eq!(tm.table_count(), 0);
}
