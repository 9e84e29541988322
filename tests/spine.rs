//! Whole-binary tests of the spine: command line, process model, signals,
//! daemon mode. Each test starts the real `ser` on 127.0.0.1 with free
//! ports, waits with bounded loops, and kills everything it started in a
//! `Drop` guard.

use std::fs;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

mod support;

use support::proc::{alive, children_of, free_port, wait_until, Group, SER};
use support::tmp::TmpDir;

/// `ser.cfg` in `dir`: a config that drops everything.
fn drop_cfg(dir: &TmpDir) -> PathBuf {
    let p = dir.path("ser.cfg");
    fs::write(&p, "debug=3\nroute { drop; }\n").unwrap();
    p
}

fn signal(pid: i32, sig: Signal) {
    // Never pid 0/1 or our own group by mistake.
    assert!(pid > 1, "bad pid {pid}");
    let _ = kill(Pid::from_raw(pid), sig);
}

/// A running `ser`; kills its process group (and a daemon's) on drop.
struct Ser {
    child: Option<Group>,
    log: PathBuf,
    daemon_pid: Option<i32>,
}

impl Ser {
    /// Starts `ser` in the foreground (`-E -DD` given by the caller),
    /// stderr to `log`, and waits for "ser started".
    fn start(dir: &TmpDir, args: &[&str]) -> Ser {
        let log = dir.path("stderr.log");
        let err = fs::File::create(&log).unwrap();
        let child = Group::spawn(
            Command::new(SER)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err),
        )
        .unwrap();
        let ser = Ser {
            child: Some(child),
            log,
            daemon_pid: None,
        };
        let ok = wait_until(Duration::from_secs(5), || {
            ser.log_text().contains("ser started")
        });
        assert!(ok, "ser did not start:\n{}", ser.log_text());
        ser
    }

    fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(Group::pid)
            .or(self.daemon_pid)
            .expect("a Ser is either in the foreground or a daemon")
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `(pid, desc)` from the process table the main process logs at
    /// debug level after forking.
    fn table(&self) -> Vec<(i32, String)> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split_once("process table: ").map(|(_, t)| t.to_string()))
            .filter_map(|t| {
                let mut it = t.splitn(4, ' ');
                let _index = it.next()?;
                let pid = it.next()?.strip_prefix("pid=")?.parse().ok()?;
                let _rank = it.next()?;
                Some((pid, it.next()?.to_string()))
            })
            .collect()
    }

    /// Waits for the main process to exit; its status code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.child.as_mut()?.wait_exit(limit)
    }
}

impl Drop for Ser {
    fn drop(&mut self) {
        // The foreground group goes with its `Group`; a daemon left it.
        self.child.take();
        if let Some(pid) = self.daemon_pid {
            for p in children_of(pid) {
                signal(p, Signal::SIGKILL);
            }
            signal(pid, Signal::SIGKILL);
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(SER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn help_has_ser_usage_format() {
    let out = run(&["-h"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "version: ser 3.0.0 (x86_64/linux)");
    assert_eq!(lines[1], "Usage: ser [options]");
    assert_eq!(lines[2], "Options:");
    assert_eq!(
        lines[3],
        "    -f file      Configuration file (default: /usr/local/etc/ser/ser.cfg)"
    );
    let letters: String = lines
        .iter()
        .filter_map(|l| l.strip_prefix("    -"))
        .filter_map(|l| l.chars().next())
        .collect();
    assert_eq!(letters, "fLclnrRvdDETNSQWVhbmwtugPGOaA");
}

#[test]
fn version_lists_build_facts() {
    let out = run(&["-V"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "version: ser 3.0.0 (x86_64/linux)");
    assert!(
        lines[1].starts_with("flags: STATS: Off, USE_IPV6, USE_TCP,"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("ADAPTIVE_WAIT_LOOPS="), "{}", lines[2]);
    assert!(lines[2].contains("BUF_SIZE 65535"));
    assert!(lines[3].starts_with("poll method support: "));
    assert!(lines[4].starts_with("id: "));
    assert!(lines[5].starts_with("compiled "));
}

#[test]
fn bad_flags_give_one_line_and_fail() {
    let cases: &[(&[&str], &str)] = &[
        (&["-x"], "ser: invalid option -- 'x'"),
        (&["-n", "abc"], "ser: bad -n argument 'abc'"),
        (&["-dEq"], "ser: invalid option -- 'q'"),
        (&["-f"], "ser: option requires an argument -- 'f'"),
        (&["-m", "0"], "ser: bad -m argument '0': must be > 0"),
        (
            &["-l", "udp:127.0.0.1:99999"],
            "ser: bad -l argument 'udp:127.0.0.1:99999': bad port '99999'",
        ),
    ];
    for (args, first) in cases {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err, format!("{first}\nUse -h for help\n"), "{args:?}");
    }
}

#[test]
fn check_mode_reports_and_exits() {
    let dir = TmpDir::new("check");
    let cfg = drop_cfg(&dir);
    let out = run(&["-f", cfg.to_str().unwrap(), "-c", "-E"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("config file ok"), "{text}");
    assert_eq!(text.lines().count(), 1);
    let missing = dir.path("nope.cfg");
    let out = run(&["-f", missing.to_str().unwrap(), "-c"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open config file"));
}

fn udp_args<'a>(cfg: &'a str, listen: &'a str, pidfile: &'a str) -> Vec<&'a str> {
    vec![
        "-f", cfg, "-l", listen, "-n", "3", "-E", "-DD", "-ddd", "-P", pidfile,
    ]
}

#[test]
fn foreground_forks_receivers_and_timer_and_stops_on_sigterm() {
    let dir = TmpDir::new("fg");
    let cfg = drop_cfg(&dir);
    let pidfile = dir.path("ser.pid");
    let port = free_port();
    let listen = format!("udp:127.0.0.1:{port}");
    let args = udp_args(cfg.to_str().unwrap(), &listen, pidfile.to_str().unwrap());
    let mut ser = Ser::start(&dir, &args);
    let main = ser.pid();
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        main.to_string()
    );

    let kids = children_of(main);
    assert_eq!(
        kids.len(),
        4,
        "main + 3 receivers + timer: {kids:?}\n{}",
        ser.log_text()
    );
    let table = ser.table();
    let descs: Vec<&str> = table.iter().map(|(_, d)| d.as_str()).collect();
    let sock = format!("127.0.0.1:{port}");
    assert_eq!(
        descs,
        [
            "main process - attendant".to_string(),
            format!("udp receiver child=0 sock={sock}"),
            format!("udp receiver child=1 sock={sock}"),
            format!("udp receiver child=2 sock={sock}"),
            "timer".to_string(),
        ]
    );
    let mut table_pids: Vec<i32> = table.iter().skip(1).map(|(p, _)| *p).collect();
    table_pids.sort();
    assert_eq!(table_pids, kids);
    assert_eq!(table[0].0, main);

    // Garbage of every shape: nothing may die.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0u8; 1],
        (0..=255u8).collect(),
        vec![0xff; 65507],
        b"INVITE sip:x SIP/2.0\r\nVia: \r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
        b"\r\n\r\n".to_vec(),
    ];
    for j in &junk {
        client.send_to(j, ("127.0.0.1", port)).unwrap();
    }
    let all_seen = wait_until(Duration::from_secs(2), || {
        ser.log_text().matches("udp: ").count() == junk.len()
    });
    assert!(all_seen, "{}", ser.log_text());
    assert!(alive(main));
    assert_eq!(
        children_of(main),
        kids,
        "a process died:\n{}",
        ser.log_text()
    );

    // SIGUSR1 logs shm stats, SIGHUP is ignored.
    signal(main, Signal::SIGUSR1);
    signal(main, Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(2), || ser
        .log_text()
        .contains("SIGHUP received")));
    assert!(ser.log_text().contains("shm stats: total="));
    assert!(alive(main));

    let t0 = Instant::now();
    signal(main, Signal::SIGTERM);
    let code = ser.wait_exit(Duration::from_secs(2));
    assert_eq!(code, Some(0), "did not stop in 2 s:\n{}", ser.log_text());
    assert!(t0.elapsed() < Duration::from_secs(2));
    for k in kids {
        assert!(!alive(k), "child {k} still alive");
    }
    assert!(!pidfile.exists(), "pid file not removed");
}

#[test]
fn tcp_socket_adds_tcp_main_and_workers() {
    let dir = TmpDir::new("tcp");
    let cfg = drop_cfg(&dir);
    let pidfile = dir.path("ser.pid");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "-f",
        cfg.to_str().unwrap(),
        "-l",
        &listen,
        "-n",
        "2",
        "-N",
        "2",
        "-E",
        "-DD",
        "-ddd",
        "-P",
        pidfile.to_str().unwrap(),
    ];
    let mut ser = Ser::start(&dir, &args);
    let main = ser.pid();
    let descs: Vec<String> = ser.table().into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        descs,
        [
            "main process - attendant".to_string(),
            format!("udp receiver child=0 sock=127.0.0.1:{port}"),
            format!("udp receiver child=1 sock=127.0.0.1:{port}"),
            "timer".to_string(),
            "tcp main process".to_string(),
            "tcp receiver (generic) child=0".to_string(),
            "tcp receiver (generic) child=1".to_string(),
        ]
    );
    let kids = children_of(main);
    assert_eq!(kids.len(), 6, "{kids:?}");

    // A framed message, a split one and garbage over TCP: nobody dies.
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    a.write_all(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    a.write_all(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nl: 4\r\n\r\nab")
        .unwrap();
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    b.write_all(&[0u8, 0xff, 0x13, 0x37]).unwrap();
    b.write_all(b"X\r\nContent-Length: -1\r\n\r\n").unwrap();
    drop(b);
    a.write_all(b"cd").unwrap();
    sleep(Duration::from_millis(300));
    drop(a);
    let both = wait_until(Duration::from_secs(2), || {
        ser.log_text().matches("tcp: message of").count() == 2
    });
    assert!(both, "{}", ser.log_text());
    assert_eq!(
        children_of(main),
        kids,
        "a process died:\n{}",
        ser.log_text()
    );

    signal(main, Signal::SIGTERM);
    assert_eq!(ser.wait_exit(Duration::from_secs(2)), Some(0));
    assert!(kids.iter().all(|k| !alive(*k)));
}

#[test]
fn dead_child_shuts_the_server_down() {
    let dir = TmpDir::new("sigchld");
    let cfg = drop_cfg(&dir);
    let pidfile = dir.path("ser.pid");
    let listen = format!("udp:127.0.0.1:{}", free_port());
    let args = udp_args(cfg.to_str().unwrap(), &listen, pidfile.to_str().unwrap());
    let mut ser = Ser::start(&dir, &args);
    let main = ser.pid();
    let table = ser.table();
    let (victim, desc) = table[2].clone();
    signal(victim, Signal::SIGKILL);
    let code = ser.wait_exit(Duration::from_secs(3));
    assert_eq!(code, Some(1), "{}", ser.log_text());
    let log = ser.log_text();
    assert!(
        log.contains(&format!(
            "child process {victim} [{desc}] exited by a signal 9"
        )),
        "{log}"
    );
    assert!(children_of(main).is_empty());
    assert!(!pidfile.exists());
}

#[test]
fn dont_fork_runs_main_as_the_receiver() {
    let dir = TmpDir::new("nofork");
    let cfg = drop_cfg(&dir);
    let port = free_port();
    let listen = format!("udp:127.0.0.1:{port}");
    let args = [
        "-f",
        cfg.to_str().unwrap(),
        "-l",
        &listen,
        "-E",
        "-D",
        "-ddd",
    ];
    let mut ser = Ser::start(&dir, &args);
    let main = ser.pid();
    assert_eq!(children_of(main).len(), 1, "only the timer");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"junk", ("127.0.0.1", port)).unwrap();
    assert!(wait_until(Duration::from_secs(2), || ser
        .log_text()
        .contains("udp: 4 bytes from")));
    signal(main, Signal::SIGTERM);
    assert_eq!(ser.wait_exit(Duration::from_secs(2)), Some(0));
}

#[test]
fn daemon_writes_pid_file_and_stops_on_sigterm() {
    let dir = TmpDir::new("daemon");
    let cfg = drop_cfg(&dir);
    let pidfile = dir.path("ser.pid");
    let pgidfile = dir.path("ser.pgid");
    let listen = format!("udp:127.0.0.1:{}", free_port());
    let mut out = Command::new(SER);
    out.args(["-f", cfg.to_str().unwrap(), "-l", &listen, "-n", "2", "-T"])
        .args([
            "-P",
            pidfile.to_str().unwrap(),
            "-G",
            pgidfile.to_str().unwrap(),
        ])
        .stdin(Stdio::null());
    // The creator returns once the daemon is up, and nothing keeps its
    // stdout/stderr pipes open (else this would wait for the daemon).
    let out = output_within(&mut out, Duration::from_secs(5), &pidfile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut guard = Ser {
        child: None,
        log: dir.path("none"),
        daemon_pid: Some(pid),
    };
    let pgid: i32 = fs::read_to_string(&pgidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // After setsid and the second fork the daemon is in the session
    // leader's group, as SER's.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgrp: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgid, pgrp);
    assert!(alive(pid));
    assert!(wait_until(Duration::from_secs(2), || children_of(pid)
        .len()
        == 3));
    let kids = children_of(pid);
    signal(pid, Signal::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(2), || !alive(pid)),
        "daemon still running"
    );
    assert!(kids.iter().all(|k| !alive(*k)));
    assert!(!pidfile.exists() && !pgidfile.exists());
    guard.daemon_pid = None;
    assert!(!Path::new(&pidfile).exists());
}

fn status_ids(pid: i32) -> (String, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    (field("Uid:"), field("Gid:"))
}

#[test]
fn user_and_group_are_dropped_after_binding() {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TmpDir::new("suid");
    // The unprivileged main process must be able to remove its pid file.
    fs::set_permissions(dir.dir(), fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = drop_cfg(&dir);
    let pidfile = dir.path("ser.pid");
    let listen = format!("udp:127.0.0.1:{}", free_port());
    let args = [
        "-f",
        cfg.to_str().unwrap(),
        "-l",
        &listen,
        "-n",
        "1",
        "-E",
        "-DD",
        "-ddd",
        "-u",
        "nobody",
        "-g",
        "65534",
        "-P",
        pidfile.to_str().unwrap(),
    ];
    let mut ser = Ser::start(&dir, &args);
    let main = ser.pid();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .to_string();
    for pid in std::iter::once(main).chain(children_of(main)) {
        assert_eq!(
            status_ids(pid),
            (nobody.clone(), "65534".to_string()),
            "pid {pid}"
        );
    }
    signal(main, Signal::SIGTERM);
    assert_eq!(ser.wait_exit(Duration::from_secs(2)), Some(0));
    assert!(!pidfile.exists());
}

#[test]
fn config_globals_apply_and_the_command_line_wins() {
    let dir = TmpDir::new("globals");
    let receivers = |extra: &[&str]| {
        let port = free_port();
        let cfg = dir.path("globals.cfg");
        let text = format!(
            "children=2\nlisten=udp:127.0.0.1:{port}\ndisable_tcp=yes\nroute {{ drop; }}\n"
        );
        fs::write(&cfg, text).unwrap();
        let mut args = vec!["-f", cfg.to_str().unwrap(), "-E", "-DD", "-ddd"];
        args.extend_from_slice(extra);
        let ser = Ser::start(&dir, &args);
        let table = ser.table();
        assert!(
            table.iter().all(|(_, d)| !d.starts_with("tcp")),
            "{table:?}"
        );
        let sock = format!("sock=127.0.0.1:{port}");
        table
            .iter()
            .filter(|(_, d)| d.starts_with("udp receiver") && d.ends_with(&sock))
            .count()
    };
    assert_eq!(receivers(&[]), 2, "children=2 from the config");
    assert_eq!(receivers(&["-n", "1"]), 1, "-n overrides children=");
}

#[test]
fn bad_config_is_reported_with_position() {
    let dir = TmpDir::new("badcfg");
    let cfg = dir.path("bad.cfg");
    fs::write(&cfg, "debug=3\nchildren=\"x\"\nroute { drop; }\n").unwrap();
    let out = run(&["-f", cfg.to_str().unwrap(), "-c"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.cfg:2:10: children: number expected"),
        "{err}"
    );
    let out = run(&["-f", cfg.to_str().unwrap(), "-E", "-DD"]);
    assert!(
        !out.status.success(),
        "the server must not start on a bad config"
    );
}

#[test]
fn a_request_reaches_the_script_and_is_answered() {
    let dir = TmpDir::new("sl");
    let cfg = dir.path("sl.cfg");
    fs::write(
        &cfg,
        "loadmodule \"sl\"\nroute {\n  sl_send_reply(\"200\", \"OK from ser\");\n}\n",
    )
    .unwrap();
    let port = free_port();
    let listen = format!("udp:127.0.0.1:{port}");
    let args = [
        "-f",
        cfg.to_str().unwrap(),
        "-l",
        &listen,
        "-n",
        "2",
        "-E",
        "-DD",
        "-dd",
    ];
    let ser = Ser::start(&dir, &args);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let me = client.local_addr().unwrap().port();
    let req = format!(
        "OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: spine-1\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    // Garbage first: the worker that gets it must still answer afterwards.
    for _ in 0..4 {
        client
            .send_to(b"\x00garbage\xff", ("127.0.0.1", port))
            .unwrap();
    }
    let mut buf = [0u8; 4096];
    for i in 0..4 {
        client.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("no reply to request {i}: {e}\n{}", ser.log_text());
        });
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(reply.starts_with("SIP/2.0 200 OK from ser\r\n"), "{reply}");
    }
}

/// Runs `cmd` to completion with piped output, at most `limit`; on timeout
/// kills the daemon named in `pidfile` (and its children) and fails.
fn output_within(cmd: &mut Command, limit: Duration, pidfile: &Path) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            if let Some(pid) = fs::read_to_string(pidfile)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                let _guard = Ser {
                    child: None,
                    log: PathBuf::new(),
                    daemon_pid: Some(pid),
                };
            }
            panic!("the daemon's creator did not return in {limit:?}");
        }
    }
}

#[test]
fn daemon_start_failure_reaches_the_terminal() {
    let dir = TmpDir::new("daemon-fail");
    let cfg = drop_cfg(&dir);
    let pidfile = dir.path("ser.pid");
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = format!("udp:127.0.0.1:{}", busy.local_addr().unwrap().port());
    let mut cmd = Command::new(SER);
    cmd.args([
        "-f",
        cfg.to_str().unwrap(),
        "-l",
        &listen,
        "-T",
        "-P",
        pidfile.to_str().unwrap(),
    ])
    .stdin(Stdio::null());
    let out = output_within(&mut cmd, Duration::from_secs(5), &pidfile);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("ser: bind {listen}: ")), "{err}");
    assert!(!pidfile.exists());
}

#[test]
fn dash_a_defines_reach_the_preprocessor() {
    let dir = TmpDir::new("defines");
    let cfg = dir.path("defs.cfg");
    fs::write(
        &cfg,
        "#!ifdef WITH_X\nchildren=1\n#!endif\nroute { drop; }\n",
    )
    .unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec!["-f", cfg.to_str().unwrap(), "-c"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(check(&[]).contains("(0 settings,"));
    assert!(check(&["-A", "WITH_X"]).contains("(1 settings,"));
    assert!(check(&["-AWITH_X=1"]).contains("(1 settings,"));
}

#[test]
fn sigint_stops_like_sigterm() {
    let dir = TmpDir::new("sigint");
    let cfg = drop_cfg(&dir);
    let pidfile = dir.path("ser.pid");
    let listen = format!("127.0.0.1:{}", free_port());
    let args = udp_args(cfg.to_str().unwrap(), &listen, pidfile.to_str().unwrap());
    let mut ser = Ser::start(&dir, &args);
    let main = ser.pid();
    let kids = children_of(main);
    assert_eq!(
        kids.len(),
        3 + 1 + 1 + 3,
        "udp receivers, timer, tcp main, tcp workers"
    );
    // As Ctrl-C does: the whole process group gets it.
    let _ = killpg(Pid::from_raw(main), Signal::SIGINT);
    assert_eq!(
        ser.wait_exit(Duration::from_secs(2)),
        Some(0),
        "{}",
        ser.log_text()
    );
    assert!(kids.iter().all(|k| !alive(*k)));
    assert!(!pidfile.exists());
}
