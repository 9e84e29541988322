//! acc through the engine and tm: INVITEs flagged for accounting are relayed
//! to a recorded UAS; the final reply writes an `acc` row (200), a
//! `missed_calls` row (404, 408 on timeout), and with the failed-transaction
//! flag also an `acc` row for the failure — in a SQLite DB in a temp dir.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ser::route::Recorder;
use ser_modules::db::{self, DbValue};
use ser_parser::ParseOptions;
use ser_sip::SipMsg;
use support::engine::{self, load, load_with, run, sent, shared_config, uas_reply};
use support::tmp::TmpDir;

const UAC: &str = "127.0.0.1:5070";
const UAS: &str = "127.0.0.1:5081";

fn invite(callid: &str, method: &str) -> String {
    format!(
        "{method} sip:bob@{UAS} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{callid}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>\r\nCall-ID: {callid}\r\nCSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The request the proxy relayed to the UAS.
fn relayed(rec: &Recorder) -> SipMsg {
    sent(rec)
        .into_iter()
        .find(|(a, m)| a.to_string() == UAS && m.is_request())
        .map(|(_, m)| m)
        .expect("request relayed to the UAS")
}

/// A scratch directory with an `acc` database; its URL.
fn temp_db(tag: &str) -> (TmpDir, String) {
    let dir = TmpDir::new(&format!("hist-acc-{tag}"));
    let url = dir.sqlite_url("acc.db");
    db::with(&url, |c| c.batch(include_str!("../etc/db/acc.sql"))).unwrap();
    (dir, url)
}

fn rows(url: &str, table: &str) -> Vec<Vec<String>> {
    db::with(url, |c| {
        c.query(
            table,
            &[
                "method",
                "from_tag",
                "to_tag",
                "callid",
                "sip_code",
                "sip_reason",
                "src_user",
                "src_domain",
                "dst_ouser",
                "dst_user",
                "dst_domain",
            ],
            &[],
            Some("id"),
        )
    })
    .unwrap()
    .into_iter()
    .map(|r| r.iter().map(DbValue::as_str).collect())
    .collect()
}

#[test]
fn acc_rows_for_answered_missed_and_failed() {
    let (_dir, url) = temp_db("tx");
    let cfg = format!(
        r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "acc.so"
modparam("tm", "fr_timer", 1500)
modparam("tm", "fr_inv_timer", 1500)
modparam("tm", "wt_timer", 1000)
modparam("acc", "early_media", 1)
modparam("acc", "failed_transaction_flag", 3)
modparam("acc", "log_flag", 1)
modparam("acc", "log_missed_flag", 2)
modparam("acc", "log_extra", "src_user=$fU;src_domain=$fd;dst_ouser=$tU;dst_user=$rU;dst_domain=$rd")
modparam("acc", "db_flag", 1)
modparam("acc", "db_missed_flag", 2)
modparam("acc", "db_url", "{url}")
modparam("acc", "db_extra", "src_user=$fU;src_domain=$fd;dst_ouser=$tU;dst_user=$rU;dst_domain=$rd")
route {{
	if (method == "INVITE") {{
		setflag(1);
		setflag(2);
	}}
	if (method == "BYE") {{
		setflag(1);
		setflag(3);
	}}
	t_relay();
	exit;
}}
"#
    );
    let script = load(&cfg);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    let reply = |req: &SipMsg, code: u16| {
        run(&script, &env, uas_reply(req, code), UAS);
    };

    // 1. answered: one acc row, no missed call; the 180 is not accounted
    run(&script, &env, invite("acc-1", "INVITE").as_bytes(), UAC);
    let req = relayed(&rec);
    reply(&req, 180);
    assert!(rows(&url, "acc").is_empty());
    reply(&req, 200);
    let acc = rows(&url, "acc");
    assert_eq!(acc.len(), 1, "{acc:?}");
    assert_eq!(
        acc[0],
        [
            "INVITE",
            "a1",
            "uas",
            "acc-1",
            "200",
            "Whatever",
            "alice",
            "a.example",
            "bob",
            "bob",
            "127.0.0.1"
        ]
    );
    assert!(rows(&url, "missed_calls").is_empty());

    // 2. 404: a missed call, no acc row (failed_transaction_flag not set)
    run(&script, &env, invite("acc-2", "INVITE").as_bytes(), UAC);
    let req = relayed(&rec);
    reply(&req, 404);
    let missed = rows(&url, "missed_calls");
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(
        &missed[0][..6],
        ["INVITE", "a1", "uas", "acc-2", "404", "Whatever"]
    );
    assert_eq!(rows(&url, "acc").len(), 1);

    // 3. no answer: tm's 408 is a missed call
    run(&script, &env, invite("acc-3", "INVITE").as_bytes(), UAC);
    let _ = relayed(&rec);
    script
        .modules()
        .tick_all(&env, Instant::now() + Duration::from_millis(1600));
    let missed = rows(&url, "missed_calls");
    assert_eq!(missed.len(), 2, "{missed:?}");
    assert_eq!(&missed[1][3..5], ["acc-3", "408"]);

    // 4. a failed BYE with failed_transaction_flag: an acc row, not missed
    run(&script, &env, invite("acc-4", "BYE").as_bytes(), UAC);
    let req = relayed(&rec);
    reply(&req, 481);
    let acc = rows(&url, "acc");
    assert_eq!(acc.len(), 2, "{acc:?}");
    assert_eq!(&acc[1][..5], ["BYE", "a1", "uas", "acc-4", "481"]);
    assert_eq!(rows(&url, "missed_calls").len(), 2);
}

#[test]
fn acc_db_request_from_the_script() {
    let (_dir, url) = temp_db("req");
    let cfg = format!(
        r#"
loadmodule "sl.so"
loadmodule "acc.so"
modparam("acc", "db_url", "{url}")
modparam("acc", "db_extra", "src_user=$fU;dst_user=$rU")
route {{
	acc_log_request("200 logged");
	if (!acc_db_request("403 Denied", "missed_calls")) {{
		sl_send_reply("500", "acc failed");
		exit;
	}}
	sl_send_reply("403", "Denied");
}}
"#
    );
    let script = load(&cfg);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    run(&script, &env, invite("req-1", "INVITE").as_bytes(), UAC);
    let sent: Vec<(SocketAddr, Vec<u8>)> =
        rec.take().into_iter().map(|(d, b)| (d.addr, b)).collect();
    assert!(String::from_utf8_lossy(&sent[0].1).starts_with("SIP/2.0 403 Denied"));
    let m = rows(&url, "missed_calls");
    assert_eq!(m.len(), 1);
    assert_eq!(
        &m[0][..7],
        ["INVITE", "a1", "", "req-1", "403", "Denied", "alice"]
    );
    assert_eq!(m[0][9], "bob");
}

/// The real kamailio-3.1.cfg with `-A WITH_ACCDB` (and DBURL pointing at a
/// SQLite file): bob registers, alice calls him twice; the answered call is
/// an `acc` row with the config's db_extra columns, the busy one a
/// `missed_calls` row (flag 2 is set once lookup succeeded).
#[test]
fn kamailio_31_config_accounts_calls() {
    let (_dir, url) = temp_db("k31");
    let text = shared_config("kamailio-3.1.cfg");
    let opts = ParseOptions {
        defines: vec![
            ("WITH_ACCDB".to_owned(), None),
            ("DBURL".to_owned(), Some(format!("\"{url}\""))),
        ],
        ..ParseOptions::default()
    };
    let script = load_with("kamailio-3.1.cfg", &text, &opts);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);

    let register = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {UAS};branch=z9hG4bK-r1\r\nMax-Forwards: 70\r\n\
         From: <sip:bob@127.0.0.1>;tag=r1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: reg-1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:bob@{UAS}>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    run(&script, &env, register.as_bytes(), UAS);
    let sent = rec.take();
    assert!(
        String::from_utf8_lossy(&sent[0].1).starts_with("SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&sent[0].1)
    );

    let call = |callid: &str| {
        format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{callid}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: {callid}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:alice@{UAC}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let answer = |code: u16| {
        let req = relayed(&rec);
        run(&script, &env, uas_reply(&req, code), UAS);
    };
    run(&script, &env, call("k31-1").as_bytes(), UAC);
    answer(200);
    run(&script, &env, call("k31-2").as_bytes(), UAC);
    answer(486);

    let acc = rows(&url, "acc");
    assert_eq!(acc.len(), 1, "{acc:?}");
    assert_eq!(
        acc[0],
        [
            "INVITE",
            "a1",
            "uas",
            "k31-1",
            "200",
            "Whatever",
            "alice",
            "a.example",
            "bob",
            "bob",
            "127.0.0.1"
        ]
    );
    let missed = rows(&url, "missed_calls");
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(&missed[0][3..5], ["k31-2", "486"]);
}
