//! `error_route` and `onsend_route` through the real `ser` binary over UDP:
//! a request failing the pre-script checks is answered by error_route with
//! `$err.rcode`/`$err.rreason`; `onsend_route` drops t_relay's branch to one
//! port and lets the other through.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::proc::{free_udp_port, Server};

fn recv(sock: &UdpSocket, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    sock.recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn message(to_port: u16, callid: &str, from_port: u16, body_len: usize) -> String {
    format!(
        "MESSAGE sip:bob@127.0.0.1:{to_port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bK-{callid}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: {callid}\r\n\
         CSeq: 1 MESSAGE\r\nContent-Length: {body_len}\r\n\r\nhello"
    )
}

#[test]
fn error_route_and_onsend_route_on_the_wire() {
    let port = free_udp_port();
    let (drop_port, pass_port) = (free_udp_port(), free_udp_port());
    let cfg = format!(
        r#"
debug=2
listen=udp:127.0.0.1:{port}
children=1
loadmodule "sl.so"
loadmodule "tm.so"

route {{
	if (!t_relay()) {{
		sl_send_reply("500", "not relayed");
	}}
	exit;
}}

onsend_route {{
	if ($snd(port) == {drop_port}) {{
		drop;
	}}
}}

error_route {{
	sl_send_reply("$err.rcode", "custom $err.rreason");
	exit;
}}
"#
    );
    let _ser = Server::launch_cfg("tm-wire", &cfg).start();
    let uac = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uac_port = uac.local_addr().unwrap().port();
    let dropped = UdpSocket::bind(("127.0.0.1", drop_port)).unwrap();
    let passed = UdpSocket::bind(("127.0.0.1", pass_port)).unwrap();

    // Content-Length 50 for a 5-byte body: error_route answers.
    uac.send_to(
        message(pass_port, "w-1", uac_port, 50).as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    let r = recv(&uac, Duration::from_secs(5)).expect("error_route reply");
    assert!(r.starts_with("SIP/2.0 400 custom Bad Request\r\n"), "{r}");
    assert!(
        recv(&passed, Duration::from_millis(300)).is_none(),
        "not relayed"
    );

    // onsend_route lets this one through...
    uac.send_to(
        message(pass_port, "w-2", uac_port, 5).as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    let got = recv(&passed, Duration::from_secs(5)).expect("relayed MESSAGE");
    assert!(got.starts_with("MESSAGE sip:bob@127.0.0.1:"), "{got}");
    // ...and drops that one: t_relay fails, the script answers 500
    uac.send_to(
        message(drop_port, "w-3", uac_port, 5).as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    assert!(
        recv(&dropped, Duration::from_millis(800)).is_none(),
        "dropped by onsend_route"
    );
    let r = recv(&uac, Duration::from_secs(5)).expect("500 reply");
    assert!(r.starts_with("SIP/2.0 500 not relayed\r\n"), "{r}");
}
