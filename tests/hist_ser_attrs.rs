//! SER 3.0 attribute modules through the engine, as ser-oob-3.0.cfg uses
//! them: `load_attrs("$fu", "$f.uid")` from `uid_user_attrs`, global
//! attributes loaded by gflags, `xlset_attr` + `replace_attr_hf` (RPID),
//! `attr2uri(.., "domain")`, `del_attr`, `attr_equals`, AVP flags, global
//! flags; and acc_db writing SER-schema rows for a flagged transaction.

mod support;

use std::sync::Arc;

use ser::route::Recorder;
use ser_modules::db::{self, DbValue};
use ser_sip::SipMsg;
use support::engine::{self, headers, load, run};
use support::tmp::TmpDir;

const UAC: &str = "127.0.0.1:5070";

/// A scratch directory with a database of the SER 3.0 schema; its URL.
fn temp_db(tag: &str) -> (TmpDir, String) {
    let dir = TmpDir::new(&format!("hist-{tag}"));
    let url = dir.sqlite_url("ser.db");
    db::with(&url, |c| c.batch(include_str!("../etc/db/ser-uid.sql"))).unwrap();
    (dir, url)
}

fn request(callid: &str, ruri: &str, extra: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{callid}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn ser_attribute_functions() {
    let (_dir, url) = temp_db("attrs");
    db::with(&url, |c| {
        c.batch(
            "INSERT INTO uid_user_attrs (uid, name, value, type, flags) VALUES \
             ('u-alice', 'asserted_id', '4930123', 2, 1), \
             ('u-alice', 'lang', 'cz', 2, 1), \
             ('u-alice', 'secret', 'x', 2, 0), \
             ('u-alice', 'fr_inv_timer', '20000', 0, 1); \
             INSERT INTO uid_global_attrs (name, type, value, flags) VALUES ('gw_ip', 2, '127.0.0.1', 1);",
        )
    })
    .unwrap();
    let cfg = format!(
        r#"
loadmodule "sl"
loadmodule "textops"
loadmodule "gflags"
loadmodule "avp"
loadmodule "avp_db"
avpflags dialog_cookie;
modparam("avp_db|gflags", "db_url", "{url}")
modparam("gflags", "load_global_attrs", 1)
modparam("gflags", "initial", 2)
route {{
	$f.uid = "u-alice";
	load_attrs("$fu", "$f.uid");
	if ($asserted_id != "") {{
		xlset_attr("$rpidheader", "<sip:%$asserted_id@%@ruri.host>;screen=yes");
		replace_attr_hf("Remote-Party-ID", "$rpidheader");
	}}
	if ($fu.secret != "") {{
		append_hf("X-Secret: loaded\r\n");
	}}
	if ($fu.fr_inv_timer == 20000) {{
		append_hf("X-Timer: 20000\r\n");
	}}
	if (attr_equals("$fu.lang", "cz")) {{
		append_hf("X-Lang: cz\r\n");
	}}
	del_attr("$fu.lang");
	if (!attr_exists("$fu.lang")) {{
		append_hf("X-Lang: deleted\r\n");
	}}
	if (is_gflag(1) && !is_gflag(3)) {{
		append_hf("X-Gflags: 1\r\n");
	}}
	set_gflag(3);
	reset_gflag(1);
	$account = "yes";
	setavpflag($account, "dialog_cookie");
	if (isavpflagset($account, "dialog_cookie")) {{
		append_hf("X-Cookie: yes\r\n");
	}}
	resetavpflag($account, "dialog_cookie");
	if (!isavpflagset($account, "dialog_cookie")) {{
		append_hf("X-Cookie: reset\r\n");
	}}
	if ($gw_ip != "" && uri=~"sips?:\+?[0-9]{{3,18}}@.*") {{
		attr2uri("$gw_ip", "domain");
	}}
	forward();
}}
"#
    );
    let script = load(&cfg);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(
        &script,
        &env,
        request(
            "attr-1",
            "sip:+4912345@pstn.example:5090",
            "Remote-Party-ID: <sip:old@x>\r\n",
        )
        .as_bytes(),
        UAC,
    );
    let sent = rec.take();
    assert_eq!(sent.len(), 1, "one forwarded request");
    let (dest, buf) = &sent[0];
    assert_eq!(dest.addr.to_string(), "127.0.0.1:5090");
    let m = SipMsg::parse(buf.clone()).unwrap();
    assert_eq!(m.ruri().unwrap(), b"sip:+4912345@127.0.0.1:5090");
    assert_eq!(
        headers(&m, "Remote-Party-ID"),
        ["<sip:4930123@pstn.example>;screen=yes"]
    );
    assert!(
        headers(&m, "X-Secret").is_empty(),
        "flags 0 rows are not loaded"
    );
    assert_eq!(headers(&m, "X-Timer"), ["20000"]);
    assert_eq!(headers(&m, "X-Lang"), ["cz", "deleted"]);
    assert_eq!(headers(&m, "X-Gflags"), ["1"]);
    assert_eq!(headers(&m, "X-Cookie"), ["yes", "reset"]);

    // the global flags changed for the next message (shm word)
    run(
        &script,
        &env,
        request("attr-2", "sip:bob@127.0.0.1:5091", "").as_bytes(),
        UAC,
    );
    let sent = rec.take();
    let m = SipMsg::parse(sent[0].1.clone()).unwrap();
    assert!(headers(&m, "X-Gflags").is_empty());
    assert!(headers(&m, "Remote-Party-ID").len() == 1);
}

#[test]
fn acc_db_rows_in_ser_schema() {
    let (_dir, url) = temp_db("accdb");
    let cfg = format!(
        r#"
loadmodule "sl"
loadmodule "tm"
loadmodule "acc_db"
flags
  FLAG_ACC : 1,
  FLAG_MISSED : 2;
modparam("acc_db", "db_url", "{url}")
modparam("acc_db", "failed_transactions", 1)
modparam("acc_db", "log_flag", "FLAG_ACC")
modparam("acc_db", "log_missed_flag", "FLAG_MISSED")
route {{
	$f.uid = "u-alice";
	$t.did = "d-b";
	setflag(FLAG_ACC);
	setflag(FLAG_MISSED);
	t_relay();
	drop;
}}
"#
    );
    let script = load(&cfg);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(
        &script,
        &env,
        request("accdb-1", "sip:bob@127.0.0.1:5081", "").as_bytes(),
        UAC,
    );
    let relayed = rec
        .take()
        .into_iter()
        .map(|(_, b)| SipMsg::parse(b).unwrap())
        .find(|m| m.is_request())
        .expect("relayed");
    let reply =
        ser_sip::build_reply(&relayed, 486, b"Busy Here", b"", b"", Some(b"t9"), None).unwrap();
    run(&script, &env, &reply, "127.0.0.1:5081");
    let cols = [
        "sip_method",
        "sip_status",
        "from_uid",
        "to_did",
        "sip_callid",
        "from_tag",
        "to_tag",
        "in_ruri",
        "src_ip",
    ];
    for table in ["acc", "missed_calls"] {
        let rows = db::with(&url, |c| c.query(table, &cols, &[], None)).unwrap();
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|r| r.iter().map(DbValue::as_str).collect())
            .collect();
        assert_eq!(
            rows,
            [[
                "INVITE",
                "486 Busy Here",
                "u-alice",
                "d-b",
                "accdb-1",
                "a1",
                "t9",
                "sip:bob@127.0.0.1:5081",
                "127.0.0.1"
            ]],
            "{table}"
        );
    }
}

/// SER 3.0's RR AVP cookie, as ser-oob-3.0.cfg uses it: the initial INVITE
/// flags `$account` with `dialog_cookie` and record-routes; the callee's
/// BYE comes back through that Route and `loose_route()` restores
/// `$account` (on the other track: the callee sends); a Route with another
/// server's cookie (other secret) restores nothing.
#[test]
fn rr_avp_cookie_round_trip() {
    let cfg = |secret: &str| {
        format!(
            r#"
loadmodule "sl"
loadmodule "rr"
loadmodule "textops"
avpflags dialog_cookie;
modparam("rr", "cookie_filter", "(account)")
modparam("rr", "cookie_secret", "{secret}")
route {{
	if (loose_route()) {{
		if ($f.account == "yes") {{
			append_hf("X-Account: caller\r\n");
		}}
		if ($t.account == "yes") {{
			append_hf("X-Account: callee\r\n");
		}}
		if (isavpflagset($t.account, "dialog_cookie")) {{
			append_hf("X-Flagged: yes\r\n");
		}}
		forward();
		drop;
	}}
	$account = "yes";
	$other = "no";
	setavpflag($account, "dialog_cookie");
	setavpflag($other, "dialog_cookie");
	record_route();
	forward();
}}
"#
        )
    };
    let script = load(&cfg("MyRRAVPcookiesecret"));
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(
        &script,
        &env,
        request("cookie-1", "sip:bob@127.0.0.1:5090", "").as_bytes(),
        UAC,
    );
    let sent = rec.take();
    let m = SipMsg::parse(sent[0].1.clone()).unwrap();
    let rr = headers(&m, "Record-Route");
    assert_eq!(rr.len(), 1, "{rr:?}");
    assert!(rr[0].contains(";avp="), "{rr:?}");
    let route = rr[0].clone();

    let bye = |route: &str| {
        format!(
            "BYE sip:alice@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-bye\r\n\
             Route: {route}\r\nMax-Forwards: 70\r\nFrom: <sip:bob@b.example>;tag=b1\r\n\
             To: <sip:alice@a.example>;tag=a1\r\nCall-ID: cookie-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    run(&script, &env, bye(&route).as_bytes(), "127.0.0.1:5090");
    let sent = rec.take();
    let m = SipMsg::parse(sent[0].1.clone()).unwrap();
    assert_eq!(headers(&m, "X-Account"), ["callee"]);
    assert_eq!(headers(&m, "X-Flagged"), ["yes"]);

    let other = load(&cfg("another-server"));
    run(&other, &env, bye(&route).as_bytes(), "127.0.0.1:5090");
    let sent = rec.take();
    let m = SipMsg::parse(sent[0].1.clone()).unwrap();
    assert!(headers(&m, "X-Account").is_empty());
}
