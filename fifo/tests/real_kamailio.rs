//! Our sercmd against a REAL Kamailio's ctl module: the same output as kamcmd.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A Kamailio in the foreground (-DD), stopped with SIGTERM (then SIGKILL) on drop.
struct Kamailio {
    child: Child,
}

impl Kamailio {
    fn start(dir: &Path) -> Kamailio {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ctl = dir.join("kamailio_ctl");
        let cfg = format!(
            "#!KAMAILIO\n\
             debug=2\nlog_stderror=yes\nchildren=1\n\
             listen=udp:127.0.0.1:{port}\n\
             mpath=\"/usr/lib/x86_64-linux-gnu/kamailio/modules/\"\n\
             loadmodule \"ctl.so\"\n\
             modparam(\"ctl\", \"binrpc\", \"unix:{}\")\n\
             request_route {{ drop; }}\n",
            ctl.display()
        );
        std::fs::write(dir.join("kamailio.cfg"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("kamailio.log")).unwrap();
        let child = Command::new(KAMAILIO)
            .arg("-f")
            .arg(dir.join("kamailio.cfg"))
            .args(["-DD", "-E", "-m", "16", "-M", "8"])
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(dir)
            .arg("-w")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kamailio");
        let k = Kamailio { child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ctl.exists() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not open its ctl socket; see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sercmd_against_real_kamailio() {
    if !Path::new(KAMAILIO).exists() {
        println!("SKIPPED: {KAMAILIO} is not installed");
        return;
    }
    let dir = temp_dir("kamailio");
    let _k = Kamailio::start(&dir);
    let addr = format!("unix:{}", dir.join("kamailio_ctl").display());

    let (version, code) = ctl_cmd(SERCMD, &addr, &["core.version"]);
    assert_eq!(code, 0);
    assert!(version.starts_with("kamailio "), "{version}");

    let (methods, code) = ctl_cmd(SERCMD, &addr, &["system.listMethods"]);
    assert_eq!(code, 0);
    for m in [
        "core.version",
        "core.ps",
        "core.uptime",
        "system.listMethods",
        "ctl.who",
    ] {
        assert!(
            methods.lines().any(|l| l == m),
            "{m} missing from:\n{methods}"
        );
    }

    let (ps, code) = ctl_cmd(SERCMD, &addr, &["core.ps"]);
    assert_eq!(code, 0);
    assert!(ps.contains("main process - attendant"), "{ps}");
    assert!(ps.contains("ctl handler"), "{ps}");

    let (uptime, _) = ctl_cmd(SERCMD, &addr, &["core.uptime"]);
    assert!(
        uptime.starts_with("{\n\tnow: ") && uptime.contains("\tuptime: "),
        "{uptime}"
    );

    let (fault, code) = ctl_cmd(SERCMD, &addr, &["no.such.method"]);
    assert_eq!(
        (fault.as_str(), code),
        ("error: 500 - command no.such.method not found\n", 1)
    );

    // Byte-for-byte what kamcmd prints, for replies that do not change between two calls.
    if kamcmd_present() {
        for args in [
            &["core.version"][..],
            &["ver"],
            &["ps"],
            &["core.psx"],
            &["system.listMethods"],
            &["system.methodHelp", "core.ps"],
            &["core.info"],
            &["core.echo", "a", "1", "1.5", "s:-2"],
            &["ctl.listen"],
            &["no.such.method"],
        ] {
            let ours = ctl_cmd(SERCMD, &addr, args).0;
            let theirs = ctl_cmd(KAMCMD, &addr, args).0;
            assert_eq!(ours, theirs, "sercmd vs kamcmd for {args:?}");
        }
    }

    // Interactive mode on a pipe: several commands on one connection.
    let out = {
        use std::io::Write;
        let mut c = Command::new(SERCMD)
            .args(["-s", &addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(b"core.version\nver\nquit\n")
            .unwrap();
        c.wait_with_output().unwrap()
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, format!("{version}{version}"));
}
