//! The FIFO server with real mkfifo'd paths: write a request, read the reply FIFO.

mod common;

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ser_fifo::ctl::CtlConfig;

/// Sends `request` to the server FIFO and returns what arrives on reply FIFO `reply`
/// (created in `dir`), or `None` if nothing arrives within `wait`.
fn fifo_call(
    server: &Path,
    dir: &Path,
    reply: &str,
    request: &str,
    wait: Duration,
) -> Option<String> {
    let rpath = dir.join(reply);
    let _ = std::fs::remove_file(&rpath);
    nix::unistd::mkfifo(&rpath, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Open our end first (non-blocking), so the server finds a reader at once.
    let mut r = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&rpath)
        .unwrap();
    let mut w = OpenOptions::new().write(true).open(server).unwrap();
    w.write_all(request.as_bytes()).unwrap();
    drop(w);
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) if !got.is_empty() => break, // the server closed its end
            Ok(0) => {}                        // no writer yet
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("read reply fifo: {e}"),
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(&rpath);
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned())
}

fn start(tag: &str) -> (TestServer, PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let server = dir.join("ser_fifo");
    let cfg = CtlConfig {
        fifo_reply_dir: dir.clone(),
        max_fifo_line: 200,
        ..CtlConfig::default()
    };
    let srv = TestServer::start(&[format!("fifo:{}", server.display())], cfg);
    (srv, server, dir)
}

const W: Duration = Duration::from_secs(5);

#[test]
fn ser_ctl_dialect() {
    let (_srv, fifo, dir) = start("fifo-ctl");
    let call = |req: &str| fifo_call(&fifo, &dir, "reply", req, W).expect("a reply");
    assert_eq!(
        call(":test.echo:reply\nhello\\tthere\n42\n\n"),
        "200 OK\nhello\\tthere\n42\n"
    );
    assert_eq!(call(":test.add:reply\n40\n2\n\n"), "200 OK\n42\n");
    assert_eq!(
        call(":test.struct:reply\n\n"),
        "200 OK\nnow:Sun Nov 29 16\\o00\\o00 2026,uptime:42,load:1.500000,\
         nested:{a\\o 1\\c b\\o x}\n"
    );
    assert_eq!(call(":test.array:reply\n\n"), "200 OK\n1\ntwo\n3\n");
    assert_eq!(call(":test.fault:reply\n\n"), "499 test fault\n");
    assert_eq!(
        call(":test.add:reply\nx\n1\n\n"),
        "400 Invalid parameter 1: expected integer, got \"x\"\n"
    );
    assert_eq!(
        call(":no.such:reply\n\n"),
        "500 command 'no.such' not found\n"
    );
    // SER 0.8.x clients name the reply FIFO by its full path (inside the reply directory).
    let full = format!(":test.add:{}\n1\n2\n\n", dir.join("reply").display());
    assert_eq!(
        fifo_call(&fifo, &dir, "reply", &full, W).unwrap(),
        "200 OK\n3\n"
    );
    // CRLF line ends are accepted.
    assert_eq!(call(":test.add:reply\r\n1\r\n2\r\n\r\n"), "200 OK\n3\n");
}

#[test]
fn mi_fifo_dialect() {
    let (_srv, fifo, dir) = start("fifo-mi");
    let call = |req: &str| fifo_call(&fifo, &dir, "kamailio_receiver", req, W).expect("a reply");
    let which = call(":which:kamailio_receiver\n\n");
    assert!(
        which.starts_with("200 OK\nsystem.listMethods\nsystem.methodHelp\n"),
        "{which}"
    );
    assert!(which.ends_with("test.panic\n\n"), "{which}");
    assert_eq!(
        call(":help:kamailio_receiver\nmethod:: test.add\n\n"),
        "200 OK\nAdds two integers.\n\n"
    );
    assert_eq!(
        call(":nosuch:kamailio_receiver\n\n"),
        "500 command 'nosuch' not found\n\n"
    );
}

#[test]
fn bad_requests_get_errors_never_hangs() {
    let (_srv, fifo, dir) = start("fifo-bad");
    // A line over max_fifo_line: 400.
    let long = format!(":test.echo:reply\n{}\n\n", "y".repeat(300));
    assert_eq!(
        fifo_call(&fifo, &dir, "reply", &long, W).unwrap(),
        "400 line too long\n"
    );
    // No ':' framing: nothing to answer (no reply fifo known) — and nothing breaks.
    assert_eq!(
        fifo_call(
            &fifo,
            &dir,
            "reply",
            "garbage\n\n",
            Duration::from_millis(300)
        ),
        None
    );
    // A reply fifo with a path in it is refused.
    assert_eq!(
        fifo_call(
            &fifo,
            &dir,
            "reply",
            ":test.add:../reply\n1\n2\n\n",
            Duration::from_millis(300)
        ),
        None
    );
    // An absolute reply path outside the reply directory is refused.
    let outside = ":test.add:/var/tmp/reply\n1\n2\n\n";
    assert_eq!(
        fifo_call(&fifo, &dir, "reply", outside, Duration::from_millis(300)),
        None
    );
    // A reply fifo nobody created: the server gives up quickly and keeps serving.
    let mut w = OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(b":test.add:nobody_listens\n1\n2\n\n").unwrap();
    drop(w);
    // A reply fifo that exists but is never opened by the client: bounded wait.
    let ghost = dir.join("ghost");
    nix::unistd::mkfifo(&ghost, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut w = OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(b":test.add:ghost\n1\n2\n\n").unwrap();
    drop(w);
    let t = Instant::now();
    assert_eq!(
        fifo_call(&fifo, &dir, "reply", ":test.add:reply\n1\n2\n\n", W).unwrap(),
        "200 OK\n3\n"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn serve_fifo_entry_point() {
    let dir = temp_dir("fifo-entry");
    let path = dir.join("ser_fifo");
    let stop = Arc::new(AtomicBool::new(false));
    let (s, p) = (stop.clone(), path.clone());
    let t = std::thread::spawn(move || {
        let reg = test_registry();
        ser_fifo::serve_fifo(&p, &reg, &s).unwrap();
    });
    let deadline = Instant::now() + W;
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // serve_fifo uses the default reply directory, /tmp.
    let reply = format!("ser_fifo_test_{}", std::process::id());
    let got = fifo_call(
        &path,
        Path::new("/tmp"),
        &reply,
        &format!(":test.add:{reply}\n5\n6\n\n"),
        W,
    );
    assert_eq!(got.as_deref(), Some("200 OK\n11\n"));
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(!path.exists(), "the FIFO is removed on shutdown");
}
