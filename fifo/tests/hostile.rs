//! Hostile input on the ctl sockets: every bad packet gets a fault or a closed connection,
//! and the server keeps answering everyone else.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use ser_fifo::binrpc::{decode_fault, encode_request, split_frame, Decoded, PacketType};
use ser_fifo::client::{Client, ClientOptions};
use ser_fifo::ctl::{CtlAddr, CtlConfig};
use ser_fifo::RpcValue;

fn cfg() -> CtlConfig {
    CtlConfig {
        idle_timeout: Duration::from_millis(600),
        request_timeout: Duration::from_millis(400),
        max_connections: 4,
        ..CtlConfig::default()
    }
}

fn connect(p: &Path) -> UnixStream {
    let s = UnixStream::connect(p).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until EOF (or error); panics if the server keeps the connection open for 5 s.
fn read_to_close(s: &mut UnixStream) -> Vec<u8> {
    let mut v = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return v,
            Ok(n) => v.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return v,
            Err(e) => panic!("connection not closed after {:?}: {e}", start.elapsed()),
        }
    }
}

/// Reads exactly one packet (never more: `NeedMore` says how many bytes are missing).
fn read_packet(s: &mut UnixStream) -> (PacketType, u32, Vec<u8>) {
    let mut v = Vec::new();
    loop {
        match split_frame(&v, 1 << 20).unwrap() {
            Decoded::Complete(f, _) => return (f.header.kind, f.header.cookie, f.body.to_vec()),
            Decoded::NeedMore(n) => {
                let mut more = vec![0u8; n];
                s.read_exact(&mut more)
                    .expect("closed before a full packet");
                v.extend_from_slice(&more);
            }
        }
    }
}

fn fault_of(pkt: &[u8]) -> (i32, String) {
    let Decoded::Complete(f, _) = split_frame(pkt, 1 << 20).unwrap() else {
        panic!("no packet: {pkt:02x?}")
    };
    assert_eq!(f.header.kind, PacketType::Fault);
    decode_fault(f.body).unwrap()
}

fn still_serving(p: &Path) {
    let mut c = Client::connect(
        &CtlAddr::UnixStream(p.to_owned()),
        &ClientOptions::default(),
    )
    .unwrap();
    let r = c
        .call("test.add", &[RpcValue::Int(20), RpcValue::Int(22)])
        .unwrap();
    assert_eq!(r.values().unwrap(), vec![RpcValue::Int(42)]);
}

#[test]
fn framing_errors_fault_then_close() {
    let dir = temp_dir("hostile-framing");
    let sock = dir.join("ctl");
    let _srv = TestServer::start(&[format!("unixs:{}", sock.display())], cfg());

    // Wrong magic (an HTTP client on the wrong port).
    let mut s = connect(&sock);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let (code, msg) = fault_of(&read_to_close(&mut s));
    assert_eq!(code, 400);
    assert!(msg.contains("bad magic"), "{msg}");
    still_serving(&sock);

    // Bad packet type.
    let mut s = connect(&sock);
    s.write_all(&[0xa1, 0x20, 0x00, 0x01]).unwrap();
    assert_eq!(fault_of(&read_to_close(&mut s)).0, 400);

    // Huge announced length: refused at once (cookie echoed), nothing buffered.
    let mut s = connect(&sock);
    s.write_all(&[0xa1, 0x0c, 0xff, 0xff, 0xff, 0xff, 0x77])
        .unwrap();
    let reply = read_to_close(&mut s);
    assert_eq!(&reply[..2], [0xa1, 0x30]);
    let (code, msg) = fault_of(&reply);
    assert_eq!(code, 400);
    assert!(msg.contains("exceeds"), "{msg}");
    assert!(reply.ends_with(b"\0"));
    still_serving(&sock);
}

#[test]
fn body_errors_fault_and_keep_the_connection() {
    let dir = temp_dir("hostile-body");
    let sock = dir.join("ctl");
    let _srv = TestServer::start(&[format!("unixs:{}", sock.display())], cfg());
    let mut s = connect(&sock);

    // Deep nesting inside a well-framed packet.
    let mut body = vec![0x91, 0x0a];
    body.extend_from_slice(b"test.echo\0");
    body.extend(std::iter::repeat_n(0x04u8, 1000));
    let mut pkt = vec![0xa1, 0x04, (body.len() >> 8) as u8, body.len() as u8, 0x05];
    pkt.extend_from_slice(&body);
    s.write_all(&pkt).unwrap();
    let (kind, cookie, body) = read_packet(&mut s);
    assert_eq!((kind, cookie), (PacketType::Fault, 5));
    let (code, msg) = decode_fault(&body).unwrap();
    assert_eq!(code, 400);
    assert!(msg.contains("nesting"), "{msg}");

    // Method name that is not a string; a record running past the body; an AVP at top level.
    for body in [
        &[0x10, 0x01][..],
        &[0x91, 0x40, b'x'],
        &[0x25, b'a', 0, 0x00],
        &[],
    ] {
        let mut pkt = vec![0xa1, 0x00, body.len() as u8, 0x09];
        pkt.extend_from_slice(body);
        s.write_all(&pkt).unwrap();
        let (kind, cookie, body) = read_packet(&mut s);
        assert_eq!((kind, cookie), (PacketType::Fault, 9));
        assert_eq!(decode_fault(&body).unwrap().0, 400);
    }

    // Wrong argument types and unknown methods: faults from the registry.
    s.write_all(&encode_request("test.add", &[RpcValue::Struct(vec![])], 11).unwrap())
        .unwrap();
    let (_, _, body) = read_packet(&mut s);
    assert_eq!(decode_fault(&body).unwrap().0, 400);
    s.write_all(&encode_request("nope", &[], 12).unwrap())
        .unwrap();
    let (_, _, body) = read_packet(&mut s);
    assert_eq!(
        decode_fault(&body).unwrap(),
        (500, "command nope not found".into())
    );

    // Same connection still works; pipelined and byte-by-byte requests too.
    let one = encode_request("test.add", &[RpcValue::Int(1), RpcValue::Int(1)], 21).unwrap();
    let two = encode_request("test.add", &[RpcValue::Int(2), RpcValue::Int(2)], 22).unwrap();
    s.write_all(&[one.clone(), two].concat()).unwrap();
    assert_eq!(read_packet(&mut s), (PacketType::Reply, 21, vec![0x10, 2]));
    assert_eq!(read_packet(&mut s), (PacketType::Reply, 22, vec![0x10, 4]));
    for b in &one {
        s.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(read_packet(&mut s), (PacketType::Reply, 21, vec![0x10, 2]));
}

#[test]
fn slow_idle_and_excess_clients_are_dropped() {
    let dir = temp_dir("hostile-slow");
    let sock = dir.join("ctl");
    let _srv = TestServer::start(&[format!("unixs:{}", sock.display())], cfg());

    // Truncated request that never completes: dropped after request_timeout.
    let mut s = connect(&sock);
    s.write_all(&[0xa1, 0x00, 0x64, 0x01, 0x91]).unwrap();
    let t = Instant::now();
    assert!(read_to_close(&mut s).is_empty());
    assert!(t.elapsed() < Duration::from_secs(3));

    // Idle connection: dropped after idle_timeout.
    let mut idle = connect(&sock);
    let t = Instant::now();
    assert!(read_to_close(&mut idle).is_empty());
    assert!(t.elapsed() >= Duration::from_millis(500) && t.elapsed() < Duration::from_secs(3));

    // Truncated then closed by the client: nothing to answer, server unaffected.
    let mut s = connect(&sock);
    s.write_all(&[0xa1, 0x00, 0x64]).unwrap();
    drop(s);

    still_serving(&sock);
}

#[test]
fn excess_clients_are_closed_at_once() {
    let dir = temp_dir("hostile-excess");
    let sock = dir.join("ctl");
    // Long timeouts here, so a close can only come from the connection limit.
    let limits = CtlConfig {
        max_connections: 4,
        ..CtlConfig::default()
    };
    let _srv = TestServer::start(&[format!("unixs:{}", sock.display())], limits);
    let hogs: Vec<UnixStream> = (0..4).map(|_| connect(&sock)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect(&sock);
    assert!(read_to_close(&mut extra).is_empty());
    drop(hogs);
    std::thread::sleep(Duration::from_millis(300));
    still_serving(&sock);
}

#[test]
fn random_garbage_never_stops_the_server() {
    let dir = temp_dir("hostile-fuzz");
    let sock = dir.join("ctl");
    let _srv = TestServer::start(&[format!("unixs:{}", sock.display())], cfg());
    // A small deterministic generator; half the inputs start with a valid header byte.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..150 {
        let len = (next() % 64) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && data.len() > 2 {
            data[0] = 0xa1;
            data[1] &= 0x0f; // request type, random LL/CL
        }
        let mut s = connect(&sock);
        let _ = s.write_all(&data);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = read_to_close(&mut s);
    }
    still_serving(&sock);
}

#[test]
fn datagram_garbage_gets_faults() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("udp:127.0.0.1:{port}");
    let _srv = TestServer::start(std::slice::from_ref(&addr), cfg());
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.connect(("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 65536];
    for bad in [&b"hello"[..], &[0xa1, 0x00, 0x64, 0x01, 0x91], &[0xa1]] {
        c.send(bad).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(fault_of(&buf[..n]).0, 400);
    }
    c.send(&encode_request("test.add", &[RpcValue::Int(3), RpcValue::Int(4)], 3).unwrap())
        .unwrap();
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], [0xa1, 0x10, 0x02, 0x03, 0x10, 0x07]);
}
