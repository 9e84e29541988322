//! textops / siputils in the routing engine: configs using each function run
//! against real SIP messages; the forwarded or replied bytes are checked.

mod support;

use ser_sip::SipMsg;
use support::engine::{self, load_only as load, try_load, Run};

const SRC: &str = "127.0.0.2:5062";
const DOMAINS: &[&str] = &["proxy.example.com"];
const MODS: &str = "loadmodule \"sl\"\nloadmodule \"textops\"\nloadmodule \"siputils\"\n";

fn request(method: &str, ruri: &str, extra: &str, body: &str) -> SipMsg {
    let text = format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-test-1;rport\r\n\
         From: <sip:carol@example.org>;tag=from1\r\n\
         To: <sip:alice@example.org>\r\n\
         Call-ID: call-1@127.0.0.2\r\n\
         CSeq: 1 {method}\r\n\
         {extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    SipMsg::parse(text.into_bytes()).expect("test message parses")
}

fn run(cfg: &str, msg: SipMsg) -> Run {
    engine::run_once(&load(&format!("{MODS}{cfg}")), DOMAINS, SRC, msg, |_| {})
}

/// The one message forwarded.
fn forwarded(r: &Run) -> &str {
    assert_eq!(r.sent.len(), 1, "{:?}", r.sent);
    &r.sent[0].1
}

#[test]
fn header_edits_reach_the_forwarded_request() {
    let cfg = r#"route {
        if (search_body("^v=0")) append_hf("X-Body: sdp\r\n");
        if (search_body("^m=video")) append_hf("X-Video: yes\r\n");
        replace("Subject: old", "Subject: new");
        replace_all("example\.org", "example.net");
        search_append("Call-ID: call-1", "-x");
        subst("/^(User-Agent): (.*)$/\1: rs-\2/s");
        insert_hf("X-First: 1\r\n");
        insert_hf("X-Before-CSeq: 1\r\n", "CSeq");
        if (!replace("No-Such-Header", "x")) append_hf("X-Replace: -1\r\n");
        forward("127.0.0.1", 5070);
    }"#;
    let r = run(
        cfg,
        request(
            "INVITE",
            "sip:bob@proxy.example.com",
            "Subject: old one\r\nUser-Agent: phone 1.0\r\n",
            "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
        ),
    );
    let out = forwarded(&r);
    let m = SipMsg::parse(out.as_bytes().to_vec()).unwrap();
    assert_eq!(engine::header(&m, "Subject").as_deref(), Some("new one"));
    assert_eq!(
        engine::header(&m, "From").as_deref(),
        Some("<sip:carol@example.net>;tag=from1")
    );
    assert_eq!(
        engine::header(&m, "To").as_deref(),
        Some("<sip:alice@example.net>")
    );
    assert_eq!(
        engine::header(&m, "Call-ID").as_deref(),
        Some("call-1-x@127.0.0.2")
    );
    assert_eq!(
        engine::header(&m, "User-Agent").as_deref(),
        Some("rs-phone 1.0")
    );
    assert_eq!(engine::header(&m, "X-Body").as_deref(), Some("sdp"));
    assert_eq!(engine::header(&m, "X-Video"), None);
    assert_eq!(engine::header(&m, "X-Replace").as_deref(), Some("-1"));
    // insert_hf: the first header of all (above our Via), and just above CSeq
    let names: Vec<String> = m
        .headers()
        .iter()
        .map(|h| String::from_utf8_lossy(m.header_name(h)).into_owned())
        .collect();
    assert_eq!(names[0], "X-First", "{out}");
    let cseq = names.iter().position(|n| n == "CSeq").unwrap();
    assert_eq!(names[cseq - 1], "X-Before-CSeq", "{out}");
    // the body is untouched (replace_all works on the headers only)
    assert!(
        out.ends_with("\r\n\r\nv=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
        "{out}"
    );
}

#[test]
fn subst_global_and_case_flags() {
    let cfg = r#"route {
        subst("/x-tag: a/X-Tag: b/gi");
        forward("127.0.0.1", 5070);
    }"#;
    let r = run(
        cfg,
        request("MESSAGE", "sip:bob@h", "X-Tag: a\r\nx-tag: a\r\n", ""),
    );
    let m = SipMsg::parse(forwarded(&r).as_bytes().to_vec()).unwrap();
    assert_eq!(engine::headers(&m, "X-Tag"), vec!["b", "b"]);
}

#[test]
fn ruri_rewrites_and_e164_checks() {
    let cfg = r#"route {
        if (!is_uri_user_e164("$ru")) subst_user("/^0([0-9]+)$/+49\1/");
        if (is_uri_user_e164("$ru") && is_e164("$rU")) add_uri_param("user=phone");
        if (uri_param("user", "phone") && !uri_param("user", "ip") && !uri_param("lr"))
            subst_uri("/@proxy\.example\.com/@gw.example.net/");
        forward("127.0.0.1", 5070);
    }"#;
    let r = run(
        cfg,
        request("INVITE", "sip:0301234@proxy.example.com", "", ""),
    );
    assert_eq!(
        r.new_uri.as_deref(),
        Some("sip:+49301234@gw.example.net;user=phone")
    );
    assert!(
        forwarded(&r).starts_with("INVITE sip:+49301234@gw.example.net;user=phone SIP/2.0\r\n"),
        "{}",
        r.sent[0].1
    );
    // not a number: left alone
    let r = run(
        cfg,
        request("INVITE", "sip:alice@proxy.example.com", "", ""),
    );
    assert_eq!(r.new_uri, None);
    assert!(forwarded(&r).starts_with("INVITE sip:alice@proxy.example.com SIP/2.0\r\n"));
}

#[test]
fn options_reply_answers_options_to_the_server_only() {
    let cfg = r#"modparam("siputils", "options_support", "100rel")
    route {
        if (options_reply()) exit;
        sl_send_reply("404", "Not Here");
    }"#;
    let r = run(cfg, request("OPTIONS", "sip:proxy.example.com", "", ""));
    assert_eq!(r.replies, vec![(200, "OK".to_owned())]);
    assert_eq!(r.header("Accept"), vec!["*/*"]);
    assert_eq!(r.header("Accept-Language"), vec!["en"]);
    assert_eq!(r.header("Supported"), vec!["100rel"]);
    assert!(r.header("Allow")[0].contains("OPTIONS"), "{:?}", r.sent);
    assert!(r.sent[0].1.contains(";tag="), "{}", r.sent[0].1);
    // for a user, or not OPTIONS: -1, the script goes on
    let r = run(cfg, request("OPTIONS", "sip:bob@proxy.example.com", "", ""));
    assert_eq!(r.replies, vec![(404, "Not Here".to_owned())]);
    let r = run(cfg, request("OPTIONS", "sip:other.example.com", "", ""));
    assert_eq!(r.replies, vec![(404, "Not Here".to_owned())]);
    let r = run(cfg, request("INVITE", "sip:proxy.example.com", "", ""));
    assert_eq!(r.replies, vec![(404, "Not Here".to_owned())]);
}

#[test]
fn bad_regex_or_subst_is_a_config_error() {
    for call in [
        r#"replace("(", "x")"#,
        r#"replace_all("[a", "x")"#,
        r#"search_append("(", "x")"#,
        r#"search_body("(")"#,
        r#"subst("/a/b")"#,
        r#"subst("/(a/b/")"#,
        r#"subst("/a/b/q")"#,
        r#"subst_uri("/(a)/\2/")"#,
        r#"subst_user("")"#,
        r#"add_uri_param("a;b")"#,
    ] {
        let cfg = format!("{MODS}route {{ {call}; }}");
        assert!(try_load(&cfg).is_err(), "{call} accepted");
    }
}
