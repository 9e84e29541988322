use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::thread;

use ser_sip::SipMsg;

use super::*;
use crate::iface::{FixupCtx, ParamValue, ScriptNames};
use crate::registry::Modules;
use crate::runtime::ctx::Env;
use crate::runtime::transport::{Listen, Myself, Proto, Recorder};

struct Names;
impl ScriptNames for Names {
    fn flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn avp_flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn has_route(&self, _: RouteMask, _: &str) -> bool {
        false
    }
}

/// A fake rtpproxy on a free loopback port: answers `V`/`VF`, gives port
/// 40000 + n for the n-th `U`/`L`, `0` to `D`; keeps every command line.
struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn start() -> Fake {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        thread::spawn(move || {
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
                log.lock().unwrap().push(cmd.to_owned());
                let _ = s.send_to(format!("{cookie} {ans}\n").as_bytes(), from);
            }
        });
        Fake { port, seen }
    }

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

fn env() -> Env {
    let listen = vec![Listen {
        proto: Proto::Udp,
        addr: "127.0.0.1:5060".parse().unwrap(),
        advertise: None,
    }];
    Env::new(Arc::new(Recorder::default()), Myself::default(), listen)
}

fn modules(sock: &str) -> Modules {
    let mut m = Modules::default();
    m.load("rtpproxy").unwrap();
    m.modparam(
        "rtpproxy",
        "rtpproxy_sock",
        &ParamValue::Str(sock.to_owned()),
        &|_| None,
    )
    .unwrap();
    m.modparam("rtpproxy", "rtpproxy_retr", &ParamValue::Int(2), &|_| None)
        .unwrap();
    m
}

fn handler(m: &Modules, name: &str, args: &[Arg]) -> Result<Handler, FixupError> {
    let (l, f) = m.function(name).unwrap();
    (f.fixup)(
        &FixupCtx {
            module: &l.env,
            names: &Names,
        },
        args,
    )
}

fn ctx<'e>(env: &'e Env, msg: &str, src: &str) -> MsgCtx<'e> {
    let m = SipMsg::parse(msg.replace('\n', "\r\n").into_bytes()).unwrap();
    MsgCtx::new(
        m,
        env,
        src.parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        Proto::Udp,
    )
}

fn out(ctx: &MsgCtx<'_>) -> String {
    String::from_utf8(ser_sip::apply(&ctx.msg, &ctx.lumps).unwrap()).unwrap()
}

fn with_body(head: &str, body: &str) -> String {
    format!(
        "{head}Content-Type: application/sdp\nContent-Length: {}\n\n{body}",
        body.replace('\n', "\r\n").len()
    )
}

const SDP: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtcp:6001
";

fn invite() -> String {
    with_body(
        "INVITE sip:bob@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
From: <sip:alice@a>;tag=ft
To: <sip:bob@b>
Call-ID: c1@x
CSeq: 1 INVITE
",
        SDP,
    )
}

fn ok200() -> String {
    with_body(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
From: <sip:alice@a>;tag=ft
To: <sip:bob@b>;tag=tt
Call-ID: c1@x
CSeq: 1 INVITE
",
        &SDP.replace("10.0.0.1", "10.9.9.9")
            .replace("6000", "7000")
            .replace("6001", "7001"),
    )
}

#[test]
fn offer_answer_delete_rewrite_the_sdp() {
    let fake = Fake::start();
    let m = modules(&format!("udp:127.0.0.1:{}", fake.port));
    m.init_all().unwrap();
    let env = env();
    let force = handler(&m, "force_rtp_proxy", &[]).unwrap();

    let mut c = ctx(&env, &invite(), "127.0.0.1:5070");
    assert_eq!(force(&mut c), Flow::True);
    let o = out(&c);
    assert!(o.contains("c=IN IP4 192.0.2.7\r\n"), "{o}");
    assert!(o.contains("o=- 1 1 IN IP4 192.0.2.7\r\n"), "{o}");
    assert!(
        o.contains("m=audio 40002 RTP/AVP 0\r\na=rtcp:40003\r\n"),
        "{o}"
    );
    assert!(o.ends_with("a=nortpproxy:yes\r\n"), "{o}");
    let body = o.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        o.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{o}"
    );

    // the relayed INVITE again: marked, not relayed twice
    let mut again = ctx(&env, &o.replace("\r\n", "\n"), "127.0.0.1:5070");
    assert_eq!(force(&mut again), Flow::Code(-2));

    let mut r = ctx(&env, &ok200(), "127.0.0.1:5080");
    assert_eq!(force(&mut r), Flow::True);
    let o = out(&r);
    assert!(
        o.contains("c=IN IP4 192.0.2.7\r\n") && o.contains("m=audio 40004 "),
        "{o}"
    );

    let bye = "BYE sip:bob@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK2
From: <sip:alice@a>;tag=ft
To: <sip:bob@b>;tag=tt
Call-ID: c1@x
CSeq: 2 BYE
Content-Length: 0

";
    let unforce = handler(&m, "unforce_rtp_proxy", &[]).unwrap();
    assert_eq!(unforce(&mut ctx(&env, bye, "127.0.0.1:5070")), Flow::True);
    assert_eq!(
        fake.commands(),
        [
            "U c1@x 127.0.0.1 6000 ft;1",
            "L c1@x 127.0.0.1 7000 ft;1 tt;1",
            "D c1@x ft tt"
        ]
    );
}

#[test]
fn offer_and_answer_names_and_options() {
    let fake = Fake::start();
    let m = modules(&format!("udp:127.0.0.1:{}=2", fake.port));
    m.init_all().unwrap();
    let env = env();
    let offer = handler(
        &m,
        "rtpproxy_offer",
        &[Arg::Str("rie".into()), Arg::Str("203.0.113.5".into())],
    )
    .unwrap();
    let mut c = ctx(&env, &invite(), "127.0.0.1:5070");
    assert_eq!(offer(&mut c), Flow::True);
    let o = out(&c);
    assert!(
        o.contains("c=IN IP4 203.0.113.5\r\n"),
        "forced address: {o}"
    );
    // answer on a request other than ACK: refused
    let answer = handler(&m, "rtpproxy_answer", &[]).unwrap();
    assert_eq!(
        answer(&mut ctx(&env, &invite(), "127.0.0.1:5070")),
        Flow::False
    );
    assert_eq!(fake.commands(), ["UIE c1@x 10.0.0.1 6000 ft;1"]);
    // bad constant options fail at load
    assert!(handler(&m, "force_rtp_proxy", &[Arg::Str("q".into())]).is_err());
    assert!(handler(
        &m,
        "rtpproxy_offer",
        &[Arg::Str("".into()), Arg::Str("nope".into())]
    )
    .is_err());
    assert!(handler(&m, "set_rtp_proxy_set", &[Arg::Int(1)]).is_err());
    assert!(handler(&m, "set_rtp_proxy_set", &[Arg::Int(0)]).is_ok());
}

#[test]
fn a_dead_proxy_fails_the_call_not_the_process() {
    // a port nobody listens on
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    drop(s);
    let m = modules(&format!("udp:127.0.0.1:{port}"));
    m.init_all().unwrap();
    let env = env();
    let force = handler(&m, "force_rtp_proxy", &[]).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(
        force(&mut ctx(&env, &invite(), "127.0.0.1:5070")),
        Flow::False
    );
    // disabled now: the next call fails at once
    let t2 = std::time::Instant::now();
    assert_eq!(
        force(&mut ctx(&env, &invite(), "127.0.0.1:5070")),
        Flow::False
    );
    assert!(
        t2.elapsed() < Duration::from_millis(200),
        "{:?}",
        t2.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn sock_lists_parse_into_sets() {
    let sets = proxies::parse_sets(&[
        "udp:127.0.0.1:7722".into(),
        " 1 == udp:127.0.0.1:7723=3 unix:/run/rtpproxy.sock ".into(),
    ])
    .unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1].id, 1);
    assert_eq!(sets[1].nodes[0].weight, 3);
    assert_eq!(
        sets[1].nodes[1].addr,
        proxies::Addr::Unix("/run/rtpproxy.sock".into())
    );
    let v6 = proxies::parse_sets(&["udp:[::1]:7722 udp6:[::1]:7723".into()]).unwrap();
    assert_eq!(
        v6[0].nodes[0].addr,
        proxies::Addr::Udp("[::1]:7722".parse().unwrap())
    );
    assert_eq!(
        v6[0].nodes[1].addr,
        proxies::Addr::Udp("[::1]:7723".parse().unwrap())
    );
    for bad in [
        "x == udp:1.2.3.4:5",
        "1 ==",
        "udp:127.0.0.1:99999",
        "udp:127.0.0.1:1=w",
    ] {
        assert!(proxies::parse_sets(&[bad.into()]).is_err(), "{bad}");
    }
}

#[test]
fn options_parse() {
    let o = parse_opts("fAiE3z20w", true).unwrap();
    assert_eq!(o.proxy, "AIES");
    assert!(o.force && o.real && o.via == 2);
    assert!(parse_opts("?", false).is_err());
}

/// A fake rtpproxy on a unix stream socket (no cookie on that transport).
fn unix_fake(path: &std::path::Path) -> Arc<Mutex<Vec<String>>> {
    use std::io::{Read, Write};
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut cmd = String::new();
            let _ = s.read_to_string(&mut cmd);
            let cmd = cmd.trim().to_owned();
            let ans = match cmd.chars().next() {
                Some('V') if cmd.starts_with("VF") => "1",
                Some('V') => "20040107",
                Some('U') | Some('L') => "41000",
                _ => "0",
            };
            log.lock().unwrap().push(cmd);
            let _ = s.write_all(format!("{ans}\n").as_bytes());
        }
    });
    seen
}

#[test]
fn unix_socket_proxy_and_failover_to_a_live_node() {
    let path = std::env::temp_dir().join(format!("ser-rtpp-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let seen = unix_fake(&path);
    // a dead UDP node first, then the unix one: every call lands on the live one
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let m = modules(&format!(
        "udp:127.0.0.1:{dead_port} unix:{}",
        path.display()
    ));
    m.init_all().unwrap();
    let env = env();
    let force = handler(&m, "force_rtp_proxy", &[]).unwrap();
    for _ in 0..2 {
        let mut c = ctx(&env, &invite(), "127.0.0.1:5070");
        assert_eq!(force(&mut c), Flow::True);
        let o = out(&c);
        // no address in the answer: the proxy is on our own address
        assert!(
            o.contains("c=IN IP4 127.0.0.1\r\n") && o.contains("m=audio 41000 "),
            "{o}"
        );
    }
    let cmds: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with('U'))
        .cloned()
        .collect();
    assert_eq!(
        cmds,
        ["U c1@x 127.0.0.1 6000 ft;1", "U c1@x 127.0.0.1 6000 ft;1"]
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn rtpproxy_manage_picks_offer_answer_delete() {
    let fake = Fake::start();
    let m = modules(&format!("udp:127.0.0.1:{}", fake.port));
    m.init_all().unwrap();
    let env = env();
    let manage = handler(&m, "rtpproxy_manage", &[]).unwrap();
    assert_eq!(
        manage(&mut ctx(&env, &invite(), "127.0.0.1:5070")),
        Flow::True
    );
    assert_eq!(
        manage(&mut ctx(&env, &ok200(), "127.0.0.1:5080")),
        Flow::True
    );
    let busy = "SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1
From: <sip:alice@a>;tag=ft
To: <sip:bob@b>;tag=tt
Call-ID: c1@x
CSeq: 1 INVITE
Content-Length: 0

";
    assert_eq!(manage(&mut ctx(&env, busy, "127.0.0.1:5080")), Flow::True);
    let options = "OPTIONS sip:bob@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK3
From: <sip:alice@a>;tag=ft
To: <sip:bob@b>
Call-ID: o1@x
CSeq: 1 OPTIONS
Content-Length: 0

";
    assert_eq!(
        manage(&mut ctx(&env, options, "127.0.0.1:5070")),
        Flow::False
    );
    assert_eq!(
        fake.commands(),
        [
            "U c1@x 127.0.0.1 6000 ft;1",
            "L c1@x 127.0.0.1 7000 ft;1 tt;1",
            "D c1@x ft tt"
        ]
    );
}
