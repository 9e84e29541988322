//! auth_db and usrloc (db_mode 1) against a real PostgreSQL: a throwaway
//! cluster in a temp dir (initdb + pg_ctl, as user `postgres` when run as
//! root) on 127.0.0.1 and a free port.  Skipped, with a message, when the
//! PostgreSQL server binaries are not installed (`apt-get install -y
//! postgresql`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::proc::free_port;
use support::registrar_db::{
    auth_and_write_through, credentials, is_root, nonce_of, register, run,
};
use support::tmp::TmpDir;

fn find_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        v.sort();
        dirs.extend(v.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A cluster that is stopped and removed on drop.
struct Cluster {
    dir: TmpDir,
    pg_ctl: PathBuf,
    port: u16,
}

impl Cluster {
    fn cmd(&self, bin: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        }
    }

    fn start() -> Option<Cluster> {
        let (Some(initdb), Some(pg_ctl)) = (find_bin("initdb"), find_bin("pg_ctl")) else {
            eprintln!("SKIP: PostgreSQL server binaries (initdb, pg_ctl) not installed");
            return None;
        };
        let dir = TmpDir::new("pg");
        let port = free_port();
        let c = Cluster { dir, pg_ctl, port };
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(c.dir.dir())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "SKIP: cannot hand {} to user postgres",
                    c.dir.dir().display()
                );
                return None;
            }
        }
        let data = c.dir.path("data");
        let out = c
            .cmd(&initdb)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-N"])
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIP: initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        if !c.pg("start") {
            eprintln!(
                "SKIP: pg_ctl start failed: {}",
                std::fs::read_to_string(c.dir.path("log")).unwrap_or_default()
            );
            return None;
        }
        Some(c)
    }

    fn pg(&self, action: &str) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.dir().display()
        );
        let mut cmd = self.cmd(&self.pg_ctl);
        cmd.arg("-D").arg(self.dir.path("data")).args([
            "-w",
            "-t",
            "30",
            "-m",
            "immediate",
            "-o",
            &opts,
            "-l",
        ]);
        cmd.arg(self.dir.path("log"))
            .arg(action)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg("stop");
    }
}

#[test]
fn auth_and_write_through_usrloc_on_postgresql() {
    let Some(pg) = Cluster::start() else { return };
    let (s, nonce) = auth_and_write_through(&pg.url(), "postgres");

    // Database down: an error reply (500), not a crash; back up: reconnects.
    assert!(pg.pg("stop"));
    let r = run(&s, register("alice", 4, &credentials(&nonce, "secret")));
    assert_eq!(r.status(), vec![500]);
    assert!(pg.pg("start"));
    let r = run(&s, register("alice", 5, ""));
    assert_eq!(r.status(), vec![401]);
    let nonce = nonce_of(&r.header("WWW-Authenticate")[0]);
    let r = run(&s, register("alice", 6, &credentials(&nonce, "secret")));
    assert_eq!(r.status(), vec![200], "reconnected after the restart");
}
