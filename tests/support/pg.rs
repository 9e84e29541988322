//! A throwaway PostgreSQL cluster for whole-binary tests: initdb + pg_ctl
//! in a temp dir (as user `postgres` when run as root), listening on
//! 127.0.0.1 and a free port, trust authentication; stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::proc::free_port;
use super::registrar_db::is_root;
use super::tmp::TmpDir;

/// `name` on PATH or in /usr/lib/postgresql/*/bin (newest first).
pub fn find_bin(name: &str) -> Option<PathBuf> {
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
pub struct Cluster {
    dir: TmpDir,
    pg_ctl: PathBuf,
    pub port: u16,
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

    /// A running cluster, or None after printing why (a SKIP line).
    pub fn start() -> Option<Cluster> {
        let (Some(initdb), Some(pg_ctl)) = (find_bin("initdb"), find_bin("pg_ctl")) else {
            eprintln!("SKIP: PostgreSQL server binaries (initdb, pg_ctl) not installed");
            return None;
        };
        let c = Cluster {
            dir: TmpDir::new("pg"),
            pg_ctl,
            port: free_port(),
        };
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
        let out = c
            .cmd(&initdb)
            .arg("-D")
            .arg(c.dir.path("data"))
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

    /// `pg_ctl <action>` (start, stop) on this cluster; whether it worked.
    pub fn pg(&self, action: &str) -> bool {
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

    /// The `db_url` of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs the SQL file `file` with psql (stopping at the first error);
    /// psql's stderr when it fails.
    pub fn psql_file(&self, file: &Path) -> Result<(), String> {
        let psql = find_bin("psql").ok_or("psql not installed")?;
        let out = Command::new(psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-f")
            .arg(file)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg("stop");
    }
}
