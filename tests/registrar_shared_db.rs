//! Two things a shared database must give, tested on the real binary:
//! two `ser` instances with usrloc `db_mode` 3 on one PostgreSQL see each
//! other's registrations and unregistrations at once; and a database made
//! by Kamailio's own schema scripts (package `kamailio-postgres-modules`,
//! `kamailio-sqlite-modules`) serves auth_db + usrloc unchanged.  Each test
//! prints a SKIP line and passes when its prerequisites are missing
//! (`postgresql` for initdb/pg_ctl, `postgresql-client` for psql).

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use ser_modules::auth::digest::Alg;
use ser_modules::db::{self, DbValue};
use support::pg::Cluster;
use support::proc::{free_udp_port, Server};
use support::registrar_db::{credentials, nonce_of};
use support::tmp::TmpDir;

/// Where Debian's kamailio packages put the schema scripts per driver.
const KAMAILIO_PG: &str = "/usr/share/kamailio/postgres";
const KAMAILIO_SQLITE: &str = "/usr/share/kamailio/db_sqlite";
/// The scripts making the tables auth_db and usrloc use (`version` first).
const SCRIPTS: [&str; 3] = [
    "standard-create.sql",
    "auth_db-create.sql",
    "usrloc-create.sql",
];

/// `ser` on UDP `port` running `cfg`: 2 receivers, 64 MB of shared memory.
fn start(tag: &str, port: u16, cfg: &str) -> Server {
    Server::launch_cfg(tag, cfg)
        .args([
            "-l",
            &format!("udp:127.0.0.1:{port}"),
            "-n",
            "2",
            "-m",
            "64",
        ])
        .within(Duration::from_secs(10))
        .start()
}

/// Sends `req` to `port` (again every 500 ms, 10 s at most) and returns the
/// first reply whole.
fn ask(sock: &UdpSocket, port: u16, req: &str) -> String {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        sock.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    panic!("no reply from 127.0.0.1:{port} to:\n{req}");
}

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or_default()
}

/// alice's REGISTER of `sip:alice@127.0.0.1:5999` with `extra` headers.
fn register(sock: &UdpSocket, port: u16, cseq: u32, extra: &str) -> String {
    let me = sock.local_addr().unwrap();
    let req = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-shared-{port}-{cseq};rport\r\n\
         From: <sip:alice@example.com>;tag=f{cseq}\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: shared-alice@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:alice@127.0.0.1:5999>\r\n\
         Max-Forwards: 70\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    );
    ask(sock, port, &req)
}

/// A MESSAGE to alice at `port`; the reply's first line.
fn look_up(port: u16, n: u32) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let req = format!(
        "MESSAGE sip:alice@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-look-{port}-{n};rport\r\n\
         From: <sip:tester@127.0.0.1>;tag=t{n}\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: look-{port}-{n}@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    status_line(&ask(&sock, port, &req)).to_owned()
}

#[test]
fn two_instances_with_db_mode_3_share_registrations() {
    let Some(pg) = Cluster::start() else { return };
    let url = pg.url();
    db::with(&url, |c| c.batch(db::schema("postgres").unwrap())).expect("our schema");
    db::close_all();

    let cfg = format!(
        "debug=2\nchildren=2\ndisable_tcp=yes\n\
         loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
         modparam(\"usrloc\", \"db_url\", \"{url}\")\n\
         modparam(\"usrloc\", \"db_mode\", 3)\n\
         route {{\n\
           if (method==\"REGISTER\") {{ if (!save(\"location\")) {{ sl_reply_error(); }} exit; }}\n\
           if (lookup(\"location\")) {{ sl_send_reply(\"299\", \"$ru\"); exit; }}\n\
           sl_send_reply(\"404\", \"nf\");\n\
         }}\n"
    );
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let _a = start("shared-a", pa, &cfg);
    let _b = start("shared-b", pb, &cfg);
    let found = "SIP/2.0 299 sip:alice@127.0.0.1:5999";

    assert_eq!(look_up(pb, 0), "SIP/2.0 404 nf", "nobody registered yet");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = register(&sock, pa, 1, "Expires: 600\r\n");
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(look_up(pb, 1), found, "B finds what A saved");
    assert_eq!(look_up(pa, 2), found, "A finds it too");

    let r = register(&sock, pb, 2, "Expires: 0\r\n");
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(look_up(pa, 3), "SIP/2.0 404 nf", "A sees B's unregister");
    assert_eq!(look_up(pb, 4), "SIP/2.0 404 nf");

    let rows = db::with(&url, |c| c.query("location", &["contact"], &[], None)).unwrap();
    assert!(
        rows.is_empty(),
        "the binding is gone from the table: {rows:?}"
    );
    db::close_all();
}

/// Whether Kamailio's schema scripts for a driver are installed.
fn kamailio_scripts(dir: &str) -> bool {
    let ok = SCRIPTS.iter().all(|f| Path::new(dir).join(f).is_file());
    if !ok {
        eprintln!("SKIP: Kamailio schema scripts not found in {dir}");
    }
    ok
}

/// Adds alice/secret to Kamailio's `subscriber` table.
fn add_alice(url: &str) {
    db::with(url, |c| {
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
    .expect("subscriber row");
    db::close_all();
}

/// A digest-authenticating registrar (auth_db + usrloc `db_mode` 1) on
/// `url`: alice is challenged, registers, and her binding is a row of the
/// `location` table.
fn digest_register_writes_location(tag: &str, url: &str) {
    let cfg = format!(
        "debug=2\nchildren=2\ndisable_tcp=yes\n\
         loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
         loadmodule \"auth\"\nloadmodule \"auth_db\"\n\
         modparam(\"usrloc|auth_db\", \"db_url\", \"{url}\")\n\
         modparam(\"usrloc\", \"db_mode\", 1)\n\
         route {{\n\
           if (!www_authorize(\"$td\", \"subscriber\")) {{\n\
             if ($rc == -1) {{ sl_reply_error(); exit; }}\n\
             www_challenge(\"$td\", \"0\"); exit;\n\
           }}\n\
           if (!save(\"location\")) {{ sl_reply_error(); }}\n\
         }}\n"
    );
    let port = free_udp_port();
    let s = start(tag, port, &cfg);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = register(&sock, port, 1, "");
    assert_eq!(
        status_line(&r),
        "SIP/2.0 401 Unauthorized",
        "{r}\n{}",
        s.log_text()
    );
    let ch = r
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .expect("a challenge");
    let nonce = nonce_of(ch);
    let r = register(&sock, port, 2, &credentials(&nonce, "secret"));
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}\n{}", s.log_text());

    let rows = db::with(url, |c| {
        c.query(
            "location",
            &["contact", "cseq", "domain"],
            &[("username", DbValue::Str("alice".into()))],
            None,
        )
    })
    .unwrap();
    db::close_all();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], DbValue::Str("sip:alice@127.0.0.1:5999".into()));
    assert_eq!(rows[0][1], DbValue::Int(2));
}

#[test]
fn kamailio_postgres_schema_works_unchanged() {
    if !kamailio_scripts(KAMAILIO_PG) {
        return;
    }
    let Some(pg) = Cluster::start() else { return };
    for f in SCRIPTS {
        if let Err(e) = pg.psql_file(&Path::new(KAMAILIO_PG).join(f)) {
            panic!("psql -f {f}: {e}");
        }
    }
    add_alice(&pg.url());
    digest_register_writes_location("kam-pg", &pg.url());
}

#[test]
fn kamailio_sqlite_schema_works_unchanged() {
    if !kamailio_scripts(KAMAILIO_SQLITE) {
        return;
    }
    let dir = TmpDir::new("kam-sqlite");
    let url = dir.sqlite_url("kamailio.db");
    for f in SCRIPTS {
        let sql = std::fs::read_to_string(Path::new(KAMAILIO_SQLITE).join(f)).unwrap();
        db::with(&url, |c| c.batch(&sql)).unwrap_or_else(|e| panic!("{f}: {e:?}"));
    }
    db::close_all();
    add_alice(&url);
    digest_register_writes_location("kam-sqlite", &url);
}
