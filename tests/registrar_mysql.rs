//! auth_db and usrloc (db_mode 1) against a real MySQL-compatible server: a
//! throwaway MariaDB in a temp dir (mariadb-install-db + mariadbd with
//! `--skip-grant-tables`, as user `mysql` when run as root) on 127.0.0.1
//! and a free port.  Skipped, with a message, when the server binaries are
//! not installed (`apt-get install -y mariadb-server`) or ser-modules is
//! built without its `mysql` feature.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::sleep;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use ser::route::{self, Env, Listen, LoadOptions, MsgCtx, Myself, Proto, Recorder, Script};
use ser_modules::auth::digest::Alg;
use ser_modules::db::{self, DbError, DbValue};
use ser_parser::{render, ParseOptions};
use ser_sip::SipMsg;

fn find(names: &[&str]) -> Option<PathBuf> {
    let dirs = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| PathBuf::from(d).join(n)))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A server that is killed and removed on drop.
struct Server {
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl Server {
    fn start() -> Option<Server> {
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
        let dir = std::env::temp_dir().join(format!("ser-my-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "mysql:"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("SKIP: cannot hand {} to user mysql", dir.display());
                return None;
            }
        }
        let data = dir.join("data");
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
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let log = std::fs::File::create(dir.join("log")).ok()?;
        let child = Command::new(&daemon)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--user=mysql",
                "--skip-grant-tables",
                "--skip-log-bin",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .ok()?;
        let s = Server {
            dir,
            child: Some(child),
            port,
        };
        let up = (0..300).any(|_| {
            sleep(Duration::from_millis(100));
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            eprintln!(
                "SKIP: mariadbd did not start: {}",
                std::fs::read_to_string(s.dir.join("log")).unwrap_or_default()
            );
            return None;
        }
        Some(s)
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/ser", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = i32::try_from(c.id()).unwrap_or(0);
            if pid > 1 {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn load(cfg: &str) -> Script {
    let _ = ser_shm::init_once(64 << 20);
    let parsed = ser_parser::parse_str("pg.cfg", cfg, &ParseOptions::default()).expect("parses");
    let script = route::load(&parsed, &LoadOptions::default()).unwrap_or_else(|ds| {
        panic!(
            "config rejected:\n{}",
            ds.iter()
                .map(|d| render(&parsed.sources, d))
                .collect::<String>()
        )
    });
    script.init_modules().expect("modules init");
    script
}

fn register(user: &str, cseq: u32, extra: &str) -> SipMsg {
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-pg-{cseq}\r\n\
         From: <sip:{user}@example.com>;tag=f{cseq}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: pg-{user}@h\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@192.0.2.10:5070>\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    );
    SipMsg::parse(text.into_bytes()).expect("REGISTER parses")
}

/// Runs a request; returns the reply statuses and the WWW-Authenticate values.
fn run(script: &Script, msg: SipMsg) -> (Vec<u16>, Vec<String>) {
    let rec = Arc::new(Recorder::default());
    let mut myself = Myself::default();
    myself.add("127.0.0.1", Some(5060));
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let env = Env::new(
        rec.clone(),
        myself,
        vec![Listen {
            proto: Proto::Udp,
            addr: local,
            advertise: None,
        }],
    );
    let mut ctx = MsgCtx::new(
        msg,
        &env,
        "192.0.2.10:5070".parse().unwrap(),
        local,
        Proto::Udp,
    );
    script.run_request(&mut ctx);
    let replies: Vec<SipMsg> = rec
        .take()
        .into_iter()
        .filter_map(|(_, b)| SipMsg::parse(b).ok())
        .collect();
    let st = replies.iter().filter_map(|m| m.status()).collect();
    let ch = replies
        .iter()
        .flat_map(|m| {
            m.find_by_name(b"WWW-Authenticate")
                .map(|h| String::from_utf8_lossy(m.header_body(h)).into_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    (st, ch)
}

fn credentials(nonce: &str, password: &str) -> String {
    let h = |s: String| Alg::Md5.h(&[s.as_bytes()]);
    let ha1 = h("alice:example.com:".to_owned() + password);
    let ha2 = h("REGISTER:sip:example.com".to_owned());
    let resp = h(format!("{ha1}:{nonce}:{ha2}"));
    format!(
        "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", \
         uri=\"sip:example.com\", response=\"{resp}\"\r\n"
    )
}

fn nonce_of(ch: &str) -> String {
    ch.split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

#[test]
fn auth_and_write_through_usrloc_on_mysql() {
    let Some(my) = Server::start() else { return };
    let url = my.url();
    db::with(&format!("mysql://root@127.0.0.1:{}/mysql", my.port), |c| {
        c.batch("CREATE DATABASE ser")
    })
    .expect("create database");
    db::with(&url, |c| {
        c.batch(db::schema("mysql").unwrap())?;
        c.check_version("subscriber", 7)?;
        c.insert(
            "subscriber",
            &[
                ("username", DbValue::Str("alice".into())),
                ("domain", DbValue::Str("example.com".into())),
                ("password", DbValue::Str("secret".into())),
                (
                    "ha1",
                    DbValue::Str(Alg::Md5.h(&[b"alice:example.com:secret"])),
                ),
            ],
        )
    })
    .expect("schema and subscriber");

    let cfg = format!(
        "loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\nloadmodule \"auth\"\nloadmodule \"auth_db\"\n\
         modparam(\"usrloc|auth_db\", \"db_url\", \"{url}\")\n\
         modparam(\"usrloc\", \"db_mode\", 1)\n\
         route {{\n\
           if (!www_authorize(\"$td\", \"subscriber\")) {{\n\
             if ($rc == -1) {{ sl_reply_error(); exit; }}\n\
             www_challenge(\"$td\", \"0\"); exit;\n\
           }}\n\
           save(\"location\");\n\
         }}\n"
    );
    let s = load(&cfg);
    let (st, ch) = run(&s, register("alice", 1, ""));
    assert_eq!(st, vec![401]);
    let nonce = nonce_of(&ch[0]);
    let (st, _) = run(&s, register("alice", 2, &credentials(&nonce, "secret")));
    assert_eq!(st, vec![200]);
    let (st, _) = run(&s, register("alice", 3, &credentials(&nonce, "wrong")));
    assert_eq!(st, vec![401]);

    // Write-through: the binding is a row, with typed columns read back.
    let rows = db::with(&url, |c| {
        c.query(
            "location",
            &["contact", "cseq", "expires", "q"],
            &[("username", DbValue::Str("alice".into()))],
            None,
        )
    })
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], DbValue::Str("sip:alice@192.0.2.10:5070".into()));
    assert_eq!(rows[0][1], DbValue::Int(2));
    let exp = rows[0][2].as_datetime() - ser_modules::usrloc::now() as i64;
    assert!((3500..=3600).contains(&exp), "expires in {exp}s");
}
