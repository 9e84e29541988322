//! permissions through the engine: `allow_source_address()` (group 1, as
//! kamailio-3.1.cfg's WITH_IPAUTH calls it) and `allow_source_address("2")`
//! against an `address` table cached at start-up (db_mode 1),
//! `allow_trusted()` against `trusted`, and `allow_routing("base")` with
//! Kamailio allow/deny files.

mod support;

use std::sync::Arc;

use ser::route::{Env, Recorder, Script};
use ser_modules::db;
use ser_sip::SipMsg;
use support::engine::{self, load, run};
use support::tmp::TmpDir;

/// Send a MESSAGE from `src` to `ruri` (From `from`) and return the reply line.
fn verdict(s: &Script, env: &Env, rec: &Recorder, src: &str, from: &str, ruri: &str) -> String {
    let buf = format!(
        "MESSAGE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bK-1\r\nMax-Forwards: 70\r\n\
         From: <{from}>;tag=a1\r\nTo: <{ruri}>\r\nCall-ID: perm-1\r\nCSeq: 1 MESSAGE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    run(s, env, buf, src);
    let sent = rec.take();
    assert_eq!(sent.len(), 1);
    let m = SipMsg::parse(sent[0].1.clone()).unwrap();
    format!(
        "{} {}",
        m.status().unwrap(),
        String::from_utf8_lossy(m.reason().unwrap())
    )
}

#[test]
fn addresses_trusted_and_routing_files() {
    let dir = TmpDir::new("hist-perm");
    let url = dir.sqlite_url("perm.db");
    db::with(&url, |c| {
        c.batch(include_str!("../etc/db/permissions.sql"))?;
        c.batch(
            "INSERT INTO address (grp, ip_addr, mask, port) VALUES \
             (1, '10.0.0.0', 8, 0), (2, '192.168.7.7', 32, 5070); \
             INSERT INTO trusted (src_ip, proto, from_pattern) VALUES \
             ('172.16.0.1', 'udp', '^sip:gw@'), ('172.16.0.2', 'any', NULL);",
        )
    })
    .unwrap();
    let base = dir.path("routing");
    std::fs::write(
        dir.path("routing.allow"),
        "# allow calls to 3xxx except 3333\nALL : \"^sip:3[0-9]*@\" EXCEPT \"^sip:3333@\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path("routing.deny"),
        "ALL : \"^sip:3\"\n\"^sip:evil@\" : ALL\n",
    )
    .unwrap();
    let cfg = format!(
        r#"
loadmodule "sl.so"
loadmodule "permissions.so"
modparam("permissions", "db_url", "{url}")
modparam("permissions", "db_mode", 1)
route {{
	if ($rU == "src") {{
		if (allow_source_address()) {{ sl_send_reply("200", "group 1"); exit; }}
		if (allow_source_address("2")) {{ sl_send_reply("200", "group 2"); exit; }}
		sl_send_reply("403", "not allowed");
		exit;
	}}
	if ($rU == "trusted") {{
		if (allow_trusted()) {{ sl_send_reply("200", "trusted"); exit; }}
		sl_send_reply("403", "untrusted");
		exit;
	}}
	if (allow_routing("{base}")) {{
		sl_send_reply("200", "routing allowed");
		exit;
	}}
	sl_send_reply("403", "routing denied");
}}
"#,
        base = base.display()
    );
    let script = load(&cfg);
    // the table is cached: deleting the rows changes nothing (db_mode 1)
    db::with(&url, |c| {
        c.batch("DELETE FROM address; DELETE FROM trusted;")
    })
    .unwrap();
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &[]);
    let v = |src: &str, from: &str, ruri: &str| verdict(&script, &env, &rec, src, from, ruri);

    assert_eq!(v("10.9.8.7:5060", "sip:a@x", "sip:src@p"), "200 group 1");
    assert_eq!(v("192.168.7.7:5070", "sip:a@x", "sip:src@p"), "200 group 2");
    assert_eq!(
        v("192.168.7.7:5071", "sip:a@x", "sip:src@p"),
        "403 not allowed"
    );
    assert_eq!(
        v("11.0.0.1:5060", "sip:a@x", "sip:src@p"),
        "403 not allowed"
    );

    assert_eq!(
        v("172.16.0.1:5060", "sip:gw@x", "sip:trusted@p"),
        "200 trusted"
    );
    assert_eq!(
        v("172.16.0.1:5060", "sip:joe@x", "sip:trusted@p"),
        "403 untrusted"
    );
    assert_eq!(
        v("172.16.0.2:5060", "sip:joe@x", "sip:trusted@p"),
        "200 trusted"
    );

    assert_eq!(
        v("1.1.1.1:5060", "sip:a@x", "sip:3123@p"),
        "200 routing allowed"
    );
    assert_eq!(
        v("1.1.1.1:5060", "sip:a@x", "sip:3333@p"),
        "403 routing denied"
    );
    assert_eq!(
        v("1.1.1.1:5060", "sip:evil@x", "sip:4444@p"),
        "403 routing denied"
    );
    assert_eq!(
        v("1.1.1.1:5060", "sip:a@x", "sip:4444@p"),
        "200 routing allowed"
    );
}
