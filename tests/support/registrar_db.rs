//! The registrar scenario every SQL server runs (registrar_pg, registrar_mysql):
//! auth_db checks digest credentials against `subscriber`, usrloc writes the
//! binding through (db_mode 1) to `location`.

use ser::route::Script;
use ser_modules::auth::digest::Alg;
use ser_modules::db::{self, DbValue};
use ser_sip::SipMsg;

use super::engine::{self, Run};

/// Whether the tests run as root (database servers then run as their own user).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A REGISTER of `user`'s one contact, with `extra` headers.
pub fn register(user: &str, cseq: u32, extra: &str) -> SipMsg {
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-pg-{cseq}\r\n\
         From: <sip:{user}@example.com>;tag=f{cseq}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: pg-{user}@h\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@192.0.2.10:5070>\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    );
    SipMsg::parse(text.into_bytes()).expect("REGISTER parses")
}

/// Runs a request from the registering client.
pub fn run(script: &Script, msg: SipMsg) -> Run {
    engine::run_once(script, &[], "192.0.2.10:5070", msg, |_| {})
}

/// alice's Authorization for `nonce` (MD5, no qop), computed here.
pub fn credentials(nonce: &str, password: &str) -> String {
    let h = |s: String| Alg::Md5.h(&[s.as_bytes()]);
    let ha1 = h("alice:example.com:".to_owned() + password);
    let ha2 = h("REGISTER:sip:example.com".to_owned());
    let resp = h(format!("{ha1}:{nonce}:{ha2}"));
    format!(
        "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", \
         uri=\"sip:example.com\", response=\"{resp}\"\r\n"
    )
}

/// The nonce of a WWW-Authenticate challenge.
pub fn nonce_of(ch: &str) -> String {
    ch.split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

/// Creates our `schema` (the flavour `db::schema` knows) at `url` with
/// subscriber alice/secret; loads a registrar config authenticating
/// against it; alice is challenged, registers, and is refused with a wrong
/// password; her binding is a row with typed columns.  The script and the
/// nonce, for what a test checks next.
pub fn auth_and_write_through(url: &str, schema: &str) -> (Script, String) {
    db::with(url, |c| {
        c.batch(db::schema(schema).unwrap())?;
        c.check_version("subscriber", 7)?;
        c.insert(
            "subscriber",
            &[
                ("username", DbValue::Str("alice".into())),
                ("domain", DbValue::Str("example.com".into())),
                ("password", DbValue::Str("secret".into())),
                (
                    "ha1",
                    DbValue::Str(Alg::Md5.h(&[b"alice:example.com:secret"])),
                ),
            ],
        )
    })
    .expect("schema and subscriber");

    let cfg = format!(
        "loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\nloadmodule \"auth\"\nloadmodule \"auth_db\"\n\
         modparam(\"usrloc|auth_db\", \"db_url\", \"{url}\")\n\
         modparam(\"usrloc\", \"db_mode\", 1)\n\
         route {{\n\
           if (!www_authorize(\"$td\", \"subscriber\")) {{\n\
             if ($rc == -1) {{ sl_reply_error(); exit; }}\n\
             www_challenge(\"$td\", \"0\"); exit;\n\
           }}\n\
           save(\"location\");\n\
         }}\n"
    );
    let s = engine::load_init(64 << 20, &cfg);
    let r = run(&s, register("alice", 1, ""));
    assert_eq!(r.status(), vec![401]);
    let nonce = nonce_of(&r.header("WWW-Authenticate")[0]);
    let r = run(&s, register("alice", 2, &credentials(&nonce, "secret")));
    assert_eq!(r.status(), vec![200]);
    let r = run(&s, register("alice", 3, &credentials(&nonce, "wrong")));
    assert_eq!(r.status(), vec![401]);

    // Write-through: the binding is a row, with typed columns read back.
    let rows = db::with(url, |c| {
        c.query(
            "location",
            &["contact", "cseq", "expires", "q"],
            &[("username", DbValue::Str("alice".into()))],
            None,
        )
    })
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], DbValue::Str("sip:alice@192.0.2.10:5070".into()));
    assert_eq!(rows[0][1], DbValue::Int(2));
    let exp = rows[0][2].as_datetime() - ser_modules::usrloc::now() as i64;
    assert!((3500..=3600).contains(&exp), "expires in {exp}s");
    (s, nonce)
}
