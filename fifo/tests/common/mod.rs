//! Shared test harness: a ctl server with a few test methods, running in a thread.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ser_fifo::ctl::{serve_with, CtlConfig, CtlListener};
use ser_fifo::{RpcFault, RpcRegistry, RpcValue};

pub const KAMCMD: &str = "/usr/sbin/kamcmd";
pub const KAMAILIO: &str = "/usr/sbin/kamailio";

/// The registry every test server serves.
pub fn test_registry() -> RpcRegistry {
    let mut r = RpcRegistry::new();
    r.register(
        "test.struct",
        &["Returns a struct like core.uptime."],
        |ctx| {
            ctx.add(RpcValue::structure([
                ("now", RpcValue::from("Sun Nov 29 16:00:00 2026")),
                ("uptime", RpcValue::Int(42)),
                ("load", RpcValue::Double(1.5)),
                (
                    "nested",
                    RpcValue::structure([("a", RpcValue::Int(1)), ("b", RpcValue::from("x"))]),
                ),
            ]));
            Ok(())
        },
    )
    .unwrap();
    r.register("test.array", &["Returns an array."], |ctx| {
        ctx.add(RpcValue::Array(vec![
            RpcValue::Int(1),
            RpcValue::from("two"),
            RpcValue::Int(3),
        ]));
        Ok(())
    })
    .unwrap();
    r.register("test.fault", &["Always faults."], |_| {
        Err(RpcFault::new(499, "test fault"))
    })
    .unwrap();
    r.register("test.echo", &["Echoes its parameters."], |ctx| {
        for p in ctx.params().to_vec() {
            ctx.add(p);
        }
        Ok(())
    })
    .unwrap();
    r.register("test.add", &["Adds two integers."], |ctx| {
        let (a, b) = (ctx.scan_int(0)?, ctx.scan_int(1)?);
        ctx.add(RpcValue::Int(a.wrapping_add(b)));
        Ok(())
    })
    .unwrap();
    r.register(
        "test.ps",
        &["Pairs of pid and description, like core.ps."],
        |ctx| {
            for (pid, d) in [
                (100, "main process - attendant"),
                (101, "udp receiver child=0"),
            ] {
                ctx.add(RpcValue::Int(pid));
                ctx.add(RpcValue::from(d));
            }
            Ok(())
        },
    )
    .unwrap();
    r.register("test.big", &["Returns n bytes of text."], |ctx| {
        let n = ctx.scan_int(0)?.max(0) as usize;
        ctx.add(RpcValue::Str("x".repeat(n)));
        Ok(())
    })
    .unwrap();
    r.register("test.panic", &["Panics (the server must survive)."], |_| {
        panic!("test.panic called")
    })
    .unwrap();
    r
}

/// A unique temp dir for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ser-fifo-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A server thread; stopped and joined on drop.
pub struct TestServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub addrs: Vec<String>,
}

impl TestServer {
    /// Serves the test registry on `addrs` with `cfg`.
    pub fn start(addrs: &[String], cfg: CtlConfig) -> TestServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let owned: Vec<String> = addrs.to_vec();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            // The registry is not Send (handlers are plain boxed closures): build it here.
            let registry = test_registry();
            let listeners: Vec<CtlListener> = owned
                .iter()
                .map(|a| CtlListener::bind(a).expect("bind"))
                .collect();
            tx.send(()).unwrap();
            serve_with(listeners, &registry, &s, &cfg).expect("serve");
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        TestServer {
            stop,
            thread: Some(thread),
            addrs: addrs.to_vec(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a command with a timeout (the child is killed after it). Output is drained by
/// reader threads so a big reply cannot block the child on a full pipe.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command timed out: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

pub fn kamcmd_present() -> bool {
    if Path::new(KAMCMD).exists() {
        true
    } else {
        println!("SKIPPED: {KAMCMD} is not installed");
        false
    }
}

/// Runs `tool -s addr args...` and returns (stdout, exit code).
pub fn ctl_cmd(tool: &str, addr: &str, args: &[&str]) -> (String, i32) {
    let out = run(
        Command::new(tool).arg("-s").arg(addr).args(args),
        Duration::from_secs(20),
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

pub const SERCMD: &str = env!("CARGO_BIN_EXE_sercmd");
