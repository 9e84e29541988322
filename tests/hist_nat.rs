//! nathelper + rtpproxy for real.
//!
//! 1. kamailio-3.1.cfg with `-A WITH_NAT`, run as the `ser` binary, relaying
//!    media through Debian's rtpengine (its rtpproxy-compatible control
//!    socket on the config's `udp:127.0.0.1:7722`): a callee behind NAT
//!    registers (private Contact, source 127.0.0.1:port), a caller behind
//!    NAT calls it through ser with sipp; the INVITE's SDP reaching the
//!    callee and the 200's SDP reaching the caller carry rtpengine's address
//!    and ports, and the BYE deletes rtpengine's session.
//! 2. NAT pinging from the timer process: contacts registered with the NAT
//!    branch flag get 4-byte keep-alives (or OPTIONS with `sipping_bflag`)
//!    every `natping_interval` at their received address; others get none.
//!
//! Skipped (with a message) when sipp or rtpengine is not installed.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::engine::{self, load, run, sent};
use support::proc::{free_port, free_udp_port, Group, Server};
use support::tmp::TmpDir;

const SIPP: &str = "/usr/bin/sipp";
const RTPENGINE: &str = "/usr/bin/rtpengine";
/// The config's `rtpproxy_sock`.
const RTPPROXY_PORT: u16 = 7722;
/// rtpengine's media ports.
const MEDIA: (u16, u16) = (34000, 34099);

fn installed(bin: &str, package: &str) -> bool {
    let ok = Path::new(bin).exists();
    if !ok {
        eprintln!("{bin} not found (apt package `{package}`): skipped");
    }
    ok
}

fn shared_config(name: &str) -> PathBuf {
    let dir = std::env::var("SER_SHARED_CONFIGS")
        .unwrap_or_else(|_| format!("{}/../shared/configs", env!("CARGO_MANIFEST_DIR")));
    PathBuf::from(dir).join(name)
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// rtpengine in the foreground, control on udp:127.0.0.1:7722, CLI on `cli`.
fn start_rtpengine(dir: &TmpDir, cli: u16) -> Group {
    let log = std::fs::File::create(dir.path("rtpengine.log")).unwrap();
    let g = Group::spawn(
        Command::new(RTPENGINE)
            .args([
                "--foreground",
                "--log-stderr",
                "--config-file=none",
                "--table=-1",
                "--interface=127.0.0.1",
                "--delete-delay=0",
                "--log-level=6",
            ])
            .arg(format!("--listen-udp=127.0.0.1:{RTPPROXY_PORT}"))
            .arg(format!("--listen-cli=127.0.0.1:{cli}"))
            .arg(format!("--port-min={}", MEDIA.0))
            .arg(format!("--port-max={}", MEDIA.1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )
    .expect("start rtpengine");
    // Up when it answers the version query.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    loop {
        let _ = s.send_to(b"probe V", ("127.0.0.1", RTPPROXY_PORT));
        if let Ok(n) = s.recv(&mut buf) {
            if buf[..n].starts_with(b"probe 20040107") {
                return g;
            }
        }
        assert!(
            Instant::now() < end,
            "rtpengine did not come up:\n{}",
            std::fs::read_to_string(dir.path("rtpengine.log")).unwrap_or_default()
        );
        sleep(Duration::from_millis(100));
    }
}

/// One rtpengine CLI command (`list numsessions`...).
fn rtpengine_cli(port: u16, cmd: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(format!("{cmd}\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `udp` to ser, one reply (or None after 2 s).
fn transact(sock: &UdpSocket, port: u16, msg: &str) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..4 {
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

fn register(from: &UdpSocket, user: &str, contact_host: &str, cseq: u32, ser: u16) -> String {
    let me = from.local_addr().unwrap();
    format!(
        "REGISTER sip:127.0.0.1:{ser} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {contact_host};branch=z9hG4bK-reg-{user}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r{cseq}\r\n\
         To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}-{}@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{contact_host}>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n",
        me.port()
    )
}

/// The SDP `c=` address and audio port of a received message whose first
/// line starts with `first`.
fn received_sdp(log: &str, first: &str) -> Option<(String, u16, bool)> {
    for m in log.split("----------------------------------------------") {
        if !m.contains("message received") {
            continue;
        }
        let Some(start) = m.find(first) else { continue };
        let msg = &m[start..];
        let c = msg
            .lines()
            .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
            .trim()
            .to_owned();
        let port = msg
            .lines()
            .find_map(|l| l.trim().strip_prefix("m=audio "))?
            .split(' ')
            .next()?
            .parse()
            .ok()?;
        return Some((c, port, msg.contains("a=nortpproxy:yes")));
    }
    None
}

fn diagnostics(dir: &TmpDir, ser: &Server) -> String {
    let mut out = format!("--- ser ---\n{}\n", ser.log_text());
    for e in std::fs::read_dir(dir.dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            out.push_str(&format!(
                "--- {name} ---\n{}\n",
                std::fs::read_to_string(e.path()).unwrap_or_default()
            ));
        }
    }
    out
}

/// rtpengine, ser running kamailio-3.1.cfg `-A WITH_NAT`, and bob
/// registered from behind NAT; None when a peer is not installed.
struct Setup {
    ser: Server,
    _rtpengine: Group,
    dir: TmpDir,
    /// ser's port.
    port: u16,
    /// Where bob registered from (his sipp listens there).
    uas_port: u16,
    /// rtpengine's CLI.
    cli: u16,
    /// Tests with rtpengine take the config's control port in turn (fields
    /// drop in order: this one after rtpengine is gone).
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// Tests with rtpengine take the config's control port in turn.
fn rtpengine_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn setup() -> Option<Setup> {
    let turn = rtpengine_turn();
    if !installed(SIPP, "sip-tester") || !installed(RTPENGINE, "rtpengine-daemon") {
        return None;
    }
    if UdpSocket::bind(("127.0.0.1", RTPPROXY_PORT)).is_err() {
        panic!("udp:127.0.0.1:{RTPPROXY_PORT} (the config's rtpproxy_sock) is taken");
    }
    let dir = TmpDir::new("hist-nat");
    let cli = free_port();
    let _rtpengine = start_rtpengine(&dir, cli);

    let cfg = shared_config("kamailio-3.1.cfg");
    let port = free_udp_port();
    let listen = format!("udp:127.0.0.1:{port}");
    let ser = Server::launch(&cfg, &dir.path("ser.log"))
        .args(["-A", "WITH_NAT", "-n", "2", "-l", &listen])
        .start();
    // -c passes too
    let out = Command::new(support::proc::SER)
        .args(["-c", "-A", "WITH_NAT", "-f"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 1. bob registers from 127.0.0.1:uas with a private Contact
    let uas_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uas_port = uas_sock.local_addr().unwrap().port();
    let reply = transact(
        &uas_sock,
        port,
        &register(&uas_sock, "bob", "10.1.2.3:5070", 1, port),
    )
    .unwrap_or_else(|| panic!("no reply to REGISTER\n{}", diagnostics(&dir, &ser)));
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    drop(uas_sock);

    Some(Setup {
        ser,
        _rtpengine,
        dir,
        port,
        uas_port,
        cli,
        _turn: turn,
    })
}

#[test]
fn kamailio_31_with_nat_relays_media_through_rtpengine() {
    let Some(s) = setup() else {
        return;
    };
    let dir = &s.dir;
    // 2. alice (behind NAT) calls bob, who answers with sipp on the port he
    //    registered from
    let (uac_text, uas_text) = call(
        &s,
        "nat_uac.xml",
        "nat_uas.xml",
        "answered",
        &["-key", "caller_host", "10.0.0.9"],
    );

    // the callee got rtpengine's address and a relay port
    let (ip, media_port, marked) = received_sdp(&uas_text, "INVITE sip:")
        .unwrap_or_else(|| panic!("no SDP in the INVITE the callee got\n{uas_text}"));
    assert_eq!(ip, "127.0.0.1", "{uas_text}");
    assert!(
        (MEDIA.0..=MEDIA.1).contains(&media_port),
        "INVITE m= port {media_port} not rtpengine's\n{uas_text}"
    );
    assert!(marked, "a=nortpproxy:yes added\n{uas_text}");
    // ... and so did the caller in the 200
    let (ip, answer_port, _) = received_sdp(&uac_text, "SIP/2.0 200")
        .unwrap_or_else(|| panic!("no SDP in the 200 the caller got\n{uac_text}"));
    assert_eq!(ip, "127.0.0.1", "{uac_text}");
    assert!(
        (MEDIA.0..=MEDIA.1).contains(&answer_port) && answer_port != media_port,
        "200 m= port {answer_port} (offer side {media_port})\n{uac_text}"
    );
    // rtpengine saw the offer and the answer of this call, and the BYE deleted it
    let callid = call_id(&uac_text);
    assert_commands(dir, &callid, &[" U ", " L ", " D "]);
    eprintln!("relayed: offer m= port {media_port}, answer m= port {answer_port}, call {callid}");

    // 3. a refused call: the failure route's unforce_rtp_proxy deletes the session
    let (uac_text, _) = call(&s, "nat_uac_busy.xml", "uas_busy.xml", "busy", &[]);
    assert!(uac_text.contains("SIP/2.0 486"), "{uac_text}");
    let busy_callid = call_id(&uac_text);
    assert_ne!(busy_callid, callid);
    assert_commands(dir, &busy_callid, &[" U ", " D "]);

    let sessions = rtpengine_cli(s.cli, "list numsessions");
    assert!(
        sessions.contains("Current sessions own: 0"),
        "sessions not deleted: {sessions}\n{}",
        std::fs::read_to_string(dir.path("rtpengine.log")).unwrap_or_default()
    );
}

/// The commonest NAT case of the 3.1 config: only the callee is behind NAT
/// (branch flag 6 from its registration, restored by lookup).  Kamailio's
/// tm runs onreply_route with the branch's flags, so `isbflagset("6")`
/// there relays the answer and fixes the callee's Contact; so does ours.
#[test]
fn kamailio_31_callee_behind_nat_gets_its_answer_relayed() {
    let Some(s) = setup() else {
        return;
    };
    let (uac_text, uas_text) = call(
        &s,
        "nat_uac.xml",
        "nat_uas.xml",
        "callee-nat",
        &["-key", "caller_host", "127.0.0.1"],
    );
    let offer = received_sdp(&uas_text, "INVITE sip:");
    assert!(
        offer
            .as_ref()
            .is_some_and(|(ip, p, _)| ip == "127.0.0.1" && (MEDIA.0..=MEDIA.1).contains(p)),
        "offer not relayed: {offer:?}\n{uas_text}"
    );
    let answer = received_sdp(&uac_text, "SIP/2.0 200");
    assert!(
        answer
            .as_ref()
            .is_some_and(|(ip, p, _)| ip == "127.0.0.1" && (MEDIA.0..=MEDIA.1).contains(p)),
        "answer not relayed: {answer:?}\n{uac_text}"
    );
}

/// One call through ser: the callee scenario on `uas_port`, the caller's
/// run to its end; both message logs.
fn call(
    setup: &Setup,
    uac_xml: &str,
    uas_xml: &str,
    tag: &str,
    extra: &[&str],
) -> (String, String) {
    let (dir, ser, port, uas_port) = (&setup.dir, &setup.ser, setup.port, setup.uas_port);
    let uas_log = dir.path(&format!("{tag}_uas_messages.log"));
    let mut uas = Group::spawn(
        Command::new(SIPP)
            .args(["-sf"])
            .arg(scenario(uas_xml))
            .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-m", "1"])
            .args(["-timeout", "20s", "-trace_msg", "-message_file"])
            .arg(&uas_log)
            .args(["-nostdin", "-trace_err", "-error_file"])
            .arg(dir.path(&format!("{tag}_uas_errors.log")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("start sipp uas");
    // it listens when the port is taken
    assert!(
        support::proc::wait_until(Duration::from_secs(5), || {
            UdpSocket::bind(("127.0.0.1", uas_port)).is_err()
        }),
        "sipp uas did not bind {uas_port}"
    );
    let uac_log = dir.path(&format!("{tag}_uac_messages.log"));
    let status = Command::new(SIPP)
        .arg(format!("127.0.0.1:{port}"))
        .args(["-sf"])
        .arg(scenario(uac_xml))
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-m", "1", "-timeout", "20s", "-trace_msg", "-message_file"])
        .arg(&uac_log)
        .args(extra)
        .args(["-nostdin", "-trace_err", "-error_file"])
        .arg(dir.path(&format!("{tag}_uac_errors.log")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run sipp uac");
    let uas_exit = uas.wait_exit(Duration::from_secs(10));
    assert!(
        status.success() && uas_exit == Some(0),
        "{tag} call: uac {status:?}, uas {uas_exit:?}\n{}",
        diagnostics(dir, ser)
    );
    (
        std::fs::read_to_string(&uac_log).unwrap_or_default(),
        std::fs::read_to_string(&uas_log).unwrap_or_default(),
    )
}

fn call_id(log: &str) -> String {
    log.lines()
        .find_map(|l| l.trim().strip_prefix("Call-ID: "))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

/// rtpengine logged each of `cmds` (` U `...) for `callid`.
fn assert_commands(dir: &TmpDir, callid: &str, cmds: &[&str]) {
    let rlog = std::fs::read_to_string(dir.path("rtpengine.log")).unwrap_or_default();
    for cmd in cmds {
        assert!(
            rlog.lines()
                .any(|l| l.contains("Got valid command") && l.contains(cmd) && l.contains(callid)),
            "rtpengine got no{cmd}command for {callid}\n{rlog}"
        );
    }
}

/// An RTP packet (version 2, PCMU) with sequence number `seq`.
fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xd5, 160));
    p
}

/// The audio port of an SDP body.
fn audio_port(m: &ser_sip::SipMsg) -> u16 {
    String::from_utf8_lossy(m.body())
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in {}", String::from_utf8_lossy(m.body())))
}

/// Media really flows through rtpengine once rtpproxy_offer/rtpproxy_answer
/// rewrote the SDP: packets from the caller's media socket to the port in
/// the relayed 200 reach the callee's media socket, and back.
#[test]
fn media_flows_through_rtpengine_after_offer_and_answer() {
    if !installed(RTPENGINE, "rtpengine-daemon") {
        return;
    }
    let _turn = rtpengine_turn();
    let dir = TmpDir::new("hist-nat-media");
    let _rtpengine = start_rtpengine(&dir, free_port());
    let script = load(&format!(
        r#"
loadmodule "sl"
loadmodule "textops"
loadmodule "rtpproxy"
modparam("rtpproxy", "rtpproxy_sock", "udp:127.0.0.1:{RTPPROXY_PORT}")
route {{
	if (is_method("INVITE")) rtpproxy_offer();
	if (is_method("BYE")) rtpproxy_destroy();
	forward();
}}
onreply_route {{
	if (status =~ "^2") rtpproxy_answer();
}}
"#
    ));
    let rec = std::sync::Arc::new(ser::route::Recorder::default());
    let env = engine::env(&rec, &[]);
    let caller_media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee_media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = (
        caller_media.local_addr().unwrap().port(),
        callee_media.local_addr().unwrap().port(),
    );
    let sdp = |ip: &str, port: u16| {
        format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
    };
    let offer = sdp("10.0.0.9", a);
    let invite = format!(
        "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-m1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@a>;tag=fa\r\nTo: <sip:bob@b>\r\nCall-ID: media-1@test\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5080>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    run(&script, &env, &invite, "127.0.0.1:5080");
    let fwd = sent(&rec);
    assert_eq!(fwd.len(), 1, "the INVITE is forwarded");
    let relayed = &fwd[0].1;
    let to_callee = audio_port(relayed);
    assert_ne!(to_callee, a);

    // the callee answers from 127.0.0.1 with its private SDP
    let answer = sdp("10.1.2.3", b);
    let vias: String = engine::headers(relayed, "Via")
        .iter()
        .map(|v| format!("Via: {v}\r\n"))
        .collect();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{vias}From: <sip:alice@a>;tag=fa\r\nTo: <sip:bob@b>;tag=tb\r\n\
         Call-ID: media-1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:5070>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    );
    run(&script, &env, &ok, "127.0.0.1:5070");
    let back = sent(&rec);
    assert_eq!(back.len(), 1, "the 200 is forwarded");
    let to_caller = audio_port(&back[0].1);
    assert!(
        String::from_utf8_lossy(back[0].1.body()).contains("c=IN IP4 127.0.0.1\r\n"),
        "{}",
        String::from_utf8_lossy(back[0].1.body())
    );

    // caller -> rtpengine -> callee, and back
    let mut buf = [0u8; 2048];
    for (from, to_port, dest, what) in [
        (&caller_media, to_caller, &callee_media, "caller to callee"),
        (&callee_media, to_callee, &caller_media, "callee to caller"),
    ] {
        dest.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = 0;
        for seq in 0..10u16 {
            from.send_to(&rtp(seq), ("127.0.0.1", to_port)).unwrap();
            if let Ok((n, src)) = dest.recv_from(&mut buf) {
                assert_eq!(n, 172, "{what}: an RTP packet");
                assert_eq!(src.ip().to_string(), "127.0.0.1");
                assert!(
                    (MEDIA.0..=MEDIA.1).contains(&src.port()),
                    "{what}: from rtpengine, not {src}"
                );
                got += 1;
            }
        }
        assert!(
            got >= 5,
            "{what}: {got} of 10 packets relayed\n{}",
            std::fs::read_to_string(dir.path("rtpengine.log")).unwrap_or_default()
        );
        eprintln!("{what}: {got} of 10 RTP packets relayed by rtpengine");
    }
}

/// ser with a small NAT config: `natping_interval` 1 s.
fn pinging_cfg(port: u16) -> String {
    format!(
        r#"
debug=2
children=1
listen=udp:127.0.0.1:{port}
loadmodule "sl"
loadmodule "tm"
loadmodule "usrloc"
loadmodule "registrar"
loadmodule "nathelper"
modparam("usrloc", "nat_bflag", 6)
modparam("nathelper", "natping_interval", 1)
modparam("nathelper", "ping_nated_only", 1)
modparam("nathelper", "sipping_bflag", 7)
modparam("nathelper", "sipping_from", "sip:pinger@127.0.0.1")
modparam("registrar|nathelper", "received_avp", "$avp(i:80)")
route {{
	if (method == "REGISTER") {{
		if (nat_uac_test("19")) {{
			fix_nated_register();
			setbflag(6);
			if ($fU == "sipping") setbflag(7);
		}}
		if (!save("location")) sl_reply_error();
		exit;
	}}
	drop;
}}
"#
    )
}

/// Datagrams `sock` receives within `limit`, with their arrival times.
fn collect(sock: &UdpSocket, limit: Duration) -> Vec<(Instant, Vec<u8>)> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((Instant::now(), buf[..n].to_vec()));
        }
    }
    out
}

#[test]
fn nated_contacts_are_pinged_every_interval() {
    let port = free_udp_port();
    let ser = Server::launch_cfg("hist-nat-ping", &pinging_cfg(port)).start();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap().to_string();
    for (sock, user, contact) in [
        (&raw, "raw", "192.168.1.20:5060"),
        (&sip, "sipping", "192.168.1.21:5060"),
        (&plain, "plain", plain_addr.as_str()),
    ] {
        let r = transact(sock, port, &register(sock, user, contact, 1, port))
            .unwrap_or_else(|| panic!("no reply to {user}'s REGISTER\n{}", ser.log_text()));
        assert!(r.starts_with("SIP/2.0 200"), "{r}");
    }

    // Three intervals; the SIP-pinged contact answers its pings.
    let answerer = std::thread::spawn(move || {
        let got = collect(&sip, Duration::from_millis(3500));
        for (_, m) in &got {
            let text = String::from_utf8_lossy(m);
            let via = text.lines().find(|l| l.starts_with("Via:")).unwrap_or("");
            let hdr = |n: &str| {
                text.lines()
                    .find(|l| l.starts_with(n))
                    .unwrap_or("")
                    .to_owned()
            };
            let reply = format!(
                "SIP/2.0 200 OK\r\n{via}\r\n{}\r\n{};tag=u\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                hdr("From:"),
                hdr("To:"),
                hdr("Call-ID:"),
                hdr("CSeq:")
            );
            let _ = sip.send_to(reply.as_bytes(), ("127.0.0.1", port));
        }
        got
    });
    let raw_got = collect(&raw, Duration::from_millis(3500));
    let plain_got = collect(&plain, Duration::from_millis(100));
    let sip_got = answerer.join().unwrap();

    assert!(
        (2..=4).contains(&raw_got.len()) && raw_got.iter().all(|(_, m)| m == &[0u8; 4]),
        "raw pings: {:?}\n{}",
        raw_got.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        ser.log_text()
    );
    // one round per interval (timer ticks are 100 ms; slack for a busy host)
    for w in raw_got.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap > Duration::from_millis(600) && gap < Duration::from_millis(2000),
            "ping gap {gap:?}"
        );
    }
    assert!(
        (2..=4).contains(&sip_got.len()),
        "SIP pings: {}",
        sip_got.len()
    );
    for (_, m) in &sip_got {
        let t = String::from_utf8_lossy(m);
        assert!(
            t.starts_with("OPTIONS sip:sipping@192.168.1.21:5060 SIP/2.0\r\n"),
            "{t}"
        );
        assert!(t.contains("\r\nFrom: sip:pinger@127.0.0.1;tag="), "{t}");
        assert!(
            t.contains(&format!("Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK")),
            "{t}"
        );
    }
    eprintln!(
        "pings in 3.5 s: {} raw, {} OPTIONS, {} to the contact without NAT flag",
        raw_got.len(),
        sip_got.len(),
        plain_got.len()
    );
    assert!(
        plain_got.is_empty(),
        "a contact without the NAT flag is not pinged"
    );
    // the answers to the SIP pings were absorbed, not relayed or complained about
    assert!(!ser.log_text().contains("ERROR"), "{}", ser.log_text());
}
