//! Issue #11's acceptance list: the "Functions called" checklists of
//! `../shared/configs/README.md`, one test per function (or per checklist
//! line where one line groups functions sharing one mechanism), in the
//! README's order, so a reader can tick the list off.
//!
//! Each test loads the historical config itself (the shared file, with only
//! the machine-specific strings replaced: MySQL URLs by a SQLite file in a
//! scratch directory, the ctl/FIFO paths, the rtpproxy socket) and runs SIP
//! messages through it in-process (tests/support/engine.rs), so every
//! function is called where and with the arguments the config calls it.
//! The assertions are on the function's real effect: the reply sent, the
//! bytes of the relayed message, a binding saved and found, a transaction's
//! replies, a database row, an rtpproxy command.
//!
//! * README §2 `ser-0.8.8.cfg`     → `ser088_*` (+ `ser088_modparams`)
//! * README §3 `ser-oob-3.0.cfg`   → `oob30_*`  (+ `oob30_modparams`)
//! * README §4 `kamailio-3.1.cfg`  → `kam31_*`  (+ `kam31_modparams`);
//!   the functions under a `#!ifdef` run with the config's own defines
//!   (`WITH_AUTH`, `WITH_IPAUTH`, `WITH_NAT`, `WITH_PRESENCE`, `WITH_PSTN`,
//!   `WITH_ACCDB`, DBURL given as a define, as `-A` would).
//!
//! "Commented only" functions have no test.  Users are distinct per test:
//! usrloc tables are shared by every script in the process.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ser::route::{Env, MsgCtx, Proto, Recorder, Script};
use ser_modules::db::{self, DbValue};
use ser_parser::ParseOptions;
use ser_sip::SipMsg;
use support::engine::{self, header, headers, shared_config, uas_reply, PROXY};
use support::tmp::TmpDir;

/// The caller's address (and the source of every request unless named).
const UAC: &str = "127.0.0.1:5070";
/// A callee / next hop.
const UAS: &str = "127.0.0.1:5090";
/// A caller that is not in kamailio's `address` table and is behind NAT.
const NATED: &str = "192.0.2.10:5070";

// ---------------------------------------------------------------- harness

/// A loaded config with a recording transport.
struct Proxy {
    script: Arc<Script>,
    rec: Arc<Recorder>,
    env: Env,
    _dir: Option<TmpDir>,
    fake: Option<FakeRtpproxy>,
}

type Sent = Vec<(SocketAddr, SipMsg)>;

impl Proxy {
    fn new(
        name: &str,
        text: &str,
        defines: &[(&str, Option<String>)],
        dir: Option<TmpDir>,
    ) -> Proxy {
        let opts = ParseOptions {
            defines: defines
                .iter()
                .map(|(d, v)| (d.to_string(), v.clone()))
                .collect(),
            ..ParseOptions::default()
        };
        let script = engine::load_with(name, text, &opts);
        let rec = Arc::new(Recorder::default());
        let mut env = engine::env(&rec, &["example.com"]);
        env.cfg = script.cfg();
        Proxy {
            script,
            rec,
            env,
            _dir: dir,
            fake: None,
        }
    }

    /// Runs `text` received from `from`; everything sent.
    fn send(&self, text: &str, from: &str) -> Sent {
        engine::run(&self.script, &self.env, text, from);
        engine::sent(&self.rec)
    }

    /// Runs the timers `ms` from now; everything sent.
    fn tick(&self, ms: u64) -> Sent {
        self.script
            .modules()
            .tick_all(&self.env, Instant::now() + Duration::from_millis(ms));
        engine::sent(&self.rec)
    }

    fn rtpproxy(&self) -> Vec<String> {
        self.fake.as_ref().expect("fake rtpproxy").commands()
    }
}

/// A request from alice@example.com at [`UAC`]; `extra` goes before
/// Content-Length (and may carry a body after it: see [`with_sdp`]).
fn req(method: &str, ruri: &str, callid: &str, extra: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{callid}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\nTo: <{ruri}>\r\nCall-ID: {callid}\r\nCSeq: 1 {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// `req` with another From.
fn req_from(from: &str, method: &str, ruri: &str, callid: &str, extra: &str) -> String {
    req(method, ruri, callid, extra).replace("<sip:alice@example.com>", &format!("<{from}>"))
}

/// The same request arriving in a dialog (To-tag `b1`).
fn in_dialog(text: &str) -> String {
    let i = text.find("\r\nTo: ").unwrap() + 2;
    let end = i + text[i..].find("\r\n").unwrap();
    format!("{};tag=b1{}", &text[..end], &text[end..])
}

/// Replaces the (empty) body with an SDP offer from `ip`.
fn with_sdp(text: &str, ip: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
    );
    text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
}

fn register(user: &str, domain: &str, callid: &str, contact: &str, extra: &str) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{callid}\r\nMax-Forwards: 70\r\n\
         From: <sip:{user}@{domain}>;tag=r1\r\nTo: <sip:{user}@{domain}>\r\nCall-ID: {callid}\r\n\
         CSeq: 1 REGISTER\r\nContact: <{contact}>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// (status, reason) of every reply in `s`.
fn replies(s: &Sent) -> Vec<(u16, String)> {
    s.iter()
        .filter(|(_, m)| !m.is_request())
        .map(|(_, m)| {
            (
                m.status().unwrap(),
                String::from_utf8_lossy(m.reason().unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

fn codes(s: &Sent) -> Vec<u16> {
    replies(s).into_iter().map(|(c, _)| c).collect()
}

/// The one reply with `code`.
fn reply(s: &Sent, code: u16) -> SipMsg {
    s.iter()
        .find(|(_, m)| m.status() == Some(code))
        .unwrap_or_else(|| panic!("no {code} in {:?}", lines(s)))
        .1
        .clone()
}

/// The requests in `s` with their destinations.
fn requests(s: &Sent) -> Vec<(SocketAddr, SipMsg)> {
    s.iter().filter(|(_, m)| m.is_request()).cloned().collect()
}

/// The one request sent (the relayed one).
fn relayed(s: &Sent) -> (SocketAddr, SipMsg) {
    let r = requests(s);
    assert_eq!(r.len(), 1, "one request relayed: {:?}", lines(s));
    r[0].clone()
}

fn lines(s: &Sent) -> Vec<String> {
    s.iter()
        .map(|(a, m)| format!("{a} {}", String::from_utf8_lossy(m.s(m.first_line_span()))))
        .collect()
}

fn ruri(m: &SipMsg) -> String {
    String::from_utf8_lossy(m.ruri().unwrap()).into_owned()
}

fn body(m: &SipMsg) -> String {
    String::from_utf8_lossy(m.body()).into_owned()
}

fn md5(s: &str) -> String {
    ser_modules::auth::digest::Alg::Md5.h(&[s.as_bytes()])
}

fn digest_param(h: &str, name: &str) -> String {
    let i = h
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {h}"));
    let v = h[i + name.len() + 1..].split(',').next().unwrap().trim();
    v.trim_matches('"').to_owned()
}

/// The `hdr` credentials header answering `challenge` (a WWW-/Proxy-
/// Authenticate value) for `method uri`, computed here independently.
fn credentials(
    hdr: &str,
    challenge: &str,
    method: &str,
    uri: &str,
    user: &str,
    pw: &str,
) -> String {
    let realm = digest_param(challenge, "realm");
    let nonce = digest_param(challenge, "nonce");
    let ha1 = md5(&format!("{user}:{realm}:{pw}"));
    let ha2 = md5(&format!("{method}:{uri}"));
    if challenge.contains("qop=") {
        let resp = md5(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
        format!(
            "{hdr}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"\r\n"
        )
    } else {
        let resp = md5(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "{hdr}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5\r\n"
        )
    }
}

/// Every modparam of `params` (module, name, value as written) accepted by
/// the loader in one config loading `modules`.
fn assert_modparams(modules: &[&str], params: &[(&str, &str, &str)], extra: &str) {
    let mut cfg = format!("{extra}\n");
    for m in modules {
        cfg += &format!("loadmodule \"{m}\"\n");
    }
    for (m, p, v) in params {
        cfg += &format!("modparam(\"{m}\", \"{p}\", {v})\n");
    }
    cfg += "route { drop; }\n";
    if let Err(e) = engine::try_load(&cfg) {
        panic!("modparams rejected:\n{e}\n{cfg}");
    }
    // and each one alone, so a rejected one is named
    for (m, p, v) in params {
        let mods: String = m
            .split('|')
            .map(|m| format!("loadmodule \"{m}\"\n"))
            .collect();
        let one = format!("{extra}\n{mods}modparam(\"{m}\", \"{p}\", {v})\nroute {{ drop; }}\n");
        assert!(engine::try_load(&one).is_ok(), "{m}:{p} = {v}");
    }
}

/// A fake rtpproxy on a free loopback port: `V`/`VF` answered, port
/// 40000 + 2n at 192.0.2.7 for the n-th `U`/`L`, `0` to `D`; the commands
/// are kept.
struct FakeRtpproxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeRtpproxy {
    fn start() -> FakeRtpproxy {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Bounded: the thread ends 10 s after the last command.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0;
            while let Ok((len, from)) = s.recv_from(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..len]).into_owned();
                let (cookie, cmd) = line.split_once(' ').unwrap_or((&line, ""));
                let ans = match cmd.chars().next() {
                    Some('V') if cmd.starts_with("VF") => "1".to_owned(),
                    Some('V') => "20040107".to_owned(),
                    Some('U') | Some('L') => {
                        n += 1;
                        format!("{} 192.0.2.7", 40000 + 2 * n)
                    }
                    Some('D') => "0".to_owned(),
                    _ => "E1".to_owned(),
                };
                log.lock().unwrap().push(cmd.trim().to_owned());
                let _ = s.send_to(format!("{cookie} {ans}\n").as_bytes(), from);
            }
        });
        FakeRtpproxy { port, seen }
    }

    /// The commands other than version checks.
    fn commands(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|c| !c.starts_with('V'))
            .cloned()
            .collect()
    }
}

/// Every log line of this test binary (xlog/xdbg write through `log`).
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// Starts capturing (once per binary); the lines logged so far containing
/// `text`.
fn logged(text: &str) -> Vec<String> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if log::set_logger(&CAPTURE).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
    CAPTURE
        .0
        .lock()
        .map(|v| v.iter().filter(|l| l.contains(text)).cloned().collect())
        .unwrap_or_default()
}

// ------------------------------------------------- §2 ser-0.8.8.cfg (2002)

fn ser088() -> Proxy {
    Proxy::new("ser-0.8.8.cfg", &shared_config("ser-0.8.8.cfg"), &[], None)
}

/// `sl_filter_ACK()`: an ACK to our own stateless reply ends there; any
/// other ACK goes on through the script (t_relay forwards it).
#[test]
fn ser088_sl_filter_ack() {
    let p = ser088();
    let inv = req("INVITE", "sip:nobody088@example.com", "ser088-ack", "");
    let s = p.send(&inv, UAC);
    let r = reply(&s, 404);
    let tag = r
        .to()
        .unwrap()
        .tag
        .map(|t| String::from_utf8_lossy(r.s(t)).into_owned());
    let tag = tag.expect("our To-tag");
    let ack = inv
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:nobody088@example.com>",
            &format!("To: <sip:nobody088@example.com>;tag={tag}"),
        );
    assert!(p.send(&ack, UAC).is_empty(), "ACK to our 404 absorbed");
    let other = in_dialog(&req("ACK", &format!("sip:bob@{UAS}"), "ser088-ack2", ""));
    let s = p.send(&other, UAC);
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert_eq!(m.method_bytes(), b"ACK");
}

/// `mf_process_maxfwd_header("10")`: 0 left is refused, others decremented,
/// a missing header added with 10.
#[test]
fn ser088_mf_process_maxfwd_header() {
    let p = ser088();
    let inv = req("INVITE", &format!("sip:bob@{UAS}"), "ser088-mf", "");
    let s = p.send(&inv.replace("Max-Forwards: 70", "Max-Forwards: 0"), UAC);
    assert_eq!(codes(&s), [483]);
    let s = p.send(&inv, UAC);
    assert_eq!(
        header(&relayed(&s).1, "Max-Forwards").as_deref(),
        Some("69")
    );
    let s = p.send(
        &req("INVITE", &format!("sip:bob@{UAS}"), "ser088-mf2", "")
            .replace("Max-Forwards: 70\r\n", ""),
        UAC,
    );
    assert_eq!(
        header(&relayed(&s).1, "Max-Forwards").as_deref(),
        Some("10")
    );
}

/// `sl_send_reply("483","Too Many Hops")`: the reply, back to the Via, with
/// the request's headers and our To-tag.
#[test]
fn ser088_sl_send_reply() {
    let p = ser088();
    let inv = req("INVITE", &format!("sip:bob@{UAS}"), "ser088-sl", "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let s = p.send(&inv, UAC);
    assert_eq!(replies(&s), [(483, "Too Many Hops".to_owned())]);
    assert_eq!(s[0].0.to_string(), UAC);
    let r = &s[0].1;
    assert_eq!(
        header(r, "Via").as_deref(),
        Some("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ser088-sl")
    );
    assert_eq!(header(r, "Call-ID").as_deref(), Some("ser088-sl"));
    assert!(r.to().unwrap().tag.is_some());
}

/// `len_gt(max_len)`: `max_len` is SER's buffer size, which also bounds
/// what the parser takes, so the 513 branch is never reached: the longest
/// message that parses goes on past `len_gt`, one byte more is refused
/// before the script.
#[test]
fn ser088_len_gt() {
    let p = ser088();
    let base = req("INVITE", &format!("sip:bob@{UAS}"), "ser088-len", "");
    // headers of at most 16000 bytes (the parser's header limit)
    let mut pad = String::new();
    let mut left = 65_535 - base.len();
    while left > 0 {
        let n = left.min(16_000);
        let line = format!("X-Pad: {}\r\n", "x".repeat(n.saturating_sub(9).max(1)));
        left -= line.len();
        pad += &line;
    }
    let longest = base.replace("Content-Length: 0", &format!("{pad}Content-Length: 0"));
    assert_eq!(longest.len(), 65_535);
    // (what is sent is one Via longer than a message may be: raw bytes)
    engine::run(&p.script, &p.env, &longest, UAC);
    let sent = p.rec.take();
    assert!(!sent.is_empty(), "the script went on");
    for (_, b) in &sent {
        assert!(!b.starts_with(b"SIP/2.0 513"));
    }
    let too_long = longest.replacen("X-Pad: ", "X-Pad: x", 1);
    assert!(SipMsg::parse(too_long.into_bytes()).is_err());
    let s = p.send(
        &req(
            "INVITE",
            &format!("sip:bob@{UAS}"),
            "ser088-len2",
            "X-Pad: small\r\n",
        ),
        UAC,
    );
    assert_eq!(relayed(&s).0.to_string(), UAS);
}

/// `rewriteFromRoute()`: our Route entry is consumed, the next one is the
/// destination.
#[test]
fn ser088_rewrite_from_route() {
    let p = ser088();
    let inv = req(
        "INVITE",
        "sip:bob@b.example",
        "ser088-rr",
        &format!("Route: <sip:{PROXY};lr>\r\nRoute: <sip:{UAS};lr>\r\n"),
    );
    let s = p.send(&inv, UAC);
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert_eq!(ruri(&m), "sip:bob@b.example");
    assert_eq!(headers(&m, "Route"), [format!("<sip:{UAS};lr>")]);
}

/// `save("location")`: a REGISTER to us is answered 200 with the binding.
#[test]
fn ser088_save() {
    let p = ser088();
    let s = p.send(
        &register(
            "dave088",
            "example.com",
            "ser088-save",
            "sip:dave@127.0.0.1:5091",
            "",
        ),
        UAC,
    );
    assert_eq!(codes(&s), [200], "only the 200: break after save");
    let c = headers(&reply(&s, 200), "Contact");
    assert_eq!(c.len(), 1);
    assert!(
        c[0].starts_with("<sip:dave@127.0.0.1:5091>;expires="),
        "{c:?}"
    );
}

/// `lookup("location")`: the R-URI becomes the registered contact; an
/// unknown user is 404.
#[test]
fn ser088_lookup() {
    let p = ser088();
    p.send(
        &register(
            "erin088",
            "example.com",
            "ser088-lk",
            "sip:erin@127.0.0.1:5092",
            "",
        ),
        UAC,
    );
    let s = p.send(
        &req("INVITE", "sip:erin088@example.com", "ser088-lk2", ""),
        UAC,
    );
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), "127.0.0.1:5092");
    assert_eq!(ruri(&m), "sip:erin@127.0.0.1:5092");
    let s = p.send(
        &req("INVITE", "sip:ghost088@example.com", "ser088-lk3", ""),
        UAC,
    );
    assert_eq!(replies(&s), [(404, "Not Found".to_owned())]);
}

/// `t_relay()`: a transaction: 100 upstream, the INVITE downstream under
/// our Via, the callee's replies relayed back.
#[test]
fn ser088_t_relay() {
    let p = ser088();
    let s = p.send(
        &req("INVITE", &format!("sip:bob@{UAS}"), "ser088-tr", ""),
        UAC,
    );
    assert_eq!(codes(&s), [100]);
    let (to, fwd) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    let vias = headers(&fwd, "Via");
    assert_eq!(vias.len(), 2);
    assert!(
        vias[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"),
        "{vias:?}"
    );
    let s = p.send(&String::from_utf8(uas_reply(&fwd, 180)).unwrap(), UAS);
    assert_eq!(codes(&s), [180]);
    assert_eq!(s[0].0.to_string(), UAC);
    let s = p.send(&String::from_utf8(uas_reply(&fwd, 200)).unwrap(), UAS);
    assert_eq!(codes(&s), [200]);
}

/// `sl_reply_error()`: t_relay failing (a `tel:` R-URI has no SIP
/// destination) is answered with the error's reply.
#[test]
fn ser088_sl_reply_error() {
    let p = ser088();
    let s = p.send(&req("INVITE", "tel:+4912345", "ser088-err", ""), UAC);
    assert!(requests(&s).is_empty(), "{:?}", lines(&s));
    let c = codes(&s);
    assert!(c.last().is_some_and(|c| *c >= 400), "{:?}", lines(&s));
}

/// `break`: after a reply the route ends: nothing is relayed.
#[test]
fn ser088_break() {
    let p = ser088();
    let inv = req("INVITE", &format!("sip:bob@{UAS}"), "ser088-brk", "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let s = p.send(&inv, UAC);
    assert_eq!(lines(&s).len(), 1, "{:?}", lines(&s));
    let s = p.send(
        &req("INVITE", "sip:ghost088b@example.com", "ser088-brk2", ""),
        UAC,
    );
    assert_eq!(lines(&s).len(), 1, "404 only, no t_relay: {:?}", lines(&s));
}

#[test]
fn ser088_modparams() {
    assert_modparams(&["usrloc"], &[("usrloc", "db_mode", "0")], "");
}

// ----------------------------------------- §3 ser-oob-3.0.cfg (SER 3.0)

/// SER's `uri` table (uid schema); created before etc/db/sqlite.sql, whose
/// `uri` is Kamailio's.
const SER_URI: &str =
    "CREATE TABLE uri (id INTEGER PRIMARY KEY NOT NULL, uid VARCHAR(64) NOT NULL, \
     did VARCHAR(64) NOT NULL, username VARCHAR(64) NOT NULL, flags INTEGER DEFAULT 0 NOT NULL, \
     scheme VARCHAR(8) DEFAULT 'sip' NOT NULL);";

/// ser-oob-3.0.cfg on a SQLite database of the SER schema: domain
/// example.com (did d-ex, digest_realm example.com); users alice (password
/// secret, asserted_id 4930123), mallory (credentials, no uri row), carol,
/// fwd (forwarded always), dan (forwarded when busy), slow (fr_inv 1000 ms,
/// fr 500 ms), slow1 (fr_inv 1000 ms); global gw_ip 127.0.0.1:5097.
fn oob30() -> Proxy {
    let dir = TmpDir::new("checklist-oob");
    let url = dir.sqlite_url("ser.db");
    db::with(&url, |c| {
        c.batch(SER_URI)?;
        c.batch(db::schema("sqlite").unwrap())?;
        c.batch(include_str!("../etc/db/ser-uid.sql"))?;
        c.batch(
            "INSERT INTO domain (domain, did) VALUES ('example.com', 'd-ex');\
             INSERT INTO uid_domain_attrs (did, name, type, value, flags) VALUES ('d-ex', 'digest_realm', 2, 'example.com', 1);\
             INSERT INTO uri (uid, did, username) VALUES ('u-alice', 'd-ex', 'alice'), ('u-carol', 'd-ex', 'carol'),\
               ('u-fwd', 'd-ex', 'fwd'), ('u-dan', 'd-ex', 'dan'), ('u-slow', 'd-ex', 'slow'), ('u-slow1', 'd-ex', 'slow1'),\
               ('u-tcp', 'd-ex', 'tcpfwd'), ('u-nobody', 'd-ex', 'nobody');\
             INSERT INTO uid_user_attrs (uid, name, value, type, flags) VALUES\
               ('u-alice', 'asserted_id', '4930123', 2, 1),\
               ('u-fwd', 'fwd_always_target', 'sip:elsewhere@127.0.0.1:5095', 2, 1),\
               ('u-tcp', 'fwd_always_target', 'tel:+4912345', 2, 1),\
               ('u-dan', 'fwd_busy_target', 'sip:voicemail@127.0.0.1:5096', 2, 1),\
               ('u-slow', 'fr_inv_timer', '1000', 0, 1), ('u-slow', 'fr_timer', '500', 0, 1),\
               ('u-slow1', 'fr_inv_timer', '1000', 0, 1);\
             INSERT INTO uid_global_attrs (name, type, value, flags) VALUES ('gw_ip', 2, '127.0.0.1:5097', 1);",
        )?;
        for user in ["alice", "mallory", "carol", "dan", "slow", "slow1"] {
            let uid = format!("u-{user}");
            c.insert(
                "credentials",
                &[
                    ("auth_username", DbValue::Str(user.into())),
                    ("realm", DbValue::Str("example.com".into())),
                    ("password", DbValue::Str("secret".into())),
                    ("ha1", DbValue::Str(md5(&format!("{user}:example.com:secret")))),
                    ("uid", DbValue::Str(uid)),
                ],
            )?;
        }
        Ok(())
    })
    .unwrap();
    let text = shared_config("ser-oob-3.0.cfg")
        .replace("mysql://ser:heslo@127.0.0.1/ser", &url)
        .replace(
            "unixs:/tmp/ser_ctl",
            &format!("unixs:{}", dir.path("ser_ctl").display()),
        )
        .replace(
            "fifo:/tmp/ser_fifo",
            &format!("fifo:{}", dir.path("ser_fifo").display()),
        );
    Proxy::new("ser-oob-3.0.cfg", &text, &[], Some(dir))
}

/// Registers `user`@example.com at `contact`, answering the challenge as
/// `user`/secret.
fn oob_register(p: &Proxy, user: &str, contact: &str) -> Sent {
    let callid = format!("oob-reg-{user}");
    let s = p.send(&register(user, "example.com", &callid, contact, ""), UAC);
    let ch = header(&reply(&s, 401), "WWW-Authenticate").expect("challenge");
    let cred = credentials(
        "Authorization",
        &ch,
        "REGISTER",
        "sip:example.com",
        user,
        "secret",
    );
    p.send(&register(user, "example.com", &callid, contact, &cred), UAC)
}

/// An INVITE from alice@example.com, authenticated (407 answered).
fn oob_invite_as_alice(p: &Proxy, ruri: &str, callid: &str) -> Sent {
    let s = p.send(&req("INVITE", ruri, callid, ""), UAC);
    let ch = header(&reply(&s, 407), "Proxy-Authenticate").expect("challenge");
    let cred = credentials(
        "Proxy-Authorization",
        &ch,
        "INVITE",
        ruri,
        "alice",
        "secret",
    );
    p.send(&req("INVITE", ruri, callid, &cred), UAC)
}

const FOREIGN: &str = "sip:zed@foreign.example";

#[test]
fn oob30_mf_process_maxfwd_header() {
    let p = oob30();
    let inv = req_from(FOREIGN, "INVITE", "sip:carol@example.com", "oob-mf", "");
    let s = p.send(&inv.replace("Max-Forwards: 70", "Max-Forwards: 0"), UAC);
    assert_eq!(replies(&s), [(483, "Too Many Hops".to_owned())]);
}

/// `sl_reply(code, reason)` and `sl_reply_error()`.
#[test]
fn oob30_sl_reply_and_sl_reply_error() {
    let p = oob30();
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:x@other.example", "oob-sl", ""),
        UAC,
    );
    assert_eq!(replies(&s), [(403, "Relaying Forbidden".to_owned())]);
    assert!(reply(&s, 403).to().unwrap().tag.is_some());
    // route[FORWARD]'s t_relay fails (a tel: target): sl_reply_error()
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:tcpfwd@example.com", "oob-sl2", ""),
        UAC,
    );
    assert!(requests(&s).is_empty(), "{:?}", lines(&s));
    let c = codes(&s);
    assert!(c.last().is_some_and(|c| *c >= 400), "{:?}", lines(&s));
}

/// `t_relay()` in route[FORWARD]: a registered callee's INVITE relayed
/// statefully, replies back upstream.
#[test]
fn oob30_t_relay() {
    let p = oob30();
    assert_eq!(
        codes(&oob_register(&p, "carol", "sip:carol@127.0.0.1:5093")),
        [200]
    );
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:carol@example.com", "oob-tr", ""),
        UAC,
    );
    assert_eq!(codes(&s), [100], "no 404 after: drop ends the main route");
    let (to, fwd) = relayed(&s);
    assert_eq!(to.to_string(), "127.0.0.1:5093");
    let s = p.send(
        &String::from_utf8(uas_reply(&fwd, 200)).unwrap(),
        "127.0.0.1:5093",
    );
    assert_eq!(codes(&s), [200]);
    assert_eq!(s[0].0.to_string(), UAC);
}

/// `t_relay_cancel()`: a CANCEL for a relayed INVITE is answered 200 and
/// relayed to the branch (implicit drop); one without an INVITE goes on.
#[test]
fn oob30_t_relay_cancel() {
    let p = oob30();
    oob_register(&p, "carol", "sip:carol@127.0.0.1:5093");
    let inv = req_from(FOREIGN, "INVITE", "sip:carol@example.com", "oob-cancel", "");
    let (_, fwd) = relayed(&p.send(&inv, UAC));
    p.send(
        &String::from_utf8(uas_reply(&fwd, 180)).unwrap(),
        "127.0.0.1:5093",
    );
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let s = p.send(&cancel, UAC);
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    let (to, c) = relayed(&s);
    assert_eq!(to.to_string(), "127.0.0.1:5093");
    assert_eq!(c.method_bytes(), b"CANCEL");
    assert_eq!(header(&c, "Via"), header(&fwd, "Via"));
}

/// `t_on_failure("FAILURE_ROUTE")` + `t_check_status("486|600")`: a 486
/// forwards the call to `$tu.fwd_busy_target` (attr2uri, append_branch).
#[test]
fn oob30_t_on_failure_and_t_check_status() {
    let p = oob30();
    oob_register(&p, "dan", "sip:dan@127.0.0.1:5094");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:dan@example.com", "oob-busy", ""),
        UAC,
    );
    let (_, fwd) = relayed(&s);
    let s = p.send(
        &String::from_utf8(uas_reply(&fwd, 486)).unwrap(),
        "127.0.0.1:5094",
    );
    assert!(
        !codes(&s).contains(&486),
        "486 not relayed: {:?}",
        lines(&s)
    );
    let next: Vec<_> = requests(&s)
        .into_iter()
        .filter(|(_, m)| m.method_bytes() == b"INVITE")
        .collect();
    // The R-URI (attr2uri) and its append_branch() copy: both the target.
    assert!(!next.is_empty(), "{:?}", lines(&s));
    for (to, m) in &next {
        assert_eq!(to.to_string(), "127.0.0.1:5096");
        assert_eq!(ruri(m), "sip:voicemail@127.0.0.1:5096");
    }
    // 600 too; a 404 is relayed upstream
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:dan@example.com", "oob-busy2", ""),
        UAC,
    );
    let (_, fwd) = relayed(&s);
    let s = p.send(
        &String::from_utf8(uas_reply(&fwd, 404)).unwrap(),
        "127.0.0.1:5094",
    );
    assert!(codes(&s).contains(&404), "{:?}", lines(&s));
}

/// `t_set_fr("$t.fr_inv_timer", "$t.fr_timer")`: the callee's timers
/// (500 ms to the first reply) end the unanswered INVITE with a 408.
#[test]
fn oob30_t_set_fr_two_args() {
    let p = oob30();
    oob_register(&p, "slow", "sip:slow@127.0.0.1:5098");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:slow@example.com", "oob-fr2", ""),
        UAC,
    );
    relayed(&s);
    let s = p.tick(800);
    assert!(codes(&s).contains(&408), "fr_timer 500 ms: {:?}", lines(&s));
}

/// `t_set_fr("$t.fr_inv_timer")`: after a 180 the INVITE ends 1000 ms on.
#[test]
fn oob30_t_set_fr_one_arg() {
    let p = oob30();
    oob_register(&p, "slow1", "sip:slow1@127.0.0.1:5099");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:slow1@example.com", "oob-fr1", ""),
        UAC,
    );
    let (_, fwd) = relayed(&s);
    p.send(
        &String::from_utf8(uas_reply(&fwd, 180)).unwrap(),
        "127.0.0.1:5099",
    );
    assert!(!codes(&p.tick(800)).contains(&408));
    let s = p.tick(1300);
    assert!(
        codes(&s).contains(&408),
        "fr_inv_timer 1000 ms: {:?}",
        lines(&s)
    );
}

/// `loose_route()`: an in-dialog request through our Route is forwarded to
/// the next hop, our entry consumed, "P-hint: rr-enforced" added.
#[test]
fn oob30_loose_route() {
    let p = oob30();
    let bye = in_dialog(&req_from(
        FOREIGN,
        "BYE",
        &format!("sip:bob@{UAS}"),
        "oob-lr",
        &format!("Route: <sip:{PROXY};lr>\r\n"),
    ));
    let s = p.send(&bye, UAC);
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert!(headers(&m, "Route").is_empty());
    assert_eq!(headers(&m, "P-hint"), ["rr-enforced"]);
}

/// `record_route()`: the initial INVITE carries our Record-Route, with the
/// dialog_cookie AVP `$account` (FLAG_ACC) in it.
#[test]
fn oob30_record_route() {
    let p = oob30();
    oob_register(&p, "carol", "sip:carol@127.0.0.1:5093");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:carol@example.com", "oob-rr", ""),
        UAC,
    );
    let rr = headers(&relayed(&s).1, "Record-Route");
    assert_eq!(rr.len(), 1, "{rr:?}");
    assert!(rr[0].starts_with("<sip:127.0.0.1"), "{rr:?}");
    assert!(rr[0].contains(";lr"), "{rr:?}");
}

/// `append_hf("P-hint: usrloc applied\r\n")`.
#[test]
fn oob30_append_hf() {
    let p = oob30();
    oob_register(&p, "carol", "sip:carol@127.0.0.1:5093");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:carol@example.com", "oob-hf", ""),
        UAC,
    );
    assert_eq!(headers(&relayed(&s).1, "P-hint"), ["usrloc applied"]);
}

/// `append_to_reply("%$digest_challenge")`: the challenge auth_db left in
/// the AVP is a header of the 401.
#[test]
fn oob30_append_to_reply() {
    let p = oob30();
    let s = p.send(
        &register(
            "alice",
            "example.com",
            "oob-atr",
            "sip:alice@127.0.0.1:5071",
            "",
        ),
        UAC,
    );
    assert_eq!(replies(&s), [(401, "Unauthorized".to_owned())]);
    let ch = headers(&reply(&s, 401), "WWW-Authenticate");
    assert_eq!(ch.len(), 1, "{ch:?}");
    assert!(ch[0].starts_with("Digest realm=\"example.com\""), "{ch:?}");
}

/// `lookup_domain("$fd", "@from.uri.host")` (and `$td` from the R-URI):
/// a local caller must authenticate, a foreign caller to a foreign domain is
/// refused, a foreign caller to a local user gets through.
#[test]
fn oob30_lookup_domain() {
    let p = oob30();
    let s = p.send(&req("INVITE", &format!("sip:bob@{UAS}"), "oob-ld", ""), UAC);
    assert_eq!(codes(&s), [407], "$f.did found: {:?}", lines(&s));
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:x@other.example", "oob-ld2", ""),
        UAC,
    );
    assert_eq!(codes(&s), [403]);
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:ghost@example.com", "oob-ld3", ""),
        UAC,
    );
    assert_eq!(
        replies(&s),
        [(404, "No route matched".to_owned())],
        "$t.did found"
    );
}

/// `www_authenticate("$fd.digest_realm", "credentials")`: the REGISTER is
/// challenged, the right password saves the binding, a wrong one is
/// challenged again.
#[test]
fn oob30_www_authenticate() {
    let p = oob30();
    let s = oob_register(&p, "alice", "sip:alice@127.0.0.1:5071");
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    let s = p.send(
        &register(
            "alice",
            "example.com",
            "oob-wa",
            "sip:alice@127.0.0.1:5071",
            "",
        ),
        UAC,
    );
    let ch = header(&reply(&s, 401), "WWW-Authenticate").unwrap();
    let bad = credentials(
        "Authorization",
        &ch,
        "REGISTER",
        "sip:example.com",
        "alice",
        "wrong",
    );
    let s = p.send(
        &register(
            "alice",
            "example.com",
            "oob-wa",
            "sip:alice@127.0.0.1:5071",
            &bad,
        ),
        UAC,
    );
    assert_eq!(codes(&s), [401]);
}

/// `proxy_authenticate("$fd.digest_realm", "credentials")`: 407, then
/// the authenticated INVITE to a foreign host goes out ("P-hint: outbound").
#[test]
fn oob30_proxy_authenticate() {
    let p = oob30();
    let s = oob_invite_as_alice(&p, &format!("sip:bob@{UAS}"), "oob-pa");
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert_eq!(headers(&m, "P-hint"), ["outbound"]);
}

/// `lookup_user("$tu.uid", "@to.uri")` / `("$tu.uid", "@ruri")`: a
/// REGISTER for an unknown To is 404; an INVITE to a known user reaches
/// its contacts, an unknown one falls through to "No route matched".
#[test]
fn oob30_lookup_user() {
    let p = oob30();
    let s = p.send(
        &register("alice", "example.com", "oob-lu", "sip:a@127.0.0.1:5071", ""),
        UAC,
    );
    let ch = header(&reply(&s, 401), "WWW-Authenticate").unwrap();
    let cred = credentials(
        "Authorization",
        &ch,
        "REGISTER",
        "sip:example.com",
        "alice",
        "secret",
    );
    let ghost = register(
        "alice",
        "example.com",
        "oob-lu",
        "sip:a@127.0.0.1:5071",
        &cred,
    )
    .replace("To: <sip:alice@example.com>", "To: <sip:ghost@example.com>");
    let s = p.send(&ghost, UAC);
    assert_eq!(replies(&s), [(404, "Unknown user in To".to_owned())]);
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:nobody@example.com", "oob-lu2", ""),
        UAC,
    );
    assert_eq!(
        replies(&s),
        [(480, "User temporarily not available".to_owned())],
        "a known uid (never registered)"
    );
}

/// `save_contacts("location")`: the authenticated REGISTER is answered 200
/// with the binding.
#[test]
fn oob30_save_contacts() {
    let p = oob30();
    let s = oob_register(&p, "alice", "sip:alice@127.0.0.1:5072");
    let c = headers(&reply(&s, 200), "Contact");
    assert!(
        c.iter()
            .any(|c| c.starts_with("<sip:alice@127.0.0.1:5072>")),
        "{c:?}"
    );
}

/// `lookup_contacts("location")`: the R-URI becomes the contact; no
/// contact is 480.
#[test]
fn oob30_lookup_contacts() {
    let p = oob30();
    oob_register(&p, "carol", "sip:carol@127.0.0.1:5093");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:carol@example.com", "oob-lc", ""),
        UAC,
    );
    assert_eq!(ruri(&relayed(&s).1), "sip:carol@127.0.0.1:5093");
}

/// `attr2uri("$tu.fwd_always_target")`: the R-URI is the attribute.
#[test]
fn oob30_attr2uri() {
    let p = oob30();
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:fwd@example.com", "oob-a2u", ""),
        UAC,
    );
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), "127.0.0.1:5095");
    assert_eq!(ruri(&m), "sip:elsewhere@127.0.0.1:5095");
}

/// `attr2uri("$gw_ip", "domain")`, `xlset_attr("$rpidheader", ..)` and
/// `replace_attr_hf("Remote-Party-ID", "$rpidheader")` (route[PSTN]): a
/// number in a local domain goes to the gateway with alice's asserted id.
#[test]
fn oob30_pstn_attr2uri_domain_xlset_attr_replace_attr_hf() {
    let p = oob30();
    let s = oob_invite_as_alice(&p, "sip:+4912345@example.com", "oob-pstn");
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), "127.0.0.1:5097");
    assert_eq!(ruri(&m), "sip:+4912345@127.0.0.1:5097");
    assert_eq!(
        headers(&m, "Remote-Party-ID"),
        ["<sip:4930123@example.com>;screen=yes"]
    );
}

/// `del_attr("$uid")`: credentials whose From user has no uri row lose the
/// uid, so the identity check fails ("Fake Identity").
#[test]
fn oob30_del_attr() {
    let p = oob30();
    let mallory = |cred: &str| {
        req_from(
            "sip:mallory@example.com",
            "INVITE",
            &format!("sip:bob@{UAS}"),
            "oob-del",
            cred,
        )
    };
    let s = p.send(&mallory(""), UAC);
    let ch = header(&reply(&s, 407), "Proxy-Authenticate").unwrap();
    let cred = credentials(
        "Proxy-Authorization",
        &ch,
        "INVITE",
        &format!("sip:bob@{UAS}"),
        "mallory",
        "secret",
    );
    let s = p.send(&mallory(&cred), UAC);
    assert_eq!(replies(&s), [(403, "Fake Identity".to_owned())]);
}

/// `load_attrs("$fu", "$f.uid")`: the caller's attributes (asserted_id)
/// are loaded after authentication, and `load_attrs("$tu", "$t.uid")` the
/// callee's (fwd_always_target, see `oob30_attr2uri`).
#[test]
fn oob30_load_attrs() {
    let p = oob30();
    let s = oob_invite_as_alice(&p, "sip:+4930999@example.com", "oob-la");
    let rpid = headers(&relayed(&s).1, "Remote-Party-ID");
    assert_eq!(rpid.len(), 1);
    assert!(rpid[0].contains("4930123"), "{rpid:?}");
}

/// `dispatch_rpc()` in route[RPC] (xmlrpc's `route` parameter): an HTTP
/// POST from 127.0.0.1 gets the method's answer.
#[test]
fn oob30_dispatch_rpc() {
    let p = oob30();
    let mut reg = ser_fifo::RpcRegistry::new();
    reg.register("t.echo", &["Echoes."], |c| {
        for v in c.params().to_vec() {
            c.add(v);
        }
        Ok(())
    })
    .unwrap();
    ser_modules::xmlrpc::install_registry(reg);
    let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>t.echo</methodName>\n\
                <params>\n<param><value><string>hello</string></value></param>\n</params>\n</methodCall>\n";
    let raw = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let msg = SipMsg::parse_stream(raw.into_bytes()).unwrap();
    let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut ctx = MsgCtx::new(msg, &p.env, src, PROXY.parse().unwrap(), Proto::Tcp);
    engine::dispatch(&p.script, &mut ctx);
    let sent = p.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.proto, sent[0].0.addr), (Proto::Tcp, src));
    let answer = String::from_utf8_lossy(&sent[0].1).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("<string>hello</string>"), "{answer}");
}

/// core `append_branch()` + `isflagset(FLAG_FAILUREROUTE)`: in the failure
/// route the new target is added as a branch and relayed once (see
/// `oob30_t_on_failure_and_t_check_status`); without the flag the R-URI is
/// relayed as is (one branch).
#[test]
fn oob30_core_append_branch_isflagset() {
    let p = oob30();
    oob_register(&p, "dan", "sip:dan@127.0.0.1:5094");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:dan@example.com", "oob-ab", ""),
        UAC,
    );
    let (_, fwd) = relayed(&s);
    let s = p.send(
        &String::from_utf8(uas_reply(&fwd, 600)).unwrap(),
        "127.0.0.1:5094",
    );
    let inv: Vec<_> = requests(&s)
        .into_iter()
        .filter(|(_, m)| m.method_bytes() == b"INVITE")
        .map(|(a, _)| a.to_string())
        .collect();
    // append_branch() consumed the rewritten R-URI: one branch, not two
    assert_eq!(inv, ["127.0.0.1:5096"], "{:?}", lines(&s));
}

/// core `setflag(FLAG_ACC)` + `setavpflag($account, "dialog_cookie")`: the
/// initial INVITE's Record-Route carries the `$account` cookie, and the
/// in-dialog request through it restores FLAG_ACC (route[RR]).
#[test]
fn oob30_core_setflag_setavpflag() {
    let p = oob30();
    oob_register(&p, "carol", "sip:carol@127.0.0.1:5093");
    let s = p.send(
        &req_from(FOREIGN, "INVITE", "sip:carol@example.com", "oob-flag", ""),
        UAC,
    );
    let rr = headers(&relayed(&s).1, "Record-Route");
    assert!(rr[0].contains(";avp="), "{rr:?}");
    let s = p.send(
        &req_from(FOREIGN, "MESSAGE", "sip:carol@example.com", "oob-flag2", ""),
        UAC,
    );
    let rr = headers(&relayed(&s).1, "Record-Route");
    assert!(!rr[0].contains(";avp="), "no FLAG_ACC, no cookie: {rr:?}");
}

/// core `strempty(..)`: with neither `$t.did` nor `$f.did` the request is
/// refused (route[DOMAIN]).
#[test]
fn oob30_core_strempty() {
    let p = oob30();
    let s = p.send(
        &req_from(FOREIGN, "MESSAGE", "sip:x@other.example", "oob-se", ""),
        UAC,
    );
    assert_eq!(replies(&s), [(403, "Relaying Forbidden".to_owned())]);
}

/// core `route(NAME)`: every named route runs and returns, the main
/// route's last line answers.
#[test]
fn oob30_core_route() {
    let p = oob30();
    let s = p.send(
        &req_from(FOREIGN, "MESSAGE", "sip:ghost@example.com", "oob-route", ""),
        UAC,
    );
    assert_eq!(replies(&s), [(404, "No route matched".to_owned())]);
}

/// core `drop`: after sl_reply in route[INIT] nothing else runs.
#[test]
fn oob30_core_drop() {
    let p = oob30();
    let inv = req_from(FOREIGN, "INVITE", "sip:ghost@example.com", "oob-drop", "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let s = p.send(&inv, UAC);
    assert_eq!(lines(&s).len(), 1, "{:?}", lines(&s));
}

/// core `break`: route[AUTHENTICATION] is left for a CANCEL (no 407 to a
/// local caller); the CANCEL without an INVITE goes on outbound.
#[test]
fn oob30_core_break() {
    let p = oob30();
    let s = p.send(
        &req("CANCEL", &format!("sip:bob@{UAS}"), "oob-brk", ""),
        UAC,
    );
    assert!(!codes(&s).contains(&407), "{:?}", lines(&s));
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert_eq!(m.method_bytes(), b"CANCEL");
}

#[test]
fn oob30_modparams() {
    assert_modparams(
        &[
            "acc_db", "auth", "auth_db", "avp_db", "domain", "gflags", "usrloc", "uri_db", "rr",
            "ctl", "xmlrpc", "sl",
        ],
        &[
            (
                "acc_db|auth_db|avp_db|domain|gflags|usrloc|uri_db",
                "db_url",
                "\"mysql://ser:heslo@127.0.0.1/ser\"",
            ),
            ("usrloc", "db_mode", "1"),
            ("auth_db", "calculate_ha1", "yes"),
            ("auth_db", "plain_password_column", "\"password\""),
            ("rr", "enable_full_lr", "1"),
            ("rr", "cookie_filter", "\"(account)\""),
            ("rr", "cookie_secret", "\"MyRRAVPcookiesecret\""),
            ("gflags", "load_global_attrs", "1"),
            ("domain", "load_domain_attrs", "1"),
            ("ctl", "binrpc", "\"unixs:/tmp/ser_ctl\""),
            ("ctl", "fifo", "\"fifo:/tmp/ser_fifo\""),
            ("acc_db", "failed_transactions", "1"),
            ("acc_db", "log_flag", "\"FLAG_ACC\""),
            ("xmlrpc", "route", "\"RPC\""),
        ],
        "flags FLAG_ACC : 1;\nroute[RPC] { drop; }",
    );
}

// ------------------------------------------ §4 kamailio-3.1.cfg (2010)

/// A source in the `address` table (group 1) that is not behind NAT.
const TRUSTED: &str = UAC;
/// A source that is neither trusted nor behind NAT.
const OTHER: &str = "127.0.0.2:5070";

/// kamailio-3.1.cfg with `defines`; with any define a SQLite database
/// (subscriber alice/secret at example.com; `address` group 1: 127.0.0.1
/// and the NATed 192.0.2.10) is DBURL, and WITH_NAT gets a fake rtpproxy.
/// `gw_ip` is the value of the config's `pstn.gw_ip`.
fn kam31_with(defines: &[&str], gw_ip: &str) -> Proxy {
    let mut text = shared_config("kamailio-3.1.cfg")
        .replace("pstn.gw_ip = \"\"", &format!("pstn.gw_ip = \"{gw_ip}\""));
    let fake = defines.contains(&"WITH_NAT").then(FakeRtpproxy::start);
    if let Some(f) = &fake {
        text = text.replace("udp:127.0.0.1:7722", &format!("udp:127.0.0.1:{}", f.port));
    }
    let mut defs: Vec<(&str, Option<String>)> = defines.iter().map(|d| (*d, None)).collect();
    let mut dir = None;
    if !defines.is_empty() {
        let d = TmpDir::new("checklist-kam");
        let url = d.sqlite_url("kamailio.db");
        db::with(&url, |c| {
            c.batch(db::schema("sqlite").unwrap())?;
            c.batch(include_str!("../etc/db/permissions.sql"))?;
            c.batch(include_str!("../etc/db/presence.sql"))?;
            c.batch(include_str!("../etc/db/acc.sql"))?;
            c.batch(
                "INSERT INTO subscriber (username, domain, password) VALUES ('alice', 'example.com', 'secret'),\
                   ('natty', 'example.com', 'secret'), ('nat6', 'example.com', 'secret');\
                 INSERT INTO address (grp, ip_addr, mask, port) VALUES (1, '127.0.0.1', 32, 0), (1, '192.0.2.10', 32, 0);",
            )
        })
        .unwrap();
        defs.push(("DBURL", Some(format!("\"{url}\""))));
        dir = Some(d);
    }
    let mut p = Proxy::new("kamailio-3.1.cfg", &text, &defs, dir);
    p.fake = fake;
    p
}

fn kam31() -> Proxy {
    kam31_with(&[], "")
}

/// Every feature the checklist's functions need.
fn kam31_full() -> Proxy {
    kam31_with(
        &["WITH_AUTH", "WITH_IPAUTH", "WITH_NAT", "WITH_PRESENCE"],
        "",
    )
}

/// `text` sent from `src` (its Via says so).
fn via_from(text: &str, src: &str) -> String {
    text.replacen(
        &format!("SIP/2.0/UDP {UAC}"),
        &format!("SIP/2.0/UDP {src}"),
        1,
    )
}

/// A request from behind NAT: Via and Contact at 10.0.0.5:5060, received
/// from [`NATED`].
fn natted(text: &str) -> String {
    via_from(text, "10.0.0.5:5060").replace(
        "Content-Length:",
        "Contact: <sip:alice@10.0.0.5:5060>\r\nContent-Length:",
    )
}

/// Registers `user`@example.com at `contact` from `src`, answering the
/// digest challenge with the password `secret`.
fn kam_register(p: &Proxy, user: &str, contact: &str, src: &str) -> Sent {
    let callid = format!("kam-reg-{user}");
    let text = |cred: &str| via_from(&register(user, "example.com", &callid, contact, cred), src);
    let s = p.send(&text(""), src);
    let ch = header(&reply(&s, 401), "WWW-Authenticate").expect("challenge");
    let cred = credentials(
        "Authorization",
        &ch,
        "REGISTER",
        "sip:example.com",
        user,
        "secret",
    );
    p.send(&text(&cred), src)
}

#[test]
fn kam31_mf_process_maxfwd_header() {
    let p = kam31();
    let inv = req("INVITE", &format!("sip:bob@{UAS}"), "kam-mf", "");
    let s = p.send(&inv.replace("Max-Forwards: 70", "Max-Forwards: 0"), UAC);
    assert_eq!(replies(&s), [(483, "Too Many Hops".to_owned())]);
    let s = p.send(&inv, UAC);
    assert_eq!(
        header(&relayed(&s).1, "Max-Forwards").as_deref(),
        Some("69")
    );
}

/// `sanity_check("1511", "7")`: a CSeq method that is not the request's
/// (check 32) is answered 400 by sanity and the script stops (autodrop).
#[test]
fn kam31_sanity_check() {
    let p = kam31();
    let bad = req("INVITE", &format!("sip:bob@{UAS}"), "kam-san", "")
        .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    assert_eq!(replies(&p.send(&bad, UAC)), [(400, "Bad CSeq".to_owned())]);
    let good = req("INVITE", &format!("sip:bob@{UAS}"), "kam-san2", "");
    assert_eq!(relayed(&p.send(&good, UAC)).0.to_string(), UAS);
}

/// `xlog(..)` / `xdbg("incoming reply\n")`: the lines are logged (error /
/// debug level) with the pseudo-variables expanded, and the script goes on.
/// route[REQINIT]'s `xlog("Malformed SIP message from $si:$sp\n")` is
/// only reached with sanity's `autodrop` off (Kamailio's sanity stops the
/// script on a failed check, as 3.1's returned 0), so it is switched off
/// for that part.
#[test]
fn kam31_xlog_xdbg() {
    logged("");
    let text = shared_config("kamailio-3.1.cfg").replace(
        "loadmodule \"sanity.so\"",
        "loadmodule \"sanity.so\"\nmodparam(\"sanity\", \"autodrop\", 0)",
    );
    let p = Proxy::new("kamailio-3.1.cfg", &text, &[], None);
    let bad = req("INVITE", &format!("sip:bob@{UAS}"), "kam-xlog", "")
        .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    assert!(
        requests(&p.send(&bad, "127.0.0.3:5071")).is_empty(),
        "exit after xlog"
    );
    assert_eq!(
        logged("Malformed SIP message from 127.0.0.3:5071"),
        ["ERROR Malformed SIP message from 127.0.0.3:5071"]
    );
    // route[PSTN]'s xlog (WITH_PSTN, no gateway), in the config as it is
    let p = kam31_with(&["WITH_PSTN"], "");
    p.send(
        &req("INVITE", "sip:+4911111111@example.com", "kam-xlog2", ""),
        UAC,
    );
    assert!(!logged("SCRIPT: PSTN rotuing enabled but pstn.gw_ip not defined").is_empty());
    let before = logged("incoming reply").len();
    let s = p.send(
        &req("INVITE", &format!("sip:bob@{UAS}"), "kam-xdbg", ""),
        UAC,
    );
    let (_, fwd) = relayed(&s);
    let s = p.send(&String::from_utf8(uas_reply(&fwd, 180)).unwrap(), UAS);
    assert_eq!(codes(&s), [180], "onreply_route[REPLY_ONE] went on");
    let after = logged("incoming reply");
    assert!(after.len() > before, "{after:?}");
    assert!(
        after.iter().all(|l| l == "DEBUG incoming reply"),
        "{after:?}"
    );
}

/// `is_method("INVITE|SUBSCRIBE")`: record-routed INVITE, not MESSAGE.
#[test]
fn kam31_is_method() {
    let p = kam31();
    let s = p.send(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-im", ""), UAC);
    assert_eq!(headers(&relayed(&s).1, "Record-Route").len(), 1);
    let s = p.send(
        &req("MESSAGE", &format!("sip:bob@{UAS}"), "kam-im2", ""),
        UAC,
    );
    assert!(headers(&relayed(&s).1, "Record-Route").is_empty());
}

/// `remove_hf("Route")`: an initial request's preloaded Route is dropped.
#[test]
fn kam31_remove_hf() {
    let p = kam31();
    let s = p.send(
        &req(
            "INVITE",
            &format!("sip:bob@{UAS}"),
            "kam-rh",
            "Route: <sip:127.0.0.1:5099;lr>\r\n",
        ),
        UAC,
    );
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert!(headers(&m, "Route").is_empty());
}

/// `append_hf("P-hint: outbound\r\n")`: to a host that is not ours.
#[test]
fn kam31_append_hf() {
    let p = kam31();
    let s = p.send(
        &req("MESSAGE", &format!("sip:bob@{UAS}"), "kam-ah", ""),
        UAC,
    );
    assert_eq!(headers(&relayed(&s).1, "P-hint"), ["outbound"]);
}

/// `has_totag()`: an in-dialog request that is not ours to route is 404
/// "Not here"; the same without To-tag is routed.
#[test]
fn kam31_has_totag() {
    let p = kam31();
    let bye = req("BYE", &format!("sip:bob@{UAS}"), "kam-tt", "");
    let s = p.send(&in_dialog(&bye), UAC);
    assert_eq!(replies(&s), [(404, "Not here".to_owned())]);
    assert_eq!(relayed(&p.send(&bye, UAC)).0.to_string(), UAS);
}

/// `t_check_trans()`: a CANCEL for a relayed INVITE is answered and
/// relayed; one without its INVITE ends silently.
#[test]
fn kam31_t_check_trans() {
    let p = kam31();
    let inv = req("INVITE", &format!("sip:bob@{UAS}"), "kam-ct", "");
    let (_, fwd) = relayed(&p.send(&inv, UAC));
    p.send(&String::from_utf8(uas_reply(&fwd, 180)).unwrap(), UAS);
    let cancel = |t: &str| {
        t.replacen("INVITE sip", "CANCEL sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
    };
    let s = p.send(&cancel(&inv), UAC);
    assert_eq!(codes(&s), [200]);
    let (to, c) = relayed(&s);
    assert_eq!(
        (to.to_string(), c.method_bytes()),
        (UAS.to_owned(), &b"CANCEL"[..])
    );
    let orphan = cancel(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-ct2", ""));
    assert!(p.send(&orphan, UAC).is_empty());
}

/// `t_relay()`: 100 upstream, the INVITE downstream, the 200 back.
#[test]
fn kam31_t_relay() {
    let p = kam31();
    let s = p.send(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-tr", ""), UAC);
    assert_eq!(codes(&s), [100]);
    let (to, fwd) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert_eq!(headers(&fwd, "Via").len(), 2);
    let s = p.send(&String::from_utf8(uas_reply(&fwd, 200)).unwrap(), UAS);
    assert_eq!(codes(&s), [200]);
    assert_eq!(s[0].0.to_string(), UAC);
}

/// `t_newtran()` + `t_reply("404", "Not Found")`: a stateful 404 for an
/// unknown local user; the retransmitted INVITE gets the same reply from
/// the transaction.
#[test]
fn kam31_t_newtran_t_reply() {
    let p = kam31();
    let inv = req("INVITE", "sip:nobody31@example.com", "kam-nt", "");
    let s = p.send(&inv, UAC);
    let r = replies(&s);
    assert_eq!(r.last(), Some(&(404, "Not Found".to_owned())), "{r:?}");
    let tag = |s: &Sent| {
        reply(s, 404)
            .to()
            .unwrap()
            .tag
            .map(|t| reply(s, 404).s(t).to_vec())
    };
    let first = tag(&s);
    let again = p.send(&inv, UAC);
    assert_eq!(codes(&again).last(), Some(&404));
    assert_eq!(tag(&again), first, "the transaction's reply");
}

/// `t_release()` after handle_subscribe: the transaction waits (a
/// retransmitted SUBSCRIBE is absorbed, the 200 sent again without a new
/// NOTIFY) and is then freed (the same SUBSCRIBE is handled afresh).
#[test]
fn kam31_t_release() {
    let p = kam31_full();
    let sub = req(
        "SUBSCRIBE",
        "sip:alice@example.com",
        "kam-rel",
        "Event: presence\r\nExpires: 600\r\nContact: <sip:w@127.0.0.1:5070>\r\n",
    );
    p.send(&sub, TRUSTED);
    let s = p.send(&sub, TRUSTED);
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    assert!(requests(&s).is_empty(), "absorbed: {:?}", lines(&s));
    p.tick(6_000);
    let s = p.send(&sub, TRUSTED);
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    let notify = requests(&s);
    assert!(
        notify.iter().any(|(_, m)| m.method_bytes() == b"NOTIFY"),
        "{:?}",
        lines(&s)
    );
}

/// `t_on_reply("REPLY_ONE")`: the 200 to a NATed caller's INVITE goes
/// through onreply_route[REPLY_ONE] (force_rtp_proxy on its SDP).
#[test]
fn kam31_t_on_reply() {
    let p = kam31_full();
    let inv = with_sdp(
        &natted(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-or", "")),
        "10.0.0.5",
    );
    let (_, fwd) = relayed(&p.send(&inv, NATED));
    let ok = String::from_utf8(uas_reply(&fwd, 200)).unwrap();
    let ok = with_sdp(&ok, "127.0.0.9");
    let s = p.send(&ok, UAS);
    let r = reply(&s, 200);
    assert!(body(&r).contains("c=IN IP4 192.0.2.7\r\n"), "{}", body(&r));
    assert!(
        p.rtpproxy().iter().any(|c| c.starts_with('L')),
        "{:?}",
        p.rtpproxy()
    );
}

/// `t_on_failure("FAIL_ONE")`: a 486 to a NATed call runs
/// failure_route[FAIL_ONE] (unforce_rtp_proxy) and is relayed upstream.
#[test]
fn kam31_t_on_failure() {
    let p = kam31_full();
    let inv = with_sdp(
        &natted(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-of", "")),
        "10.0.0.5",
    );
    let (_, fwd) = relayed(&p.send(&inv, NATED));
    let s = p.send(&String::from_utf8(uas_reply(&fwd, 486)).unwrap(), UAS);
    assert!(codes(&s).contains(&486), "{:?}", lines(&s));
    assert!(
        p.rtpproxy().iter().any(|c| c.starts_with('D')),
        "{:?}",
        p.rtpproxy()
    );
}

/// `t_is_canceled()`: a canceled INVITE's 487 ends failure_route[FAIL_ONE]
/// and is relayed upstream.
#[test]
fn kam31_t_is_canceled() {
    let p = kam31();
    let inv = req("INVITE", &format!("sip:bob@{UAS}"), "kam-ic", "");
    let (_, fwd) = relayed(&p.send(&inv, UAC));
    p.send(&String::from_utf8(uas_reply(&fwd, 180)).unwrap(), UAS);
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    p.send(&cancel, UAC);
    let s = p.send(&String::from_utf8(uas_reply(&fwd, 487)).unwrap(), UAS);
    assert!(codes(&s).contains(&487), "{:?}", lines(&s));
    assert!(requests(&s).iter().all(|(_, m)| m.method_bytes() == b"ACK"));
}

/// `sl_send_reply(code, reason)` and `sl_reply_error()`.
#[test]
fn kam31_sl_send_reply_and_sl_reply_error() {
    let p = kam31();
    let s = p.send(&req("INVITE", "sip:example.com", "kam-sl", ""), UAC);
    assert_eq!(replies(&s), [(484, "Address Incomplete".to_owned())]);
    assert!(reply(&s, 484).to().unwrap().tag.is_some());
    let s = p.send(&req("INVITE", "tel:+4912345", "kam-sl2", ""), UAC);
    assert!(requests(&s).is_empty(), "{:?}", lines(&s));
    assert!(
        codes(&s).last().is_some_and(|c| *c >= 400),
        "{:?}",
        lines(&s)
    );
}

/// `record_route()`: `enable_full_lr` writes `lr=on`.
#[test]
fn kam31_record_route() {
    let p = kam31();
    let s = p.send(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-rr", ""), UAC);
    let rr = headers(&relayed(&s).1, "Record-Route");
    assert_eq!(rr.len(), 1);
    assert!(rr[0].starts_with("<sip:127.0.0.1"), "{rr:?}");
    assert!(rr[0].contains(";lr=on"), "{rr:?}");
}

/// `loose_route()`: an in-dialog BYE through our Route goes to the R-URI,
/// our entry removed.
#[test]
fn kam31_loose_route() {
    let p = kam31();
    let bye = in_dialog(&req(
        "BYE",
        &format!("sip:bob@{UAS}"),
        "kam-lr",
        "Route: <sip:127.0.0.1;lr=on>\r\n",
    ));
    let s = p.send(&bye, UAC);
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), UAS);
    assert!(headers(&m, "Route").is_empty());
}

/// `add_rr_param(";nat=yes")`: a NATed caller's INVITE is record-routed
/// with the parameter.
#[test]
fn kam31_add_rr_param() {
    let p = kam31_full();
    let inv = natted(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-arp", ""));
    let rr = headers(&relayed(&p.send(&inv, NATED)).1, "Record-Route");
    assert_eq!(rr.len(), 1);
    assert!(rr[0].contains(";nat=yes"), "{rr:?}");
}

/// `check_route_param("nat=yes")`: a BYE through a Route with the
/// parameter has its media session deleted; one without does not.
#[test]
fn kam31_check_route_param() {
    let p = kam31_full();
    let bye = |callid: &str, route: &str| {
        in_dialog(&req(
            "BYE",
            &format!("sip:bob@{UAS}"),
            callid,
            &format!("Route: {route}\r\n"),
        ))
    };
    relayed(&p.send(&bye("kam-crp", "<sip:127.0.0.1;lr=on>"), TRUSTED));
    assert!(p.rtpproxy().is_empty(), "{:?}", p.rtpproxy());
    relayed(&p.send(&bye("kam-crp2", "<sip:127.0.0.1;lr=on;nat=yes>"), TRUSTED));
    assert_eq!(p.rtpproxy().len(), 1, "{:?}", p.rtpproxy());
    assert!(
        p.rtpproxy()[0].starts_with("D kam-crp2"),
        "{:?}",
        p.rtpproxy()
    );
}

/// `save("location")`: 200 with the binding.
#[test]
fn kam31_save() {
    let p = kam31();
    let s = p.send(
        &register(
            "fred31",
            "example.com",
            "kam-save",
            "sip:fred@127.0.0.1:5093",
            "",
        ),
        UAC,
    );
    let c = headers(&reply(&s, 200), "Contact");
    assert_eq!(c.len(), 1);
    assert!(
        c[0].starts_with("<sip:fred@127.0.0.1:5093>;expires="),
        "{c:?}"
    );
}

/// `lookup("location")`: R-URI rewritten; `method_filtering` makes a method
/// the contact does not allow -2 (405, switch case -2).
#[test]
fn kam31_lookup() {
    let p = kam31();
    p.send(
        &register(
            "gina31",
            "example.com",
            "kam-lk",
            "sip:gina@127.0.0.1:5094",
            "Allow: INVITE, ACK, BYE\r\n",
        ),
        UAC,
    );
    let s = p.send(&req("INVITE", "sip:gina31@example.com", "kam-lk2", ""), UAC);
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), "127.0.0.1:5094");
    assert_eq!(ruri(&m), "sip:gina@127.0.0.1:5094");
    let s = p.send(
        &req("MESSAGE", "sip:gina31@example.com", "kam-lk3", ""),
        UAC,
    );
    assert_eq!(replies(&s), [(405, "Method Not Allowed".to_owned())]);
}

/// `www_authorize("$td", "subscriber")`: the right password registers, a
/// wrong one is challenged again.
#[test]
fn kam31_www_authorize() {
    let p = kam31_full();
    let s = kam_register(&p, "alice", "sip:alice@127.0.0.1:5071", UAC);
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    let s = p.send(
        &register(
            "alice",
            "example.com",
            "kam-wa",
            "sip:alice@127.0.0.1:5071",
            "",
        ),
        UAC,
    );
    let ch = header(&reply(&s, 401), "WWW-Authenticate").unwrap();
    let bad = credentials(
        "Authorization",
        &ch,
        "REGISTER",
        "sip:example.com",
        "alice",
        "wrong",
    );
    let s = p.send(
        &register(
            "alice",
            "example.com",
            "kam-wa",
            "sip:alice@127.0.0.1:5071",
            &bad,
        ),
        UAC,
    );
    assert_eq!(codes(&s), [401]);
}

/// An INVITE from alice at [`OTHER`], authenticated.
fn kam_invite_as_alice(p: &Proxy, callid: &str) -> Sent {
    let ruri = format!("sip:bob@{UAS}");
    let text = |cred: &str| via_from(&req("INVITE", &ruri, callid, cred), OTHER);
    let s = p.send(&text(""), OTHER);
    let ch = header(&reply(&s, 407), "Proxy-Authenticate").unwrap();
    let cred = credentials(
        "Proxy-Authorization",
        &ch,
        "INVITE",
        &ruri,
        "alice",
        "secret",
    );
    p.send(&text(&cred), OTHER)
}

/// `proxy_authorize("$fd", "subscriber")`: with credentials the INVITE
/// is relayed.
#[test]
fn kam31_proxy_authorize() {
    let p = kam31_full();
    let s = kam_invite_as_alice(&p, "kam-pa");
    assert_eq!(relayed(&s).0.to_string(), UAS, "{:?}", lines(&s));
}

/// `www_challenge("$td", "0")`: 401 with a realm of the To domain, no qop.
#[test]
fn kam31_www_challenge() {
    let p = kam31_full();
    let s = p.send(
        &register(
            "alice",
            "example.com",
            "kam-wc",
            "sip:alice@127.0.0.1:5071",
            "",
        ),
        UAC,
    );
    assert_eq!(codes(&s), [401]);
    let ch = header(&reply(&s, 401), "WWW-Authenticate").unwrap();
    assert!(ch.starts_with("Digest realm=\"example.com\""), "{ch}");
    assert!(!ch.contains("qop"), "{ch}");
}

/// `proxy_challenge("$fd", "0")`: a local caller from an untrusted address
/// gets 407 with the From domain's realm.
#[test]
fn kam31_proxy_challenge() {
    let p = kam31_full();
    let inv = via_from(
        &req("INVITE", &format!("sip:bob@{UAS}"), "kam-pc", ""),
        OTHER,
    );
    let s = p.send(&inv, OTHER);
    assert_eq!(codes(&s), [407]);
    let ch = header(&reply(&s, 407), "Proxy-Authenticate").unwrap();
    assert!(ch.starts_with("Digest realm=\"example.com\""), "{ch}");
}

/// `consume_credentials()`: the relayed INVITE has no Proxy-Authorization.
#[test]
fn kam31_consume_credentials() {
    let p = kam31_full();
    let s = kam_invite_as_alice(&p, "kam-cc");
    assert!(headers(&relayed(&s).1, "Proxy-Authorization").is_empty());
}

/// `allow_source_address()`: a local caller from the `address` table is
/// relayed without a challenge.
#[test]
fn kam31_allow_source_address() {
    let p = kam31_full();
    let s = p.send(
        &req("INVITE", &format!("sip:bob@{UAS}"), "kam-asa", ""),
        TRUSTED,
    );
    assert_eq!(codes(&s), [100], "{:?}", lines(&s));
    assert_eq!(relayed(&s).0.to_string(), UAS);
}

/// `handle_publish()` (WITH_PRESENCE): 200 with an entity tag.
#[test]
fn kam31_handle_publish() {
    let p = kam31_full();
    let pidf = "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@example.com\">\
                <tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>";
    let publish = req(
        "PUBLISH",
        "sip:alice@example.com",
        "kam-pub",
        "Event: presence\r\nExpires: 600\r\n",
    )
    .replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{pidf}",
            pidf.len()
        ),
    );
    let s = p.send(&publish, TRUSTED);
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    assert!(header(&reply(&s, 200), "SIP-ETag").is_some());
}

/// `handle_subscribe()` (WITH_PRESENCE): 200 and a NOTIFY.
#[test]
fn kam31_handle_subscribe() {
    let p = kam31_full();
    let sub = req(
        "SUBSCRIBE",
        "sip:alice@example.com",
        "kam-sub",
        "Event: presence\r\nExpires: 600\r\nContact: <sip:w@127.0.0.1:5070>\r\n",
    );
    let s = p.send(&sub, TRUSTED);
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    let n = requests(&s);
    assert_eq!(n.len(), 1, "{:?}", lines(&s));
    assert_eq!(n[0].1.method_bytes(), b"NOTIFY");
    assert_eq!(n[0].0.to_string(), UAC);
}

/// `nat_uac_test("19")`: a private Contact / Via behind another source
/// marks the call NATed (record-routed with nat=yes), a plain one not.
#[test]
fn kam31_nat_uac_test() {
    let p = kam31_full();
    let s = p.send(
        &natted(&req("MESSAGE", &format!("sip:bob@{UAS}"), "kam-nut", "")),
        NATED,
    );
    let (_, m) = relayed(&s);
    assert_eq!(
        header(&m, "Contact").as_deref(),
        Some("<sip:alice@192.0.2.10:5070>")
    );
    let s = p.send(
        &req(
            "MESSAGE",
            &format!("sip:bob@{UAS}"),
            "kam-nut2",
            "Contact: <sip:alice@127.0.0.1:5070>\r\n",
        ),
        TRUSTED,
    );
    assert_eq!(
        header(&relayed(&s).1, "Contact").as_deref(),
        Some("<sip:alice@127.0.0.1:5070>")
    );
}

/// `fix_nated_register()` + `setbflag("6")`: a NATed REGISTER stores the
/// source as the received address; calls to it go there, with the
/// contact as R-URI.
#[test]
fn kam31_fix_nated_register() {
    let p = kam31_full();
    let s = kam_register(&p, "natty", "sip:natty@10.0.0.5:5060", NATED);
    assert_eq!(codes(&s), [200], "{:?}", lines(&s));
    let s = p.send(
        &req("INVITE", "sip:natty@example.com", "kam-fnr", ""),
        TRUSTED,
    );
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), NATED);
    assert_eq!(ruri(&m), "sip:natty@10.0.0.5:5060");
}

/// `fix_nated_contact()`: the NATed INVITE's Contact is the source address.
#[test]
fn kam31_fix_nated_contact() {
    let p = kam31_full();
    let s = p.send(
        &natted(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-fnc", "")),
        NATED,
    );
    assert_eq!(
        header(&relayed(&s).1, "Contact").as_deref(),
        Some("<sip:alice@192.0.2.10:5070>")
    );
}

/// `force_rtp_proxy()`: the NATed caller's SDP is rewritten to the
/// rtpproxy's address and port.
#[test]
fn kam31_force_rtp_proxy() {
    let p = kam31_full();
    let inv = with_sdp(
        &natted(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-frp", "")),
        "10.0.0.5",
    );
    let (_, m) = relayed(&p.send(&inv, NATED));
    let b = body(&m);
    assert!(b.contains("c=IN IP4 192.0.2.7\r\n"), "{b}");
    assert!(b.contains("m=audio 40002 "), "{b}");
    assert!(
        p.rtpproxy()[0].starts_with("U kam-frp"),
        "{:?}",
        p.rtpproxy()
    );
}

/// `unforce_rtp_proxy()`: a NATed BYE deletes the session.
#[test]
fn kam31_unforce_rtp_proxy() {
    let p = kam31_full();
    let bye = in_dialog(&natted(&req(
        "BYE",
        &format!("sip:bob@{UAS}"),
        "kam-urp",
        "Route: <sip:127.0.0.1;lr=on>\r\n",
    )));
    relayed(&p.send(&bye, NATED));
    assert_eq!(p.rtpproxy().len(), 1, "{:?}", p.rtpproxy());
    assert!(
        p.rtpproxy()[0].starts_with("D kam-urp"),
        "{:?}",
        p.rtpproxy()
    );
}

/// `setbflag("6")` / `isbflagset("6")` (string argument): a contact
/// registered from behind NAT keeps branch flag 6, so a call to it from a
/// plain caller is relayed through rtpproxy (route[RELAY]).
#[test]
fn kam31_setbflag_isbflagset() {
    let p = kam31_full();
    assert_eq!(
        codes(&kam_register(&p, "nat6", "sip:nat6@10.0.0.6:5060", NATED)),
        [200]
    );
    let inv = with_sdp(
        &req("INVITE", "sip:nat6@example.com", "kam-bf", ""),
        "127.0.0.1",
    );
    let (_, m) = relayed(&p.send(&inv, TRUSTED));
    assert!(body(&m).contains("c=IN IP4 192.0.2.7\r\n"), "{}", body(&m));
}

/// core `setflag(1)`: the INVITE is accounted (WITH_ACCDB: an `acc` row
/// after the 200).
#[test]
fn kam31_core_setflag() {
    let p = kam31_with(&["WITH_ACCDB"], "");
    let url = p._dir.as_ref().unwrap().sqlite_url("kamailio.db");
    let (_, fwd) = relayed(&p.send(
        &req("INVITE", &format!("sip:bob@{UAS}"), "kam-acc", ""),
        UAC,
    ));
    p.send(&String::from_utf8(uas_reply(&fwd, 200)).unwrap(), UAS);
    let rows = db::with(&url, |c| c.query("acc", &["method", "callid"], &[], None)).unwrap();
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(DbValue::as_str).collect())
        .collect();
    assert_eq!(rows, [["INVITE", "kam-acc"]]);
}

/// core `isflagset(5)`: the NAT flag set in route[NAT] sends the call
/// through route[RTPPROXY].
#[test]
fn kam31_core_isflagset() {
    let p = kam31_full();
    let plain = with_sdp(
        &req("INVITE", &format!("sip:bob@{UAS}"), "kam-if", ""),
        "127.0.0.1",
    );
    let (_, m) = relayed(&p.send(&plain, TRUSTED));
    assert!(body(&m).contains("c=IN IP4 127.0.0.1\r\n"));
    let inv = with_sdp(
        &natted(&req("INVITE", &format!("sip:bob@{UAS}"), "kam-if2", "")),
        "10.0.0.5",
    );
    let (_, m) = relayed(&p.send(&inv, NATED));
    assert!(body(&m).contains("c=IN IP4 192.0.2.7\r\n"));
}

/// core `force_rport()`: the relayed request's second Via has the
/// received address and port.
#[test]
fn kam31_core_force_rport() {
    let p = kam31_full();
    let s = p.send(
        &natted(&req("MESSAGE", &format!("sip:bob@{UAS}"), "kam-rp", "")),
        NATED,
    );
    let vias = headers(&relayed(&s).1, "Via");
    assert!(vias[1].contains("received=192.0.2.10"), "{vias:?}");
    assert!(vias[1].contains("rport=5070"), "{vias:?}");
}

/// core `strempty($sel(cfg_get.pstn.gw_ip))` (WITH_PSTN): with no gateway
/// a number is looked up like a user (404); with one the R-URI is
/// rewritten to it.
#[test]
fn kam31_core_strempty() {
    let p = kam31_with(&["WITH_PSTN"], "");
    let s = p.send(
        &req("INVITE", "sip:+4912345678@example.com", "kam-se", ""),
        UAC,
    );
    assert_eq!(codes(&s).last(), Some(&404), "{:?}", lines(&s));
    let p = kam31_with(&["WITH_PSTN"], "127.0.0.1:5097");
    let s = p.send(
        &req("INVITE", "sip:+4912345678@example.com", "kam-se2", ""),
        UAC,
    );
    let (to, m) = relayed(&s);
    assert_eq!(to.to_string(), "127.0.0.1:5097");
    assert_eq!(ruri(&m), "sip:+4912345678@127.0.0.1:5097");
}

/// core `route(NAME)`, `exit`, `return`: route[RELAY] exits, so a relayed
/// request is relayed once and nothing after `route(RELAY)` runs; routes
/// that `return` let the main route go on to the 484.
#[test]
fn kam31_core_route_exit_return() {
    let p = kam31();
    let s = p.send(
        &req("MESSAGE", &format!("sip:bob@{UAS}"), "kam-rer", ""),
        UAC,
    );
    assert_eq!(lines(&s).len(), 1, "{:?}", lines(&s));
    let s = p.send(&req("MESSAGE", "sip:example.com", "kam-rer2", ""), UAC);
    assert_eq!(replies(&s), [(484, "Address Incomplete".to_owned())]);
}

/// core `switch ($rc)` / `case`: lookup's -1 falls through `case -1:` into
/// `case -3:` (404 from t_reply); -2 is 405.
#[test]
fn kam31_core_switch_case() {
    let p = kam31();
    let s = p.send(
        &req("INVITE", "sip:nobody31b@example.com", "kam-sw", ""),
        UAC,
    );
    assert_eq!(codes(&s).last(), Some(&404));
    p.send(
        &register(
            "hal31",
            "example.com",
            "kam-sw2",
            "sip:hal@127.0.0.1:5094",
            "Allow: INVITE\r\n",
        ),
        UAC,
    );
    let s = p.send(&req("MESSAGE", "sip:hal31@example.com", "kam-sw3", ""), UAC);
    assert_eq!(codes(&s), [405]);
}

#[test]
fn kam31_modparams() {
    assert_modparams(
        &[
            "mi_fifo",
            "tm",
            "rr",
            "registrar",
            "usrloc",
            "uri_db",
            "acc",
            "auth",
            "auth_db",
            "permissions",
            "presence",
            "presence_xml",
            "rtpproxy",
            "nathelper",
            "sl",
        ],
        &[
            ("mi_fifo", "fifo_name", "\"/tmp/kamailio_fifo\""),
            ("tm", "failure_reply_mode", "3"),
            ("tm", "fr_timer", "30000"),
            ("tm", "fr_inv_timer", "120000"),
            ("rr", "enable_full_lr", "1"),
            ("rr", "append_fromtag", "0"),
            ("registrar", "method_filtering", "1"),
            ("uri_db", "use_uri_table", "0"),
            ("uri_db", "db_url", "\"\""),
            ("acc", "early_media", "1"),
            ("acc", "report_ack", "1"),
            ("acc", "report_cancels", "1"),
            ("acc", "detect_direction", "0"),
            ("acc", "failed_transaction_flag", "3"),
            ("acc", "log_flag", "1"),
            ("acc", "log_missed_flag", "2"),
            (
                "acc",
                "log_extra",
                "\"src_user=$fU;src_domain=$fd;dst_ouser=$tU;dst_user=$rU;dst_domain=$rd\"",
            ),
            ("acc", "db_flag", "1"),
            ("acc", "db_missed_flag", "2"),
            (
                "acc",
                "db_url",
                "\"mysql://openser:openserrw@localhost/openser\"",
            ),
            (
                "acc",
                "db_extra",
                "\"src_user=$fU;src_domain=$fd;dst_ouser=$tU;dst_user=$rU;dst_domain=$rd\"",
            ),
            ("usrloc", "db_mode", "2"),
            (
                "usrloc",
                "db_url",
                "\"mysql://openser:openserrw@localhost/openser\"",
            ),
            ("auth_db", "calculate_ha1", "yes"),
            ("auth_db", "password_column", "\"password\""),
            (
                "auth_db",
                "db_url",
                "\"mysql://openser:openserrw@localhost/openser\"",
            ),
            ("auth_db", "load_credentials", "\"\""),
            (
                "permissions",
                "db_url",
                "\"mysql://openser:openserrw@localhost/openser\"",
            ),
            ("permissions", "db_mode", "1"),
            (
                "presence|presence_xml",
                "db_url",
                "\"mysql://openser:openserrw@localhost/openser\"",
            ),
            ("presence_xml", "force_active", "1"),
            ("presence", "server_address", "\"sip:10.0.0.10:5060\""),
            ("rtpproxy", "rtpproxy_sock", "\"udp:127.0.0.1:7722\""),
            ("nathelper", "natping_interval", "30"),
            ("nathelper", "ping_nated_only", "1"),
            ("nathelper", "sipping_bflag", "7"),
            ("nathelper", "sipping_from", "\"sip:pinger@kamailio.org\""),
            ("registrar|nathelper", "received_avp", "\"$avp(i:80)\""),
            ("usrloc", "nat_bflag", "6"),
        ],
        "",
    );
}
