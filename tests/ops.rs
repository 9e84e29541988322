//! What an operator touches on day one: `make install`, the systemd unit,
//! the init script (run for real against the built `ser`), the man pages,
//! and the one-line start-up errors.
//!
//! Tools that may be missing (`make`, `systemd-analyze` from the `systemd`
//! package, `groff` from `groff-base`) make their test print a note and pass.

mod support;

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::proc::{alive, free_port, SER};
use support::tmp::TmpDir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// `sercmd` next to `ser` in the target dir; built on demand, since it
/// belongs to another package of the workspace.
fn sercmd_bin() -> PathBuf {
    let ser = Path::new(SER);
    let sercmd = ser.with_file_name("sercmd");
    if !sercmd.exists() {
        let profile_dir = ser.parent().unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "ser-fifo", "--bin", "sercmd"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(ROOT);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "build sercmd: {}", describe(&out));
    }
    sercmd
}

fn make_install(dest: &Path, extra: &[&str]) -> Output {
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(ROOT)
        .arg("install")
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("SER_BIN={SER}"))
        .arg(format!("SERCMD_BIN={}", sercmd_bin().display()))
        .args(extra)
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn make_install_places_the_tree() {
    if !have("make") {
        eprintln!("make not found (apt package `make`): install test skipped");
        return;
    }
    let tmp = TmpDir::new("install");
    let dest = tmp.path("root");
    let out = make_install(&dest, &["PREFIX=/usr/local"]);
    assert!(out.status.success(), "{}", describe(&out));
    let p = |rel: &str| dest.join(rel.trim_start_matches('/'));
    for bin in ["/usr/local/sbin/ser", "/usr/local/sbin/sercmd"] {
        assert_eq!(mode(&p(bin)), 0o755, "{bin}");
    }
    for f in [
        "/usr/local/etc/ser/ser.cfg",
        "/usr/local/etc/ser/ser.cfg.sample",
        "/usr/local/etc/default/ser",
        "/usr/local/share/man/man8/ser.8",
        "/usr/local/share/man/man8/sercmd.8",
        "/usr/local/share/man/man5/ser.cfg.5",
        "/usr/local/share/ser/db/sqlite.sql",
        "/usr/local/lib/systemd/system/ser.service",
    ] {
        assert!(p(f).is_file(), "{f} not installed");
    }
    // The installed binary is the built one and runs.
    let v = Command::new(p("/usr/local/sbin/ser"))
        .arg("-V")
        .output()
        .unwrap();
    assert!(text(&v.stdout).contains("ser 3."), "{}", describe(&v));

    // Paths inside the installed files follow PREFIX.
    let unit = fs::read_to_string(p("/usr/local/lib/systemd/system/ser.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/sbin/ser -P /run/ser/ser.pid -f ${CFGFILE}"));
    assert!(unit.contains("CFGFILE=/usr/local/etc/ser/ser.cfg"));
    assert!(unit.contains("EnvironmentFile=-/usr/local/etc/default/ser"));
    assert!(unit.contains("ReadWritePaths=-/usr/local/etc/ser/\n"));
    let defaults = fs::read_to_string(p("/usr/local/etc/default/ser")).unwrap();
    assert!(defaults.contains("CFGFILE=/usr/local/etc/ser/ser.cfg\n"));

    // A second install keeps the operator's config.
    fs::write(p("/usr/local/etc/ser/ser.cfg"), "# mine\n").unwrap();
    let again = make_install(&dest, &["PREFIX=/usr/local"]);
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(
        fs::read_to_string(p("/usr/local/etc/ser/ser.cfg")).unwrap(),
        "# mine\n"
    );

    // Another prefix rewrites the paths in the config.
    let opt = tmp.path("opt");
    let out = make_install(&opt, &["PREFIX=/opt/ser"]);
    assert!(out.status.success(), "{}", describe(&out));
    let cfg = fs::read_to_string(opt.join("opt/ser/etc/ser/ser.cfg")).unwrap();
    assert!(cfg.contains("sqlite:///opt/ser/etc/ser/ser.db"), "{cfg}");
    assert!(!cfg.contains("/usr/local"), "{cfg}");
    let unit = fs::read_to_string(opt.join("opt/ser/lib/systemd/system/ser.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/opt/ser/sbin/ser -c -f ${CFGFILE}"));
}

/// `systemd-analyze verify` on a unit, with its `ser` paths pointed at the
/// built binary (verify wants the executables to exist).
fn verify_unit(unit_text: &str, ser_path: &str, tmp: &TmpDir) -> Output {
    let unit = unit_text.replace(ser_path, SER);
    let path = tmp.path("ser.service");
    fs::write(&path, unit).unwrap();
    Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn systemd_unit_verifies() {
    if !have("systemd-analyze") {
        eprintln!("systemd-analyze not found (apt package `systemd`): unit check skipped");
        return;
    }
    let tmp = TmpDir::new("unit");
    let shipped = fs::read_to_string(Path::new(ROOT).join("etc/ser.service")).unwrap();
    for want in [
        "Type=forking",
        "User=ser",
        "PIDFile=/run/ser/ser.pid",
        "RuntimeDirectory=ser",
        "EnvironmentFile=-/etc/default/ser",
        "ExecStartPre=/usr/sbin/ser -c -f ${CFGFILE} $OPTIONS",
        "Restart=on-failure",
        "LimitNOFILE=",
    ] {
        assert!(shipped.contains(want), "ser.service lacks {want}");
    }
    let out = verify_unit(&shipped, "/usr/sbin/ser", &tmp);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        describe(&out)
    );
}

fn read_pid(p: &Path) -> Option<i32> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Stops a server the test started (by the pid in its pid file) if the test
/// failed before `stop`.
struct PidGuard(PathBuf);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.0) {
            if alive(pid) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
                let t = Instant::now();
                while alive(pid) && t.elapsed() < Duration::from_secs(5) {
                    sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Sends OPTIONS to 127.0.0.1:port, returns the reply's first line.
fn options(port: u16) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let req = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-ops-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:ops@127.0.0.1>;tag=1\r\n\
         To: <sip:127.0.0.1:{port}>\r\n\
         Call-ID: ops-test@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 4096];
    for _ in 0..10 {
        sock.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            return text(&buf[..n]).lines().next().map(str::to_owned);
        }
    }
    None
}

struct InitScript {
    tmp: TmpDir,
    cfg: PathBuf,
    pid_file: PathBuf,
    /// SER_USER / SER_GROUP (empty: stay root).
    user: (&'static str, &'static str),
}

impl InitScript {
    fn new(port: u16) -> InitScript {
        let tmp = TmpDir::new("initd");
        let cfg = tmp.path("ser.cfg");
        fs::write(
            &cfg,
            format!(
                "listen=udp:127.0.0.1:{port}\ndisable_tcp=yes\nchildren=2\n\
                 loadmodule \"sl\"\n\
                 route {{ sl_send_reply(\"200\", \"init script test\"); }}\n"
            ),
        )
        .unwrap();
        // The run directory does not exist yet: the script creates it.
        let pid_file = tmp.path("run/ser.pid");
        InitScript {
            tmp,
            cfg,
            pid_file,
            user: ("", ""),
        }
    }

    fn run(&self, action: &str, cfg: &Path) -> Output {
        Command::new(Path::new(ROOT).join("etc/init.d/ser"))
            .arg(action)
            .env("DAEMON", SER)
            .env("CFGFILE", cfg)
            .env("PIDFILE", &self.pid_file)
            .env("DEFAULTS", self.tmp.path("no-defaults"))
            .env("SHM_MEMORY", "16")
            .env("SER_USER", self.user.0)
            .env("SER_GROUP", self.user.1)
            .env("SER_PLAIN_OUTPUT", "1")
            .output()
            .unwrap()
    }
}

#[test]
fn init_script_checks_starts_and_stops_ser() {
    let port = free_port();
    let s = InitScript::new(port);
    let _guard = PidGuard(s.pid_file.clone());

    let out = s.run("check", &s.cfg);
    assert!(out.status.success(), "check: {}", describe(&out));
    assert!(text(&out.stdout).contains(": ok"), "{}", describe(&out));

    let bad = s.tmp.path("bad.cfg");
    fs::write(&bad, "route { no_such_function(); }\n").unwrap();
    let out = s.run("check", &bad);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("no_such_function"),
        "{}",
        describe(&out)
    );
    // A bad config is not started either.
    let out = s.run("start", &bad);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(!s.pid_file.exists());

    let out = s.run("status", &s.cfg);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));

    let out = s.run("start", &s.cfg);
    assert!(out.status.success(), "start: {}", describe(&out));
    let pid = read_pid(&s.pid_file).expect("pid file written");
    assert!(alive(pid));
    assert_eq!(
        options(port).as_deref(),
        Some("SIP/2.0 200 init script test")
    );

    let out = s.run("status", &s.cfg);
    assert!(out.status.success(), "status: {}", describe(&out));
    assert!(text(&out.stdout).contains(&format!("pid {pid}")));

    // Starting again is a no-op.
    let out = s.run("start", &s.cfg);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read_pid(&s.pid_file), Some(pid));

    let out = s.run("restart", &s.cfg);
    assert!(out.status.success(), "restart: {}", describe(&out));
    let pid2 = read_pid(&s.pid_file).expect("pid file after restart");
    assert_ne!(pid, pid2);
    assert!(!alive(pid));

    let out = s.run("stop", &s.cfg);
    assert!(out.status.success(), "stop: {}", describe(&out));
    assert!(!alive(pid2), "ser still running after stop");
    assert!(!s.pid_file.exists(), "pid file left behind");
    assert_eq!(s.run("status", &s.cfg).status.code(), Some(3));
    let out = s.run("stop", &s.cfg);
    assert!(out.status.success(), "second stop: {}", describe(&out));
}

#[test]
fn man_pages_render_without_warnings() {
    if !have("groff") {
        eprintln!("groff not found (apt package `groff-base`): man page check skipped");
        return;
    }
    for page in ["ser.8", "ser.cfg.5", "sercmd.8"] {
        let out = Command::new("groff")
            .args(["-man", "-ww", "-Tutf8"])
            .arg(Path::new(ROOT).join("man").join(page))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.len() > 1000, "{page} renders to almost nothing");
    }
}

/// Start-up failures end with status 1 and one clear line on stderr, in
/// the foreground and as a daemon.
#[test]
fn startup_errors_exit_1_with_one_line() {
    let tmp = TmpDir::new("errors");
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = tmp.path("ser.cfg");
    fs::write(
        &cfg,
        format!("listen=udp:127.0.0.1:{port}\ndisable_tcp=yes\nroute {{ drop; }}\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(SER)
            .arg("-f")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap()
    };
    for mode in [&["-DD"][..], &[]] {
        let out = run(mode);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {}", describe(&out));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{mode:?}: {err}");
        assert!(
            err.contains("Address already in use") && err.contains(&port.to_string()),
            "{err}"
        );
    }
    let out = run(&["-DD", "-u", "no-such-user-ops"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "ser: unknown user 'no-such-user-ops'\n");

    // Privileges that cannot be dropped: an unprivileged ser asked for root.
    if nix::unistd::geteuid().is_root() && have("setpriv") {
        let free = free_port();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", SER])
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-u", "0", "-g", "0", "-l"])
            .arg(format!("udp:127.0.0.1:{free}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert_eq!(
            text(&out.stderr),
            "ser: setgid 0: Operation not permitted (os error 1)\n"
        );
    }

    fs::write(&cfg, "route { sl_send_reply(\"200\"; }\n").unwrap();
    let out = run(&["-DD"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.ends_with(&format!("ser: bad config file ({})\n", cfg.display())),
        "{err}"
    );
}

/// What an operator sees in the log of a start and a stop: every listen
/// address, the process count, and why it stopped.
#[test]
fn startup_and_shutdown_are_logged() {
    let tmp = TmpDir::new("log");
    let port = free_port();
    let cfg = tmp.path("ser.cfg");
    fs::write(
        &cfg,
        format!(
            "debug=2\nlisten=udp:127.0.0.1:{port}\ndisable_tcp=yes\n\
             loadmodule \"sl\"\nroute {{ sl_send_reply(\"200\", \"ok\"); }}\n"
        ),
    )
    .unwrap();
    let log = tmp.path("ser.log");
    let mut child = Command::new(SER)
        .arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-n", "2", "-m", "16"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let t = Instant::now();
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ser started")
        && t.elapsed() < Duration::from_secs(10)
    {
        sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(50));
    };
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    for want in [
        "INFO: <core> [startup.rs:".to_string(),
        format!("listening on udp:127.0.0.1:{port}"),
        format!(
            "ser {} ({}/{}) starting",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            std::env::consts::OS
        ),
        "udp receivers: 2 on 1 socket, tcp workers: 0, timer: 1, ctl: 0".to_string(),
        // main + 2 receivers + timer (+ ctl, when the config has one)
        "ser started: ".to_string(),
        "signal 15 received, shutting down".to_string(),
        "ser exiting: signal 15 (SIGTERM)".to_string(),
    ] {
        assert!(text.contains(&want), "log lacks `{want}`:\n{text}");
    }
}

/// The `[package.metadata.deb]` assets exist (or are made by `make
/// deb-assets` / the release build), the maintainer scripts are valid sh,
/// and the Debian config names the Debian paths and checks clean.
#[test]
fn debian_package_metadata_is_complete() {
    let root = Path::new(ROOT);
    let toml = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let section = toml
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("[package.metadata.deb] in Cargo.toml");
    let mut sources = Vec::new();
    for line in section.lines().map(str::trim) {
        if let Some(inner) = line.strip_prefix("[\"") {
            sources.push(inner.split('"').next().unwrap().to_owned());
        }
    }
    assert!(sources.len() >= 8, "{sources:?}");
    for src in &sources {
        if src.starts_with("target/") {
            continue;
        }
        if let Some(dir) = src.strip_suffix("/*.sql") {
            assert!(root.join(dir).join("sqlite.sql").is_file(), "{src}");
            continue;
        }
        assert!(root.join(src).is_file(), "deb asset {src} missing");
    }
    assert!(section.contains("maintainer-scripts = \"etc/debian/\""));
    assert!(root.join("etc/ser.service").is_file());
    for script in ["postinst", "postrm", "prerm"] {
        let p = root.join("etc/debian").join(script);
        assert_eq!(mode(&p) & 0o111, 0o111, "{script} not executable");
        let out = Command::new("sh").arg("-n").arg(&p).output().unwrap();
        assert!(out.status.success(), "{script}: {}", describe(&out));
    }
    let postinst = fs::read_to_string(root.join("etc/debian/postinst")).unwrap();
    assert!(postinst.contains("adduser --system"));
    assert!(postinst.contains("#DEBHELPER#"));

    if !have("make") {
        eprintln!("make not found: deb-assets check skipped");
        return;
    }
    let tmp = TmpDir::new("deb");
    let out = Command::new("make")
        .args(["-s", "-C", ROOT, "deb-assets"])
        .arg(format!("DEB_ASSETS={}", tmp.dir().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let cfg = tmp.path("ser.cfg");
    let text = fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("sqlite:///var/lib/ser/ser.db"));
    assert!(!text.contains("/usr/local"), "{text}");
    let out = Command::new(SER)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
}

/// Every option `sercmd -h` prints is in sercmd.8.
#[test]
fn sercmd_8_lists_every_option() {
    let out = Command::new(sercmd_bin()).arg("-h").output().unwrap();
    let help = text(&out.stdout);
    let page = fs::read_to_string(Path::new(ROOT).join("man/sercmd.8")).unwrap();
    let mut n = 0;
    for line in help.lines() {
        let Some(flag) = line.strip_prefix("    -").and_then(|r| r.chars().next()) else {
            continue;
        };
        n += 1;
        assert!(
            page.contains(&format!(".B \\-{flag}\n")) || page.contains(&format!(".BI \\-{flag} ")),
            "sercmd.8 does not document -{flag}"
        );
    }
    assert!(n >= 8, "only {n} options in sercmd -h:\n{help}");
}

/// As root, the init script runs ser as SER_USER/SER_GROUP: the run
/// directory is handed to that user, the processes drop to it after
/// binding, and stop still removes the pid file.
#[test]
fn init_script_runs_ser_as_its_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: privilege drop through the init script not tested");
        return;
    }
    let (Ok(Some(user)), Ok(Some(group))) = (
        nix::unistd::User::from_name("nobody"),
        nix::unistd::Group::from_name("nogroup"),
    ) else {
        eprintln!("no nobody/nogroup: privilege drop through the init script not tested");
        return;
    };
    let port = free_port();
    let mut s = InitScript::new(port);
    s.user = ("nobody", "nogroup");
    let _guard = PidGuard(s.pid_file.clone());
    let out = s.run("start", &s.cfg);
    assert!(out.status.success(), "start: {}", describe(&out));
    let pid = read_pid(&s.pid_file).expect("pid file written");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap()
    };
    assert!(
        ids("Uid:").iter().all(|u| *u == user.uid.to_string()),
        "{status}"
    );
    assert!(
        ids("Gid:").iter().all(|g| *g == group.gid.to_string()),
        "{status}"
    );
    assert_eq!(
        options(port).as_deref(),
        Some("SIP/2.0 200 init script test")
    );
    let out = s.run("stop", &s.cfg);
    assert!(out.status.success(), "stop: {}", describe(&out));
    assert!(!alive(pid));
    assert!(!s.pid_file.exists(), "pid file left behind");
}
