//! Child processes: the real `ser` binary (or a database server) in a
//! process group of its own, killed as a group when the test lets go of it,
//! and what the tests look up about processes in /proc.

use std::ffi::OsStr;
use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::tmp::TmpDir;

/// The `ser` binary Cargo built for these tests.
pub const SER: &str = env!("CARGO_BIN_EXE_ser");

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port on 127.0.0.1 free for both UDP and TCP a moment ago.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let port = free_udp_port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Live (non-zombie) children of `ppid`, sorted.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(ppid) && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// SIGKILL to one process.
pub fn sigkill(pid: i32) {
    assert!(pid > 1, "bad pid {pid}");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Polls `f` every 10 ms until it holds or `limit` has passed; its last answer.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(10));
    }
    f()
}

/// A child started in a process group of its own.  On drop the whole group
/// gets SIGKILL and the child is reaped; its children (which may have left
/// the group) are waited for, at most 2 s, so a test leaves nothing running.
pub struct Group {
    child: Child,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Group> {
        let child = cmd.process_group(0).spawn()?;
        Ok(Group { child })
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32 (pid_max is at most 2^22)")
    }

    /// The exit status, if the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on our own child")
    }

    /// Waits at most `limit` for the child to exit; its exit code (-1 when
    /// killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(st) = self.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let main = self.pid();
        let kids = children_of(main);
        if main > 1 {
            let _ = killpg(Pid::from_raw(main), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        wait_until(Duration::from_secs(2), || kids.iter().all(|k| !alive(*k)));
    }
}

/// A running `ser` (foreground, logging to stderr, which goes to a file).
/// Killed with its process group on drop; a scratch directory it was given
/// goes after it.
pub struct Server {
    group: Group,
    log: PathBuf,
    _dir: Option<TmpDir>,
}

/// How to start a [`Server`]: see [`Server::launch`].
pub struct Launch {
    cmd: Command,
    log: PathBuf,
    limit: Duration,
    dir: Option<TmpDir>,
}

impl Server {
    /// `ser -f <cfg> -E -DD` with stderr to `log` (created anew); more
    /// arguments and the environment with [`Launch`]'s methods, then
    /// [`Launch::start`].
    pub fn launch(cfg: &Path, log: &Path) -> Launch {
        let mut cmd = Command::new(SER);
        cmd.arg("-f")
            .arg(cfg)
            .args(["-E", "-DD"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Launch {
            cmd,
            log: log.to_owned(),
            limit: Duration::from_secs(10),
            dir: None,
        }
    }

    /// [`Server::launch`] with `cfg` written to `ser.cfg` in a fresh scratch
    /// directory (`tag` names it) that the server owns; the log is
    /// `stderr.log` there.
    pub fn launch_cfg(tag: &str, cfg: &str) -> Launch {
        let dir = TmpDir::new(tag);
        fs::write(dir.path("ser.cfg"), cfg).unwrap();
        let mut l = Server::launch(&dir.path("ser.cfg"), &dir.path("stderr.log"));
        l.dir = Some(dir);
        l
    }

    pub fn pid(&self) -> i32 {
        self.group.pid()
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the server has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.group.try_wait()
    }

    /// See [`Group::wait_exit`].
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.group.wait_exit(limit)
    }
}

impl Launch {
    /// More command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Environment variables for the server.
    pub fn envs(mut self, env: &[(&str, &str)]) -> Launch {
        self.cmd.envs(env.iter().copied());
        self
    }

    /// How long the server may take to log `ser started` (default 10 s).
    pub fn within(mut self, limit: Duration) -> Launch {
        self.limit = limit;
        self
    }

    /// Starts the server and waits for `ser started` in its log; panics with
    /// the log when it exits first or the time is up.
    pub fn start(mut self) -> Server {
        let log = fs::File::create(&self.log).unwrap();
        let group = Group::spawn(self.cmd.stderr(log)).unwrap();
        let mut s = Server {
            group,
            log: self.log,
            _dir: self.dir,
        };
        let end = Instant::now() + self.limit;
        while !s.log_text().contains("ser started") {
            let status = s.try_wait();
            assert!(
                Instant::now() < end && status.is_none(),
                "ser did not start ({status:?}):\n{}",
                s.log_text()
            );
            sleep(Duration::from_millis(20));
        }
        s
    }
}
