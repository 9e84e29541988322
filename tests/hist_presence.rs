//! presence + presence_xml through the engine as kamailio-3.1.cfg's
//! route[PRESENCE] uses them (t_newtran; handle_subscribe/handle_publish;
//! t_release): a watcher subscribes and gets a NOTIFY, a PUBLISH stores a
//! PIDF and NOTIFYs it, a conditional PUBLISH with Expires 0 removes it, an
//! unknown event is 489, an unsubscribe ends with `terminated`.

mod support;

use std::sync::Arc;

use ser::route::Recorder;
use ser_modules::db;
use ser_sip::SipMsg;
use support::engine::{self, header, load, run, sent};
use support::tmp::TmpDir;

const WATCHER: &str = "127.0.0.1:5090";
const PUBLISHER: &str = "127.0.0.1:5091";

const PIDF: &str = "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@a.example\">\
<tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>";

/// (reply to the sender, NOTIFYs to the watcher).
fn take(rec: &Recorder) -> (Option<SipMsg>, Vec<SipMsg>) {
    let mut reply = None;
    let mut notifies = Vec::new();
    for (to, m) in sent(rec) {
        if m.is_request() {
            assert_eq!(
                to.to_string(),
                WATCHER,
                "NOTIFY goes to the watcher's Contact"
            );
            notifies.push(m);
        } else {
            reply = Some(m);
        }
    }
    (reply, notifies)
}

fn subscribe(callid: &str, event: &str, expires: u32, to_tag: Option<&str>, cseq: u32) -> String {
    let tt = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SUBSCRIBE sip:alice@a.example SIP/2.0\r\nVia: SIP/2.0/UDP {WATCHER};branch=z9hG4bK-s{callid}{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@b.example>;tag=w1\r\nTo: <sip:alice@a.example>{tt}\r\n\
         Call-ID: {callid}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:bob@{WATCHER}>\r\nEvent: {event}\r\n\
         Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn publish(n: u32, expires: u32, if_match: Option<&str>, body: &str) -> String {
    let m = if_match
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/pidf+xml\r\n".to_owned()
    };
    format!(
        "PUBLISH sip:alice@a.example SIP/2.0\r\nVia: SIP/2.0/UDP {PUBLISHER};branch=z9hG4bK-p{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=p{n}\r\nTo: <sip:alice@a.example>\r\n\
         Call-ID: pub-{n}\r\nCSeq: {n} PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\n{m}{ct}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn subscribe_publish_notify() {
    let dir = TmpDir::new("hist-presence");
    let url = dir.sqlite_url("presence.db");
    db::with(&url, |c| c.batch(include_str!("../etc/db/presence.sql"))).unwrap();
    let cfg = format!(
        r#"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "textops.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
modparam("presence|presence_xml", "db_url", "{url}")
modparam("presence_xml", "force_active", 1)
modparam("presence", "server_address", "sip:127.0.0.1:5060")
route {{
	if (!is_method("PUBLISH|SUBSCRIBE")) {{
		sl_send_reply("404", "Not here");
		exit;
	}}
	if (!t_newtran()) {{
		sl_reply_error();
		exit;
	}};
	if (is_method("PUBLISH")) {{
		handle_publish();
		t_release();
	}} else if (is_method("SUBSCRIBE")) {{
		handle_subscribe();
		t_release();
	}}
	exit;
}}
"#
    );
    let script = load(&cfg);
    let rec = Arc::new(Recorder::default());
    let env = engine::env(&rec, &["a.example"]);

    // 1. subscribe: 200 with our To-tag, NOTIFY active without a body yet
    run(
        &script,
        &env,
        subscribe("sub-1", "presence", 600, None, 1),
        WATCHER,
    );
    let (r, n) = take(&rec);
    let r = r.expect("reply to SUBSCRIBE");
    assert_eq!(r.status(), Some(200));
    assert_eq!(header(&r, "Expires").as_deref(), Some("600"));
    let to_tag = r
        .to()
        .unwrap()
        .tag
        .map(|t| String::from_utf8_lossy(r.s(t)).into_owned());
    let to_tag = to_tag.expect("To-tag in the 200");
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0].ruri().unwrap(),
        format!("sip:bob@{WATCHER}").as_bytes()
    );
    assert_eq!(
        header(&n[0], "Subscription-State").as_deref(),
        Some("active;expires=600")
    );
    assert_eq!(header(&n[0], "Event").as_deref(), Some("presence"));
    assert_eq!(header(&n[0], "Call-ID").as_deref(), Some("sub-1"));
    let ntag = n[0]
        .from()
        .unwrap()
        .tag
        .map(|t| String::from_utf8_lossy(n[0].s(t)).into_owned());
    assert_eq!(
        ntag.as_deref(),
        Some(to_tag.as_str()),
        "NOTIFY From-tag is the dialog's local tag"
    );
    assert!(n[0].body().is_empty());

    // 2. publish: 200 with SIP-ETag, NOTIFY carries the PIDF
    run(&script, &env, publish(1, 300, None, PIDF), PUBLISHER);
    let (r, n) = take(&rec);
    let r = r.expect("reply to PUBLISH");
    assert_eq!(r.status(), Some(200));
    let etag = header(&r, "SIP-ETag").expect("SIP-ETag");
    assert_eq!(header(&r, "Expires").as_deref(), Some("300"));
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].body(), PIDF.as_bytes());
    assert_eq!(
        header(&n[0], "Content-Type").as_deref(),
        Some("application/pidf+xml")
    );
    let cseq = |m: &SipMsg| m.cseq().unwrap().number;
    assert_eq!(cseq(&n[0]), 3);

    // 3. a refresh with a wrong etag is 412; the right one with Expires 0 removes it
    run(&script, &env, publish(2, 300, Some("nope"), ""), PUBLISHER);
    let (r, n) = take(&rec);
    assert_eq!(r.unwrap().status(), Some(412));
    assert!(n.is_empty());
    run(&script, &env, publish(3, 0, Some(&etag), ""), PUBLISHER);
    let (r, n) = take(&rec);
    assert_eq!(r.unwrap().status(), Some(200));
    assert_eq!(n.len(), 1);
    assert!(n[0].body().is_empty());

    // 4. an event we do not serve
    run(
        &script,
        &env,
        subscribe("sub-2", "dialog", 600, None, 1),
        WATCHER,
    );
    let (r, _) = take(&rec);
    let r = r.unwrap();
    assert_eq!(r.status(), Some(489));
    assert_eq!(header(&r, "Allow-Events").as_deref(), Some("presence"));

    // 5. unsubscribe: 200 and a final NOTIFY; then the dialog is gone (481)
    run(
        &script,
        &env,
        subscribe("sub-1", "presence", 0, Some(&to_tag), 2),
        WATCHER,
    );
    let (r, n) = take(&rec);
    assert_eq!(r.unwrap().status(), Some(200));
    assert_eq!(
        header(&n[0], "Subscription-State").as_deref(),
        Some("terminated;reason=timeout")
    );
    run(
        &script,
        &env,
        subscribe("sub-1", "presence", 600, Some(&to_tag), 3),
        WATCHER,
    );
    let (r, _) = take(&rec);
    assert_eq!(r.unwrap().status(), Some(481));

    // 6. expiry in the timer process: a 1 s publication and subscription
    run(
        &script,
        &env,
        subscribe("sub-3", "presence", 1, None, 1),
        WATCHER,
    );
    let (_, n) = take(&rec);
    assert_eq!(n.len(), 1);
    run(&script, &env, publish(4, 1, None, PIDF), PUBLISHER);
    let (_, n) = take(&rec);
    assert_eq!(n[0].body(), PIDF.as_bytes());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    script.modules().tick_all(&env, std::time::Instant::now());
    let (_, n) = take(&rec);
    let states: Vec<String> = n
        .iter()
        .map(|m| header(m, "Subscription-State").unwrap_or_default())
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some("terminated;reason=timeout"),
        "{states:?}"
    );
    assert!(
        n.iter().all(|m| m.body().is_empty()),
        "the publication expired first"
    );
    let left = db::with(&url, |c| {
        Ok((
            c.query("presentity", &["etag"], &[], None)?.len(),
            c.query("active_watchers", &["callid"], &[], None)?.len(),
        ))
    })
    .unwrap();
    assert_eq!(left, (0, 0));
}
