//! usrloc / registrar / auth / auth_db through the routing engine: configs
//! parsed by ser-parser, loaded by `ser::route::load`, modules initialised,
//! real REGISTER and INVITE messages run through the script with a
//! recording transport.  Digest responses are computed here, independently.

mod support;

use ser::route::Script;
use ser_modules::db::{self, DbValue};
use ser_sip::SipMsg;
use support::engine::{self, Run, PROXY};
use support::tmp::TmpDir;

/// The registering client.
const SRC: &str = "192.0.2.10:5070";

fn load(cfg: &str) -> Script {
    engine::load_init(64 << 20, cfg)
}

/// A SQLite database with our schema and one subscriber alice/secret.
fn subscriber_db(dir: &TmpDir) -> String {
    let url = dir.sqlite_url("ser.db");
    db::with(&url, |c| {
        c.batch(db::schema("sqlite").unwrap())?;
        c.insert(
            "subscriber",
            &[
                ("username", DbValue::Str("alice".into())),
                ("domain", DbValue::Str("example.com".into())),
                ("password", DbValue::Str("secret".into())),
                ("ha1", DbValue::Str(md5_hex("alice:example.com:secret"))),
            ],
        )
    })
    .unwrap();
    url
}

/// MD5 in hex (the primitive is checked against RFC 2617 in the unit tests;
/// HA1, HA2 and the response are composed here independently).
fn md5_hex(s: &str) -> String {
    ser_modules::auth::digest::Alg::Md5.h(&[s.as_bytes()])
}

fn register(user: &str, callid: &str, cseq: u32, extra: &str) -> SipMsg {
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-{}-{cseq};rport\r\n\
         From: <sip:{user}@example.com>;tag=f{cseq}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: {callid}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         User-Agent: regtest/1.0\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n",
        callid.replace(['@', '.'], "-")
    );
    SipMsg::parse(text.into_bytes()).expect("REGISTER parses")
}

fn invite(ruri: &str) -> SipMsg {
    let text = format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-inv-1\r\n\
         From: <sip:bob@example.com>;tag=b1\r\n\
         To: <{ruri}>\r\n\
         Call-ID: inv-1@192.0.2.20\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    SipMsg::parse(text.into_bytes()).expect("INVITE parses")
}

fn run(script: &Script, msg: SipMsg) -> Run {
    engine::run_once(script, &["example.com"], SRC, msg, |_| {})
}

fn registrar_cfg(table: &str, params: &str) -> String {
    format!(
        "loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n{params}\n\
         route {{\n\
           if (method==\"REGISTER\") {{ save(\"{table}\"); exit; }}\n\
           lookup(\"{table}\");\n\
           switch ($rc) {{\n\
             case 1: sl_send_reply(\"299\", \"Found\"); exit;\n\
             case -2: sl_send_reply(\"405\", \"Method Not Allowed\"); exit;\n\
             default: sl_send_reply(\"404\", \"Not Found\"); exit;\n\
           }}\n\
         }}\n"
    )
}

#[test]
fn register_replies_with_contacts_and_lookup_rewrites_the_ruri() {
    let s = load(&registrar_cfg("loc_basic", ""));
    let r = run(
        &s,
        register(
            "alice",
            "c1@h",
            1,
            "Contact: <sip:alice@192.0.2.10:5070>;expires=600;q=0.1\r\n",
        ),
    );
    assert_eq!(r.status(), vec![200]);
    let contacts = r.header("Contact");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert!(
        contacts[0].starts_with("<sip:alice@192.0.2.10:5070>;expires="),
        "{contacts:?}"
    );
    assert!(contacts[0].ends_with(";q=0.1"), "{contacts:?}");
    let exp: u32 = contacts[0]
        .split(";expires=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((598..=600).contains(&exp), "{exp}");

    // A second device with a higher q becomes the first target.
    let r = run(
        &s,
        register(
            "alice",
            "c2@h",
            1,
            "Contact: <sip:alice@192.0.2.11:5070>;q=0.9\r\nExpires: 300\r\n",
        ),
    );
    assert_eq!(r.status(), vec![200]);
    assert_eq!(r.header("Contact").len(), 2);

    let r = run(&s, invite("sip:alice@example.com"));
    assert_eq!(r.status(), vec![299]);
    assert_eq!(r.new_uri.as_deref(), Some("sip:alice@192.0.2.11:5070"));
    assert_eq!(
        r.send_socket,
        Some(PROXY.parse().unwrap()),
        "the socket it registered through"
    );
    assert_eq!(r.branches, vec!["sip:alice@192.0.2.10:5070".to_string()]);

    let r = run(&s, invite("sip:nobody@example.com"));
    assert_eq!(r.status(), vec![404]);
    assert_eq!(r.new_uri, None);
}

#[test]
fn interval_too_brief_and_expires_bounds() {
    let s = load(&registrar_cfg(
        "loc_bounds",
        "modparam(\"registrar\", \"min_expires\", 60)\nmodparam(\"registrar\", \"max_expires\", 120)",
    ));
    let r = run(
        &s,
        register(
            "bob",
            "b1@h",
            1,
            "Contact: <sip:bob@192.0.2.10>\r\nExpires: 10\r\n",
        ),
    );
    assert_eq!(r.status(), vec![423]);
    assert_eq!(r.header("Min-Expires"), vec!["60".to_string()]);
    assert_eq!(run(&s, invite("sip:bob@example.com")).status(), vec![404]);

    // Above max_expires: granted max_expires.
    let r = run(
        &s,
        register(
            "bob",
            "b1@h",
            2,
            "Contact: <sip:bob@192.0.2.10>\r\nExpires: 3600\r\n",
        ),
    );
    assert_eq!(r.status(), vec![200]);
    let c = r.header("Contact");
    let exp: u32 = c[0].rsplit('=').next().unwrap().parse().unwrap();
    assert!((118..=120).contains(&exp), "{c:?}");
}

#[test]
fn star_with_expires_zero_removes_all_bindings() {
    let s = load(&registrar_cfg("loc_star", ""));
    for (i, ip) in ["192.0.2.1", "192.0.2.2"].iter().enumerate() {
        let r = run(
            &s,
            register(
                "carol",
                &format!("s{i}@h"),
                1,
                &format!("Contact: <sip:carol@{ip}>\r\n"),
            ),
        );
        assert_eq!(r.status(), vec![200]);
    }
    assert_eq!(run(&s, invite("sip:carol@example.com")).status(), vec![299]);
    // `*` without Expires: 0 is invalid.
    assert_eq!(
        run(&s, register("carol", "s9@h", 1, "Contact: *\r\n")).status(),
        vec![400]
    );
    let r = run(
        &s,
        register("carol", "s9@h", 2, "Contact: *\r\nExpires: 0\r\n"),
    );
    assert_eq!(r.status(), vec![200]);
    assert!(r.header("Contact").is_empty());
    assert_eq!(run(&s, invite("sip:carol@example.com")).status(), vec![404]);
    // A single binding removed with expires=0.
    run(
        &s,
        register(
            "carol",
            "s10@h",
            1,
            "Contact: <sip:carol@192.0.2.1>, <sip:carol@192.0.2.2>\r\n",
        ),
    );
    let r = run(
        &s,
        register(
            "carol",
            "s10@h",
            2,
            "Contact: <sip:carol@192.0.2.1>;expires=0\r\n",
        ),
    );
    assert_eq!(r.header("Contact").len(), 1);
}

#[test]
fn max_contacts_is_enforced() {
    let s = load(&registrar_cfg(
        "loc_max",
        "modparam(\"registrar\", \"max_contacts\", 2)",
    ));
    let r = run(
        &s,
        register(
            "dave",
            "d1@h",
            1,
            "Contact: <sip:d@192.0.2.1>, <sip:d@192.0.2.2>, <sip:d@192.0.2.3>\r\n",
        ),
    );
    assert_eq!(r.status(), vec![503]);
    assert_eq!(run(&s, invite("sip:dave@example.com")).status(), vec![404]);
    assert_eq!(
        run(
            &s,
            register(
                "dave",
                "d1@h",
                2,
                "Contact: <sip:d@192.0.2.1>, <sip:d@192.0.2.2>\r\n"
            )
        )
        .status(),
        vec![200]
    );
    assert_eq!(
        run(
            &s,
            register("dave", "d2@h", 1, "Contact: <sip:d@192.0.2.3>\r\n")
        )
        .status(),
        vec![503]
    );
}

#[test]
fn method_filtering_returns_minus_two() {
    let s = load(&registrar_cfg(
        "loc_methods",
        "modparam(\"registrar\", \"method_filtering\", 1)",
    ));
    run(
        &s,
        register(
            "erin",
            "e1@h",
            1,
            "Contact: <sip:erin@192.0.2.5>\r\nAllow: MESSAGE, OPTIONS\r\n",
        ),
    );
    let r = run(&s, invite("sip:erin@example.com"));
    assert_eq!(r.status(), vec![405]);
}

#[test]
fn ser_3_names_save_contacts_and_lookup_contacts() {
    let cfg = "loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
               route { if (method==\"REGISTER\") { if (!save_contacts(\"loc_ser\")) { sl_reply(\"500\", \"x\"); }; drop; }\n\
               if (lookup_contacts(\"loc_ser\")) { sl_reply(\"299\", \"Found\"); drop; } sl_reply(\"404\", \"Not Found\"); }\n";
    let s = load(cfg);
    assert_eq!(
        run(
            &s,
            register("fay", "f1@h", 1, "Contact: <sip:fay@192.0.2.6>\r\n")
        )
        .status(),
        vec![200]
    );
    let r = run(&s, invite("sip:fay@example.com"));
    assert_eq!(r.status(), vec![299]);
    assert_eq!(r.new_uri.as_deref(), Some("sip:fay@192.0.2.6"));
}

fn digest_param(h: &str, name: &str) -> String {
    let i = h
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {h}"));
    let rest = &h[i + name.len() + 1..];
    let v = rest.split(',').next().unwrap().trim();
    v.trim_matches('"').to_owned()
}

fn authorization(
    user: &str,
    password: &str,
    realm: &str,
    nonce: &str,
    uri: &str,
    qop: bool,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    if qop {
        let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"\r\n"
        )
    } else {
        let resp = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5\r\n"
        )
    }
}

fn auth_cfg(url: &str, table: &str, qop: &str, calc: &str) -> String {
    format!(
        "loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\nloadmodule \"auth\"\nloadmodule \"auth_db\"\n\
         modparam(\"auth_db\", \"db_url\", \"{url}\")\n\
         {calc}\n\
         route {{\n\
           if (method==\"REGISTER\") {{\n\
             if (!www_authorize(\"$td\", \"subscriber\")) {{ www_challenge(\"$td\", \"{qop}\"); exit; }}\n\
             if ($au != $tU) {{ sl_send_reply(\"403\", \"Forbidden auth ID\"); exit; }}\n\
             consume_credentials();\n\
             save(\"{table}\"); exit;\n\
           }}\n\
           sl_send_reply(\"404\", \"Not Found\");\n\
         }}\n"
    )
}

#[test]
fn digest_challenge_then_register_with_plain_password() {
    let dir = TmpDir::new("registrar-auth");
    let url = subscriber_db(&dir);
    let s = load(&auth_cfg(
        &url,
        "loc_auth",
        "1",
        "modparam(\"auth_db\", \"calculate_ha1\", yes)\nmodparam(\"auth_db\", \"password_column\", \"password\")",
    ));
    let contact = "Contact: <sip:alice@192.0.2.10:5070>\r\n";
    let r = run(&s, register("alice", "a1@h", 1, contact));
    assert_eq!(r.status(), vec![401]);
    let ch = r.header("WWW-Authenticate");
    assert_eq!(ch.len(), 1);
    assert!(ch[0].starts_with("Digest realm=\"example.com\""), "{ch:?}");
    assert!(ch[0].contains("qop=\"auth\""), "{ch:?}");
    let nonce = digest_param(&ch[0], "nonce");

    let good = authorization(
        "alice",
        "secret",
        "example.com",
        &nonce,
        "sip:example.com",
        true,
    );
    let r = run(
        &s,
        register("alice", "a1@h", 2, &format!("{good}{contact}")),
    );
    assert_eq!(r.status(), vec![200], "good credentials");
    assert_eq!(r.header("Contact").len(), 1);

    // The same nonce-count again is a replay: challenged with stale=true.
    let r = run(
        &s,
        register("alice", "a1@h", 3, &format!("{good}{contact}")),
    );
    assert_eq!(r.status(), vec![401]);
    assert!(r.header("WWW-Authenticate")[0].contains("stale=true"));

    // Wrong password: challenged again, nothing saved for mallory.
    let bad = authorization(
        "alice",
        "wrong",
        "example.com",
        &nonce,
        "sip:example.com",
        false,
    );
    let r = run(&s, register("alice", "a1@h", 4, &format!("{bad}{contact}")));
    assert_eq!(r.status(), vec![401]);

    // Unknown user.
    let unknown = authorization(
        "mallory",
        "secret",
        "example.com",
        &nonce,
        "sip:example.com",
        false,
    );
    let r = run(
        &s,
        register(
            "mallory",
            "m1@h",
            1,
            &format!("{unknown}Contact: <sip:m@192.0.2.66>\r\n"),
        ),
    );
    assert_eq!(r.status(), vec![401]);
}

#[test]
fn stored_ha1_and_return_codes() {
    let dir = TmpDir::new("registrar-ha1");
    let url = subscriber_db(&dir);
    // Kamailio default: password_column = ha1 (stored HA1), no qop.
    let cfg = format!(
        "loadmodule \"sl\"\nloadmodule \"auth\"\nloadmodule \"auth_db\"\n\
         modparam(\"auth_db\", \"db_url\", \"{url}\")\n\
         route {{\n\
           www_authorize(\"example.com\", \"subscriber\");\n\
           switch ($rc) {{\n\
             case 1: sl_send_reply(\"200\", \"OK\"); exit;\n\
             case -2: sl_send_reply(\"402\", \"Invalid Password\"); exit;\n\
             case -3: sl_send_reply(\"403\", \"Invalid User\"); exit;\n\
             case -5: www_challenge(\"example.com\", \"0\"); exit;\n\
             default: sl_send_reply(\"499\", \"Other $rc\"); exit;\n\
           }}\n\
         }}\n"
    );
    let s = load(&cfg);
    let r = run(&s, register("alice", "h1@h", 1, ""));
    assert_eq!(r.status(), vec![401]);
    let ch = &r.header("WWW-Authenticate")[0];
    assert!(!ch.contains("qop"), "{ch}");
    let nonce = digest_param(ch, "nonce");
    let ok = authorization(
        "alice",
        "secret",
        "example.com",
        &nonce,
        "sip:example.com",
        false,
    );
    assert_eq!(
        run(&s, register("alice", "h1@h", 2, &ok)).status(),
        vec![200]
    );
    let bad = authorization(
        "alice",
        "nope",
        "example.com",
        &nonce,
        "sip:example.com",
        false,
    );
    assert_eq!(
        run(&s, register("alice", "h1@h", 3, &bad)).status(),
        vec![402]
    );
    let who = authorization(
        "zed",
        "secret",
        "example.com",
        &nonce,
        "sip:example.com",
        false,
    );
    assert_eq!(
        run(&s, register("zed", "h1@h", 4, &who)).status(),
        vec![403]
    );
    // A nonce we never issued.
    let forged = authorization(
        "alice",
        "secret",
        "example.com",
        &"0".repeat(48),
        "sip:example.com",
        false,
    );
    let r = run(&s, register("alice", "h1@h", 5, &forged));
    assert_eq!(r.status(), vec![499]);
    assert_eq!(r.reason(), "Other -4", "a nonce we did not issue is stale");
}

#[test]
fn database_down_is_an_error_not_a_crash() {
    let cfg = "loadmodule \"sl\"\nloadmodule \"auth\"\nloadmodule \"auth_db\"\n\
               modparam(\"auth_db\", \"db_url\", \"sqlite:///nonexistent-dir-ser/x.db\")\n\
               route { www_authorize(\"example.com\", \"subscriber\"); if ($rc == -5) { www_challenge(\"example.com\", \"1\"); exit; } sl_reply_error(); }\n";
    let s = load(cfg);
    let r = run(&s, register("alice", "x1@h", 1, ""));
    let nonce = digest_param(&r.header("WWW-Authenticate")[0], "nonce");
    let cred = authorization(
        "alice",
        "secret",
        "example.com",
        &nonce,
        "sip:example.com",
        true,
    );
    let r = run(&s, register("alice", "x1@h", 2, &cred));
    assert_eq!(r.status(), vec![500]);
}

#[test]
fn write_through_persists_and_startup_loads_from_the_database() {
    let dir = TmpDir::new("registrar-ul1");
    let url = dir.sqlite_url("ser.db");
    db::with(&url, |c| c.batch(db::schema("sqlite").unwrap())).unwrap();
    let cfg = |table: &str| {
        registrar_cfg(
            table,
            &format!(
                "modparam(\"usrloc\", \"db_mode\", 1)\nmodparam(\"usrloc\", \"db_url\", \"{url}\")"
            ),
        )
    };
    let s = load(&cfg("location"));
    assert_eq!(
        run(
            &s,
            register(
                "gina",
                "g1@h",
                1,
                "Contact: <sip:gina@192.0.2.7>;expires=900\r\n"
            )
        )
        .status(),
        vec![200]
    );
    let rows = db::with(&url, |c| {
        c.query(
            "location",
            &["contact", "callid", "user_agent", "cseq"],
            &[("username", DbValue::Str("gina".into()))],
            None,
        )
    })
    .unwrap();
    assert_eq!(
        rows,
        vec![vec![
            DbValue::Str("sip:gina@192.0.2.7".into()),
            DbValue::Str("g1@h".into()),
            DbValue::Str("regtest/1.0".into()),
            DbValue::Int(1)
        ]]
    );
    // A binding present only in the database (written by a previous run)
    // is in memory after start-up.
    db::with(&url, |c| {
        c.batch("CREATE TABLE loc_boot AS SELECT * FROM location WHERE 0")?;
        c.insert(
            "loc_boot",
            &[
                ("ruid", DbValue::Str("boot-1".into())),
                ("username", DbValue::Str("hank".into())),
                ("contact", DbValue::Str("sip:hank@192.0.2.8".into())),
                (
                    "expires",
                    DbValue::DateTime(ser_modules::usrloc::now() as i64 + 600),
                ),
                ("q", DbValue::Double(1.0)),
                ("callid", DbValue::Str("old@h".into())),
                ("cseq", DbValue::Int(5)),
                ("last_modified", DbValue::DateTime(1)),
                ("flags", DbValue::Int(0)),
                ("cflags", DbValue::Int(0)),
                ("user_agent", DbValue::Str("ua".into())),
                ("reg_id", DbValue::Int(0)),
            ],
        )
    })
    .unwrap();
    let s2 = load(&cfg("loc_boot"));
    let r = run(&s2, invite("sip:hank@example.com"));
    assert_eq!(r.status(), vec![299]);
    assert_eq!(r.new_uri.as_deref(), Some("sip:hank@192.0.2.8"));
    // Removal is written through too.
    run(
        &s2,
        register("hank", "old@h", 6, "Contact: *\r\nExpires: 0\r\n"),
    );
    let rows = db::with(&url, |c| c.query("loc_boot", &["contact"], &[], None)).unwrap();
    assert!(rows.is_empty());
}

#[test]
fn db_only_mode_reads_and_writes_the_table() {
    let dir = TmpDir::new("registrar-ul3");
    let url = dir.sqlite_url("ser.db");
    db::with(&url, |c| c.batch(db::schema("sqlite").unwrap())).unwrap();
    let s = load(&registrar_cfg(
        "location",
        &format!(
            "modparam(\"usrloc\", \"db_mode\", 3)\nmodparam(\"usrloc\", \"db_url\", \"{url}\")"
        ),
    ));
    assert_eq!(
        run(
            &s,
            register("ivy", "i1@h", 1, "Contact: <sip:ivy@192.0.2.9>\r\n")
        )
        .status(),
        vec![200]
    );
    let r = run(&s, invite("sip:ivy@example.com"));
    assert_eq!(r.new_uri.as_deref(), Some("sip:ivy@192.0.2.9"));
    assert_eq!(r.dst_uri, None);
}

#[test]
fn ser_oob_flavour_domain_lookup_and_www_authenticate() {
    let dir = TmpDir::new("registrar-ser");
    let url = subscriber_db(&dir);
    db::with(&url, |c| {
        c.insert(
            "domain",
            &[
                ("domain", DbValue::Str("example.com".into())),
                ("did", DbValue::Str("d-1".into())),
            ],
        )?;
        c.insert(
            "credentials",
            &[
                ("auth_username", DbValue::Str("alice".into())),
                ("realm", DbValue::Str("example.com".into())),
                ("password", DbValue::Str("secret".into())),
                ("ha1", DbValue::Str(md5_hex("alice:example.com:secret"))),
                ("uid", DbValue::Str("uid-alice".into())),
            ],
        )
    })
    .unwrap();
    // The shape of ser-oob-3.0.cfg's REGISTER handling.
    let cfg = format!(
        "loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\nloadmodule \"textops\"\n\
         loadmodule \"auth\"\nloadmodule \"auth_db\"\nloadmodule \"domain\"\n\
         modparam(\"auth_db|domain\", \"db_url\", \"{url}\")\n\
         modparam(\"auth_db\", \"calculate_ha1\", yes)\n\
         modparam(\"auth_db\", \"plain_password_column\", \"password\")\n\
         route {{\n\
           lookup_domain(\"$fd\", \"@from.uri.host\");\n\
           if (strempty($f.did)) {{ sl_reply(\"403\", \"Not local\"); drop; }}\n\
           if (!is_from_local()) {{ sl_reply(\"403\", \"Not local 2\"); drop; }}\n\
           if (!www_authenticate(\"$fd.digest_realm\", \"credentials\")) {{\n\
             if ($? == -2) {{ sl_reply(\"500\", \"Internal Server Error\"); }}\n\
             else if ($? == -3) {{ sl_reply(\"400\", \"Bad Request\"); }}\n\
             else {{\n\
               if ($digest_challenge != \"\") {{ append_to_reply(\"%$digest_challenge\"); }}\n\
               sl_reply(\"401\", \"Unauthorized\");\n\
             }}\n\
             drop;\n\
           }}\n\
           if ($uid != \"uid-alice\") {{ sl_reply(\"500\", \"uid not loaded\"); drop; }}\n\
           if (!save_contacts(\"loc_ser_oob\")) {{ sl_reply(\"500\", \"save failed\"); }}\n\
           drop;\n\
         }}\n"
    );
    let s = load(&cfg);
    let r = run(
        &s,
        register("alice", "o1@h", 1, "Contact: <sip:alice@192.0.2.40>\r\n"),
    );
    assert_eq!(r.status(), vec![401], "{}", r.reason());
    let ch = r.header("WWW-Authenticate");
    assert_eq!(ch.len(), 1, "challenge appended from $digest_challenge");
    let nonce = digest_param(&ch[0], "nonce");
    let cred = authorization(
        "alice",
        "secret",
        "example.com",
        &nonce,
        "sip:example.com",
        true,
    );
    let r = run(
        &s,
        register(
            "alice",
            "o1@h",
            2,
            &format!("{cred}Contact: <sip:alice@192.0.2.40>\r\n"),
        ),
    );
    assert_eq!(r.status(), vec![200], "{:?}", r.reason());
}

#[test]
fn sha256_offered_first_and_accepted() {
    let dir = TmpDir::new("registrar-sha");
    let url = subscriber_db(&dir);
    let mut cfg = auth_cfg(
        &url,
        "loc_sha",
        "1",
        "modparam(\"auth_db\", \"calculate_ha1\", yes)\nmodparam(\"auth_db\", \"password_column\", \"password\")",
    );
    cfg = cfg.replacen(
        "route {",
        "modparam(\"auth\", \"algorithm\", \"SHA-256, MD5\")\nroute {",
        1,
    );
    let s = load(&cfg);
    let contact = "Contact: <sip:alice@192.0.2.12>\r\n";
    let r = run(&s, register("alice", "sha1@h", 1, contact));
    assert_eq!(r.status(), vec![401]);
    let ch = r.header("WWW-Authenticate");
    assert_eq!(ch.len(), 2, "{ch:?}");
    assert!(
        ch[0].ends_with("algorithm=SHA-256") && ch[1].ends_with("algorithm=MD5"),
        "{ch:?}"
    );
    let nonce = digest_param(&ch[0], "nonce");
    let h = |s: String| ser_modules::auth::digest::Alg::Sha256.h(&[s.as_bytes()]);
    let ha1 = h("alice:example.com:secret".into());
    let ha2 = h("REGISTER:sip:example.com".into());
    let resp = h(format!("{ha1}:{nonce}:00000001:abcd:auth:{ha2}"));
    let cred = format!(
        "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", \
         uri=\"sip:example.com\", response=\"{resp}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"abcd\"\r\n"
    );
    let r = run(
        &s,
        register("alice", "sha1@h", 2, &format!("{cred}{contact}")),
    );
    assert_eq!(r.status(), vec![200]);
}

#[test]
fn received_avp_nat_flag_registered_and_unregister() {
    let cfg = "loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
               modparam(\"registrar\", \"received_avp\", \"$avp(i:80)\")\n\
               route {\n\
                 if (method==\"REGISTER\") {\n\
                   $avp(i:80) = \"sip:\" + $si + \":\" + $sp;\n\
                   setbflag(6);\n\
                   save(\"loc_nat\"); exit;\n\
                 }\n\
                 if (method==\"OPTIONS\") {\n\
                   if (registered(\"loc_nat\")) { sl_send_reply(\"298\", \"Registered\"); } else { sl_send_reply(\"404\", \"Not Registered\"); }\n\
                   exit;\n\
                 }\n\
                 if (method==\"BYE\") { unregister(\"loc_nat\", \"sip:kai@example.com\"); sl_send_reply(\"200\", \"Gone\"); exit; }\n\
                 if (lookup(\"loc_nat\")) {\n\
                   if (isbflagset(6)) { sl_send_reply(\"299\", \"Found behind NAT\"); } else { sl_send_reply(\"299\", \"Found\"); }\n\
                   exit;\n\
                 }\n\
                 sl_send_reply(\"404\", \"Not Found\");\n\
               }\n";
    let s = load(cfg);
    assert_eq!(
        run(
            &s,
            register("kai", "k1@h", 1, "Contact: <sip:kai@10.0.0.5:5060>\r\n")
        )
        .status(),
        vec![200]
    );
    let r = run(&s, invite("sip:kai@example.com"));
    assert_eq!(r.status(), vec![299]);
    assert_eq!(r.reason(), "Found behind NAT");
    assert_eq!(r.new_uri.as_deref(), Some("sip:kai@10.0.0.5:5060"));
    assert_eq!(
        r.dst_uri.as_deref(),
        Some("sip:192.0.2.10:5070"),
        "received from the AVP"
    );

    let options = |user: &str| {
        let text = format!(
            "OPTIONS sip:{user}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK-o\r\n\
             From: <sip:x@example.com>;tag=1\r\nTo: <sip:{user}@example.com>\r\nCall-ID: o@h\r\nCSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        SipMsg::parse(text.into_bytes()).unwrap()
    };
    assert_eq!(run(&s, options("kai")).status(), vec![298]);
    assert_eq!(run(&s, options("nobody")).status(), vec![404]);
    let bye = "BYE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK-b\r\n\
               From: <sip:x@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: b@h\r\nCSeq: 1 BYE\r\n\
               Content-Length: 0\r\n\r\n";
    assert_eq!(
        run(&s, SipMsg::parse(bye.as_bytes().to_vec()).unwrap()).status(),
        vec![200]
    );
    assert_eq!(run(&s, options("kai")).status(), vec![404]);
}
