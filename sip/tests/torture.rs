//! RFC 4475 and RFC 5118 torture messages: every message must get the
//! verdict its MANIFEST states.
//!
//! - `valid`: parses, and the key headers parse (`check_headers`); for
//!   on-the-wire sets (rfc4475, rfc5118/wire) `validate` passes too. The
//!   raw RFC 5118 archive is not on-the-wire (bare LF, Content-Length
//!   counted differently, see its README), so there `validate` may only
//!   fail with `BodyTruncated`.
//! - `invalid`: `parse` or `validate` rejects it.
//! - `valid-but-semantically-bad`: parses without error.

use std::path::PathBuf;

use ser_sip::{ParseError, SipMsg};

fn dir(rel: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/sip-torture")
        .join(rel);
    assert!(
        d.is_dir(),
        "torture corpus missing: {} (expected /work/shared/sip-torture)",
        d.display()
    );
    d
}

fn manifest(rel: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir(rel).join("MANIFEST.tsv")).expect("read MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect()
}

fn run(rel: &str, on_wire: bool) {
    let mut failures = Vec::new();
    let entries = manifest(rel);
    assert!(!entries.is_empty());
    for (file, expected) in &entries {
        let raw = std::fs::read(dir(rel).join(file)).expect("read message");
        let parsed = SipMsg::parse(raw);
        let verdict = match expected.as_str() {
            "valid" => match &parsed {
                Err(e) => Err(format!("parse failed: {e}")),
                Ok(m) => match (m.check_headers(), m.validate()) {
                    (Err(e), _) => Err(format!("key headers: {e}")),
                    (Ok(()), Ok(())) => Ok(()),
                    (Ok(()), Err(ParseError::BodyTruncated { .. })) if !on_wire => Ok(()),
                    (Ok(()), Err(e)) => Err(format!("validate: {e}")),
                },
            },
            "invalid" => match &parsed {
                Err(_) => Ok(()),
                Ok(m) => match m.validate() {
                    Err(_) => Ok(()),
                    Ok(()) => Err("accepted".to_string()),
                },
            },
            "valid-but-semantically-bad" => parsed
                .as_ref()
                .map(|_| ())
                .map_err(|e| format!("parse failed: {e}")),
            other => panic!("{rel}/{file}: unknown verdict {other}"),
        };
        if let Err(why) = verdict {
            failures.push(format!("{rel}/{file} ({expected}): {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rfc4475() {
    run("rfc4475", true);
}

#[test]
fn rfc5118() {
    run("rfc5118", false);
}

#[test]
fn rfc5118_wire() {
    run("rfc5118/wire", true);
}

/// Spot checks of what the torture messages are about.
#[test]
fn torture_details() {
    let read = |f: &str| SipMsg::parse(std::fs::read(dir("rfc4475").join(f)).unwrap()).unwrap();
    let m = read("wsinv.dat");
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap().number, 9);
    assert_eq!(m.vias().count(), 3);
    assert_eq!(m.s(m.via2().unwrap().unwrap().host), b"spindle.example.com");
    assert_eq!(m.s(m.via1().unwrap().host), b"192.0.2.2");
    assert_eq!(m.s(m.to().unwrap().tag.unwrap()), b"1918181833n");
    assert_eq!(
        m.from().unwrap().display_name(m.buf()).unwrap(),
        br#"J Rosenberg \""#
    );
    let e = read("esc01.dat");
    let ruri = e.parsed_ruri().unwrap();
    assert_eq!(
        ruri.user_unescaped(e.buf()).unwrap(),
        b"sips:user@example.com"
    );
    let e = read("escnull.dat");
    assert!(e
        .to()
        .unwrap()
        .uri
        .user_unescaped(e.buf())
        .unwrap()
        .contains(&0));
    assert_eq!(
        m.s(m.from().unwrap().display.unwrap()),
        br#""J Rosenberg \\\"""#
    );
    let m = read("dblreq.dat");
    assert_eq!(m.method(), Some(ser_sip::Method::Register));
    assert_eq!(m.body(), b"");
    let m = read("semiuri.dat");
    let u = m.parsed_ruri().unwrap();
    assert_eq!(m.s(u.user.unwrap()), b"user;par=u%40example.net");
    assert!(u.params.is_empty());
    let m = read("mpart01.dat");
    assert_eq!(m.body().len(), 553);
    let m = read("inv2543.dat");
    assert!(!m.body().is_empty());
    assert_eq!(m.content_length(), None);
    let m = read("esc02.dat");
    assert_eq!(m.method(), Some(ser_sip::Method::Other));
    assert_eq!(m.find_by_name(b"C%6Fntact").count(), 1);
    let m = read("longreq.dat");
    assert_eq!(m.vias().count(), 34);
    let m = read("noreason.dat");
    assert_eq!((m.status(), m.reason()), (Some(100), Some(&b""[..])));
    let m5 =
        SipMsg::parse(std::fs::read(dir("rfc5118").join("port-ambiguous.dat")).unwrap()).unwrap();
    assert_eq!(m5.parsed_ruri().unwrap().port, None);
}

/// Every invalid message gets a sane reaction: replies are dropped,
/// requests get a parseable error reply (or are dropped when too broken).
#[test]
fn reactions_to_invalid_messages() {
    use ser_sip::{bad_message_reaction, Reaction};
    let mut replied = Vec::new();
    for rel in ["rfc4475", "rfc5118"] {
        for (file, expected) in manifest(rel) {
            if expected != "invalid" {
                continue;
            }
            let raw = std::fs::read(dir(rel).join(&file)).unwrap();
            let err = match SipMsg::parse(raw.clone()) {
                Err(e) => e,
                Ok(m) => m.validate().expect_err("invalid message rejected"),
            };
            let src = "192.0.2.200:5060".parse().ok();
            match bad_message_reaction(&raw, &err, src) {
                Reaction::Drop => {}
                Reaction::Reply { code, bytes } => {
                    assert!(!raw.starts_with(b"SIP/"), "{file}: replied to a reply");
                    let r =
                        SipMsg::parse(bytes).unwrap_or_else(|e| panic!("{file}: our reply: {e}"));
                    r.check_headers()
                        .unwrap_or_else(|e| panic!("{file}: our reply: {e}"));
                    assert_eq!(r.status(), Some(code));
                    replied.push((file, code));
                }
            }
        }
    }
    let code_of = |f: &str| replied.iter().find(|(n, _)| n == f).map(|(_, c)| *c);
    assert_eq!(code_of("badvers.dat"), Some(505));
    assert_eq!(code_of("clerr.dat"), Some(400));
    assert_eq!(code_of("mismatch01.dat"), Some(400));
    assert_eq!(code_of("ipv6-bad.dat"), Some(400));
    assert_eq!(code_of("bigcode.dat"), None);
    assert_eq!(code_of("scalarlg.dat"), None);
    assert!(replied.len() >= 12, "{replied:?}");
}

/// On a stream, every valid torture message with a Content-Length frames
/// to exactly the message the datagram parser sees; without one it is a
/// framing error.
#[test]
fn stream_framing_agrees_with_datagram_parse() {
    use ser_sip::{frame_stream, Framing};
    for rel in ["rfc4475", "rfc5118/wire"] {
        for (file, expected) in manifest(rel) {
            if expected != "valid" {
                continue;
            }
            let raw = std::fs::read(dir(rel).join(&file)).unwrap();
            let m = SipMsg::parse(raw.clone()).unwrap();
            let framed = frame_stream(&raw);
            match m.content_length() {
                Some(_) => assert_eq!(framed, Framing::Complete(m.msg_len()), "{rel}/{file}"),
                None => assert!(
                    matches!(framed, Framing::Error(_)),
                    "{rel}/{file}: {framed:?}"
                ),
            }
            // Every strict prefix of the message needs more bytes.
            for cut in [1, raw.len() / 2, m.msg_len().saturating_sub(1)] {
                if m.content_length().is_some() && cut > 0 && cut < m.msg_len() {
                    assert_eq!(
                        frame_stream(&raw[..cut]),
                        Framing::NeedMore,
                        "{rel}/{file} cut {cut}"
                    );
                }
            }
        }
    }
}
