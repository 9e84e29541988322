//! auth_db and usrloc (db_mode 1) against a real PostgreSQL: a throwaway
//! cluster in a temp dir (initdb + pg_ctl, as user `postgres` when run as
//! root) on 127.0.0.1 and a free port.  Skipped, with a message, when the
//! PostgreSQL server binaries are not installed (`apt-get install -y
//! postgresql`).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use ser::route::{self, Env, Listen, LoadOptions, MsgCtx, Myself, Proto, Recorder, Script};
use ser_modules::auth::digest::Alg;
use ser_modules::db::{self, DbValue};
use ser_parser::{render, ParseOptions};
use ser_sip::SipMsg;

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

/// A cluster that is stopped and removed on drop.
struct Cluster {
    dir: PathBuf,
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
        let dir = std::env::temp_dir().join(format!("ser-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let c = Cluster { dir, pg_ctl, port };
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&c.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("SKIP: cannot hand {} to user postgres", c.dir.display());
                return None;
            }
        }
        let data = c.dir.join("data");
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
                std::fs::read_to_string(c.dir.join("log")).unwrap_or_default()
            );
            return None;
        }
        Some(c)
    }

    fn pg(&self, action: &str) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut cmd = self.cmd(&self.pg_ctl);
        cmd.arg("-D").arg(self.dir.join("data")).args([
            "-w",
            "-t",
            "30",
            "-m",
            "immediate",
            "-o",
            &opts,
            "-l",
        ]);
        cmd.arg(self.dir.join("log"))
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
fn auth_and_write_through_usrloc_on_postgresql() {
    let Some(pg) = Cluster::start() else { return };
    let url = pg.url();
    db::with(&url, |c| {
        c.batch(db::schema("postgres").unwrap())?;
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

    // Database down: an error reply (500), not a crash; back up: reconnects.
    assert!(pg.pg("stop"));
    let (st, _) = run(&s, register("alice", 4, &credentials(&nonce, "secret")));
    assert_eq!(st, vec![500]);
    assert!(pg.pg("start"));
    let (st, ch) = run(&s, register("alice", 5, ""));
    assert_eq!(st, vec![401]);
    let (st, _) = run(
        &s,
        register("alice", 6, &credentials(&nonce_of(&ch[0]), "secret")),
    );
    assert_eq!(st, vec![200], "reconnected after the restart");
}
