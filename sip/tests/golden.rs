//! Golden-file tests: every `tests/golden/sip/*.sip` message (workspace
//! root) is parsed and its [`ser_sip::dump::dump`] compared with the
//! `*.parsed` file beside it.
//!
//! - `UPDATE_GOLDEN=1` rewrites the `*.parsed` files.
//! - `GOLDEN_GENERATE=1` (re)writes the generated `gen-*.sip` inputs from
//!   the variant tables below (hand-written `*.sip` files are left alone).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ser_sip::SipMsg;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/sip")
}

fn render(raw: Vec<u8>) -> String {
    match SipMsg::parse(raw) {
        Ok(m) => ser_sip::dump::dump(&m),
        Err(e) => format!("parse error: {e}\n"),
    }
}

#[test]
fn golden() {
    let dir = golden_dir();
    if std::env::var_os("GOLDEN_GENERATE").is_some() {
        generate(&dir);
    }
    assert!(dir.is_dir(), "golden dir missing: {}", dir.display());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read golden dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 300,
        "expected at least 300 golden messages, found {}",
        inputs.len()
    );
    let mut failures = Vec::new();
    for input in &inputs {
        let got = render(std::fs::read(input).expect("read .sip"));
        let expected_path = input.with_extension("parsed");
        if update {
            std::fs::write(&expected_path, &got).expect("write .parsed");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(exp) if exp == got => {}
            Ok(exp) => failures.push(format!(
                "{}: dump differs\n--- expected\n{exp}--- got\n{got}",
                input.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no .parsed file (run with UPDATE_GOLDEN=1)",
                input.display()
            )),
        }
    }
    // The torture corpora, read in place from shared/, dumped beside ours.
    let torture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/sip-torture");
    assert!(
        torture.is_dir(),
        "torture corpus missing: {}",
        torture.display()
    );
    for sub in ["rfc4475", "rfc5118", "rfc5118/wire"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(torture.join(sub))
            .expect("read torture dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "dat"))
            .collect();
        files.sort();
        for f in files {
            let got = render(std::fs::read(&f).expect("read .dat"));
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let expected_path = dir
                .join("torture")
                .join(format!("{}-{stem}.parsed", sub.replace('/', "-")));
            if update {
                std::fs::create_dir_all(dir.join("torture")).expect("create torture golden dir");
                std::fs::write(&expected_path, &got).expect("write .parsed");
                continue;
            }
            match std::fs::read_to_string(&expected_path) {
                Ok(exp) if exp == got => {}
                Ok(exp) => failures.push(format!(
                    "{}: dump differs\n--- expected\n{exp}--- got\n{got}",
                    f.display()
                )),
                Err(_) => failures.push(format!(
                    "{}: no {} (run with UPDATE_GOLDEN=1)",
                    f.display(),
                    expected_path.display()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const METHODS: &[&str] = &[
    "INVITE",
    "REGISTER",
    "OPTIONS",
    "BYE",
    "CANCEL",
    "ACK",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "REFER",
    "PRACK",
    "UPDATE",
    "INFO",
    "PUBLISH",
    "FOO-Bar.x",
];

const RURIS: &[&str] = &[
    "sip:bob@example.com",
    "sips:bob@example.com:5061",
    "sip:bob@[2001:db8::1]:5060;transport=tcp",
    "sip:+12125551212@gw.example.com;user=phone",
    "tel:+1-212-555-1212;phone-context=example.com",
    "sip:example.com;lr",
    "sip:alice%20x@example.com",
    "sip:bob:secret@10.0.0.1;maddr=239.255.255.1;ttl=15",
    "sip:[::1]",
    "SIP:Bob@EXAMPLE.com;Transport=UDP;method=INVITE",
    "sip:user;par=u%40example.net@example.com",
    "sip:192.0.2.4:5070;x-unknown;x-val=a%41b",
    "urn:service:sos",
];

const VIAS: &[&str] = &[
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport",
    "Via: SIP/2.0/TCP client.example.com;branch=z9hG4bK74bf9;received=192.0.2.101",
    "v: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKx1;rport=5070;received=2001:db8::9",
    "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/TCP p2.example.com:5080;branch=z9hG4bKp2",
    "Via: SIP/2.0/TLS tls.example.com:5061;maddr=239.1.1.1;ttl=16;branch=z9hG4bKtls",
    "VIA:  SIP / 2.0 / UDP\r\n   folded.example.com ;\r\n branch = z9hG4bKfold",
    "Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws;x-ext",
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2",
    "Via: SIP/2.0/SCTP sctp.example.com;branch=z9hG4bKsctp (a comment)",
    "Via: SIP/2.0/UDP bad host;branch=z9hG4bK",
];

const FROMS: &[&str] = &[
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "f: \"A. G. Bell\" <sip:agb@bell-telephone.com> ;tag=a48s",
    "From: sip:+12125551212@server.phone2net.com;tag=887s",
    "From: \"Quote \\\"me\\\" \\\\ now\" <sips:q@example.com;transport=tcp>;tag=q1;x=y",
    "From: Anonymous <sip:anonymous@anonymous.invalid>;tag=hyh8",
    "From: <tel:+358-555-1234567;postd=pp22>;tag=t1",
    "fRoM:\r\n <sip:folded@example.com>\r\n ;tag=fold",
];

const TOS: &[&str] = &[
    "To: Bob <sip:bob@biloxi.example.com>",
    "t: <sip:bob@biloxi.example.com>;tag=a6c85cf",
    "To: sip:operator@cs.columbia.edu",
    "To: \"Bob B.\" <sip:bob@[2001:db8::2]:5062>",
    "To: <sip:bob@example.com?subject=hello%20there>",
    "To: The Operator <sip:operator@cs.columbia.edu>;tag=287447",
];

const CONTACTS: &[&str] = &[
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "m: <sip:a@192.0.2.4:5060;transport=udp>;q=0.7;expires=3600, \"Mr. W\" <sip:w@example.com>;q=0.1",
    "Contact: *",
    "Contact: sip:bare@192.0.2.5;expires=60",
    "Contact: <sip:[2001:db8::5]:5060;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1",
    "Contact: <sip:x@example.com>;q=2",
];

const EXTRAS: &[&str] = &[
    "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
    "Record-Route: <sip:rr.example.com;lr;ftag=abc>\r\nRecord-Route: <sip:[2001:db8::7];lr>",
    "Authorization: Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    "Proxy-Authorization: Digest username=\"alice\",realm=\"atlanta.com\",nonce=\"wf84f1ceczx41ae6cbe5aea9c8e88d359\",uri=\"sip:bob@biloxi.com\",response=\"42ce3cef44b22f50c6a6071bc8\",algorithm=MD5",
    "WWW-Authenticate: Digest realm=\"atlanta.com\", domain=\"sip:boxesbybob.com\", qop=\"auth\", nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=MD5",
    "Supported: 100rel, timer, path\r\nRequire: 100rel\r\nProxy-Require: foo",
    "k: replaces , gruu",
    "Event: presence;id=1234\r\nAccept: application/pidf+xml, application/xpidf+xml;q=0.5",
    "o: dialog\r\nAllow-Events: presence, dialog",
    "Allow: INVITE, ACK, OPTIONS, CANCEL, BYE",
    "User-Agent: SER/3.0 (linux) \"quoted\" thing\r\nServer: ser",
    "Expires: 3600",
    "Subject: Lunch\r\nOrganization: Boxes by Bob",
    "Date: Sat, 13 Nov 2010 23:29:00 GMT",
    "Date: Sat, 13 Nov 2010 23:29:00 PST",
    "X-Custom-Header: some value ; with=params\r\nP-Asserted-Identity: \"Cullen\" <sip:fluffy@example.com>, <tel:+14085264000>",
    "Max-Forwards: 300",
    "Refer-To: <sip:carol@example.com?Replaces=12345%40192.0.2.1%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\nReferred-By: <sip:bob@example.com>",
    "Session-Expires: 1800;refresher=uac\r\nMin-SE: 90",
    "Content-Encoding: gzip\r\nAccept-Encoding: gzip, identity;q=0.5",
    "Authorization: NoOneKnowsThisScheme opaque-data=here",
    "Expires: 99999999999999999999",
];

const BODIES: &[(&str, &str)] = &[
    ("", ""),
    ("application/sdp", "v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.example.com\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
    ("text/plain;charset=UTF-8", "Hello, \u{43f}\u{440}\u{438}\u{432}\u{435}\u{442}!"),
    ("application/sdp", "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\n"),
];

const REPLIES: &[(u16, &str)] = &[
    (100, "Trying"),
    (180, "Ringing"),
    (183, "Session Progress"),
    (200, "OK"),
    (202, "Accepted"),
    (302, "Moved Temporarily"),
    (401, "Unauthorized"),
    (407, "Proxy Authentication Required"),
    (486, "Busy Here"),
    (503, "Service Unavailable"),
    (
        603,
        "\u{41e}\u{442}\u{43a}\u{43b}\u{43e}\u{43d}\u{435}\u{43d}\u{43e}",
    ),
    (699, ""),
];

/// Picks element `i * step` (mod len): co-prime steps vary the
/// combinations across messages.
fn pick<T>(v: &[T], i: usize, step: usize) -> &T {
    &v[(i * step + i / v.len()) % v.len()]
}

fn generate(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create golden dir");
    for e in std::fs::read_dir(dir).expect("read golden dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("gen-") && name.ends_with(".sip") {
            std::fs::remove_file(e.path()).expect("remove old generated file");
        }
    }
    for i in 0..330 {
        let mut m = String::new();
        let reply = i % 5 == 4;
        let method = pick(METHODS, i, 1);
        let label = if reply {
            let (code, reason) = pick(REPLIES, i / 5, 5);
            let _ = write!(m, "SIP/2.0 {code} {reason}\r\n");
            format!("reply{code}")
        } else {
            let _ = write!(m, "{method} {} SIP/2.0\r\n", pick(RURIS, i, 3));
            method.to_ascii_lowercase()
        };
        let _ = write!(m, "{}\r\n", pick(VIAS, i, 7));
        let _ = write!(m, "{}\r\n", pick(FROMS, i, 3));
        let _ = write!(m, "{}\r\n", pick(TOS, i, 5));
        let _ = write!(
            m,
            "Call-ID: {}{i}@example.com\r\n",
            if i % 3 == 0 { "a84b4c76e66710" } else { "i-" }
        );
        let _ = write!(
            m,
            "{}: {} {method}\r\n",
            if i % 4 == 0 { "cseq" } else { "CSeq" },
            314159 + i
        );
        if i % 2 == 0 {
            let _ = write!(m, "Max-Forwards: {}\r\n", 70 - i % 71);
        }
        if i % 3 != 2 {
            let _ = write!(m, "{}\r\n", pick(CONTACTS, i, 5));
        }
        let _ = write!(m, "{}\r\n", pick(EXTRAS, i, 11));
        if i % 4 == 1 {
            let _ = write!(m, "{}\r\n", pick(EXTRAS, i, 13));
        }
        let (ctype, body) = pick(BODIES, i, 3);
        if !ctype.is_empty() {
            let _ = write!(
                m,
                "{}: {ctype}\r\n",
                if i % 2 == 0 { "c" } else { "Content-Type" }
            );
        }
        match i % 6 {
            0 => {}
            1 => {
                let _ = write!(m, "l: {}\r\n", body.len());
            }
            _ => {
                let _ = write!(m, "Content-Length: {}\r\n", body.len());
            }
        }
        m.push_str("\r\n");
        m.push_str(body);
        let mut bytes = m.into_bytes();
        if i % 10 == 3 {
            // Bare LF line ends (RFC 3261 §7 tolerance), body untouched.
            let head_end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(bytes.len(), |p| p + 4);
            let (head, body) = bytes.split_at(head_end);
            let mut v: Vec<u8> = head.iter().copied().filter(|c| *c != b'\r').collect();
            v.extend_from_slice(body);
            bytes = v;
        }
        let path = dir.join(format!("gen-{i:03}-{label}.sip"));
        std::fs::write(path, bytes).expect("write generated message");
    }
}
