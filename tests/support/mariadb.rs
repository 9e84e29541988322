//! A throwaway MariaDB for whole-binary tests: mariadb-install-db into a
//! temp dir, mariadbd with `--skip-grant-tables` (any user and password
//! get in) on 127.0.0.1 and a free port, as user `mysql` when run as root.
//! `Server::start` returns None, with a message, when the binaries are not
//! installed or ser-modules lacks its `mysql` feature.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use ser_modules::db::{self, DbError};

use super::proc::{free_port, Group};
use super::registrar_db::is_root;
use super::tmp::TmpDir;

fn find(names: &[&str]) -> Option<PathBuf> {
    let dirs = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| PathBuf::from(d).join(n)))
        .find(|p| p.is_file())
}

/// A throwaway MariaDB, killed and removed on drop (in this order).
pub struct Server {
    _daemon: Group,
    dir: TmpDir,
    port: u16,
}

impl Server {
    pub fn start() -> Option<Server> {
        if matches!(
            db::Conn::open("mysql://root@127.0.0.1:1/x"),
            Err(DbError::NotBuilt(_))
        ) {
            eprintln!("SKIP: ser-modules built without the `mysql` feature");
            return None;
        }
        let (Some(install), Some(daemon)) = (
            find(&["mariadb-install-db", "mysql_install_db"]),
            find(&["mariadbd", "mysqld"]),
        ) else {
            eprintln!("SKIP: MariaDB/MySQL server binaries not installed");
            return None;
        };
        let dir = TmpDir::new("my");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "mysql:"])
                .arg(dir.dir())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("SKIP: cannot hand {} to user mysql", dir.dir().display());
                return None;
            }
        }
        let data = dir.path("data");
        let out = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIP: {} failed: {}",
                install.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path("log")).ok()?;
        let daemon = Group::spawn(
            Command::new(&daemon)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", dir.path("sock").display()))
                .arg(format!("--pid-file={}", dir.path("pid").display()))
                .arg(format!("--port={port}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--user=mysql",
                    "--skip-grant-tables",
                    "--skip-log-bin",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )
        .ok()?;
        let s = Server {
            _daemon: daemon,
            dir,
            port,
        };
        let up = (0..300).any(|_| {
            sleep(Duration::from_millis(100));
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            eprintln!(
                "SKIP: mariadbd did not start: {}",
                std::fs::read_to_string(s.dir.path("log")).unwrap_or_default()
            );
            return None;
        }
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/ser", self.port)
    }

    /// The port mariadbd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}
