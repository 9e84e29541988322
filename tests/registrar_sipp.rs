//! The real `ser` binary as a registrar, driven by sipp (the bench's
//! uac_register.xml scenario): every REGISTER gets a 200; requests to the
//! users, read by whichever UDP worker gets them, find the contacts other
//! workers saved (the location table is in shm); with usrloc `db_mode` 1 a
//! killed and restarted server still knows every registration.  Skipped
//! when sipp is not installed.

mod support;

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::proc::{free_udp_port, Server};
use support::tmp::TmpDir;

fn scenario() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../shared/bench/scenarios/uac_register.xml"),
        PathBuf::from("/work/shared/bench/scenarios/uac_register.xml"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn have_sipp() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `ser` with `ser.cfg` in `dir` on UDP `port`: 3 receivers, 64 MB of
/// shared memory, its log in `ser.log`.
fn start(dir: &TmpDir, port: u16) -> Server {
    Server::launch(&dir.path("ser.cfg"), &dir.path("ser.log"))
        .args([
            "-l",
            &format!("udp:127.0.0.1:{port}"),
            "-n",
            "3",
            "-m",
            "64",
        ])
        .within(Duration::from_secs(5))
        .start()
}

fn config(usrloc: &str) -> String {
    format!(
        "debug=2\nchildren=2\ndisable_tcp=yes\n\
         loadmodule \"sl\"\nloadmodule \"maxfwd\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
         {usrloc}\n\
         route {{\n\
           if (!mf_process_maxfwd_header(\"10\")) {{ sl_send_reply(\"483\", \"Too Many Hops\"); exit; }}\n\
           if (method==\"REGISTER\") {{ if (!save(\"location\")) {{ sl_reply_error(); }} exit; }}\n\
           if (lookup(\"location\")) {{ sl_send_reply(\"299\", \"$ru\"); exit; }}\n\
           sl_send_reply(\"404\", \"Not Found\");\n\
         }}\n"
    )
}

/// A SQLite database with our schema in `dir`, closed here so that only
/// the server holds it; its URL.
fn schema_db(dir: &TmpDir) -> String {
    let url = dir.sqlite_url("ser.db");
    ser_modules::db::with(&url, |c| {
        c.batch(ser_modules::db::schema("sqlite").unwrap())
    })
    .unwrap();
    ser_modules::db::close_all();
    url
}

/// Registers `n` users with sipp; true when every REGISTER got a 200.
fn sipp_register(scn: &Path, dir: &Path, port: u16, n: usize) -> bool {
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..n {
        csv.push_str(&format!("user{i};127.0.0.1:5999;\n"));
    }
    fs::write(dir.join("users.csv"), csv).unwrap();
    Command::new("timeout")
        .args(["60", "sipp", "-sf"])
        .arg(scn)
        .arg("-inf")
        .arg(dir.join("users.csv"))
        .args(["-m", &n.to_string(), "-r", "250", "-i", "127.0.0.1"])
        .args(["-timeout", "40", "-nostdin"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Sends a MESSAGE to `user{i}` and returns the reply's first line.
fn ask(port: u16, i: usize) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let req = format!(
        "MESSAGE sip:user{i}@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-look-{i};rport\r\n\
         From: <sip:tester@127.0.0.1>;tag=t{i}\r\n\
         To: <sip:user{i}@127.0.0.1>\r\n\
         Call-ID: look-{i}@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        sock.send_to(req.as_bytes(), ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            return text.lines().next().unwrap_or_default().to_owned();
        }
    }
    panic!("no reply for user{i}");
}

fn check_lookups(port: u16, registered: usize) {
    for i in [0, 1, 2, 3, registered / 2, registered - 1, registered + 277] {
        let first = ask(port, i);
        if i < registered {
            assert_eq!(first, format!("SIP/2.0 299 sip:user{i}@127.0.0.1:5999"));
        } else {
            assert_eq!(first, "SIP/2.0 404 Not Found");
        }
    }
}

fn prerequisites() -> Option<PathBuf> {
    let Some(scn) = scenario() else {
        eprintln!("SKIP: bench scenario uac_register.xml not found");
        return None;
    };
    if !have_sipp() {
        eprintln!("SKIP: sipp not installed");
        return None;
    }
    Some(scn)
}

#[test]
fn sipp_registers_500_users_and_every_worker_finds_them() {
    let Some(scn) = prerequisites() else { return };
    let dir = TmpDir::new("reg-sipp-mem");
    fs::write(
        dir.path("ser.cfg"),
        config("modparam(\"usrloc\", \"db_mode\", 0)"),
    )
    .unwrap();
    let port = free_udp_port();
    let _ser = start(&dir, port);
    assert!(
        sipp_register(&scn, dir.dir(), port, 500),
        "sipp: not every REGISTER got a 200"
    );
    check_lookups(port, 500);
}

#[test]
fn write_through_registrations_survive_a_killed_server() {
    let Some(scn) = prerequisites() else { return };
    let dir = TmpDir::new("reg-sipp-db1");
    let url = schema_db(&dir);
    let params = format!(
        "modparam(\"usrloc\", \"db_mode\", 1)\nmodparam(\"usrloc\", \"db_url\", \"{url}\")"
    );
    fs::write(dir.path("ser.cfg"), config(&params)).unwrap();
    let port = free_udp_port();
    let ser = start(&dir, port);
    assert!(
        sipp_register(&scn, dir.dir(), port, 200),
        "sipp: not every REGISTER got a 200"
    );
    check_lookups(port, 200);
    // SIGKILL: no shutdown flush; write-through must have stored every binding.
    drop(ser);
    let port = free_udp_port();
    let _ser = start(&dir, port);
    check_lookups(port, 200);
}

#[test]
fn write_back_registrations_are_flushed_at_shutdown() {
    let Some(scn) = prerequisites() else { return };
    let dir = TmpDir::new("reg-sipp-db2");
    let url = schema_db(&dir);
    let params = format!(
        "modparam(\"usrloc\", \"db_mode\", 2)\nmodparam(\"usrloc\", \"db_url\", \"{url}\")\n\
         modparam(\"usrloc\", \"timer_interval\", 3600)"
    );
    fs::write(dir.path("ser.cfg"), config(&params)).unwrap();
    let port = free_udp_port();
    let mut ser = start(&dir, port);
    assert!(
        sipp_register(&scn, dir.dir(), port, 100),
        "sipp: not every REGISTER got a 200"
    );
    // Graceful stop: usrloc's destroy writes the pending changes.
    let _ = kill(Pid::from_raw(ser.pid()), Signal::SIGTERM);
    let stopped = ser.wait_exit(Duration::from_secs(5)).is_some();
    assert!(stopped, "ser did not stop on SIGTERM");
    drop(ser);
    let rows =
        ser_modules::db::with(&url, |c| c.query("location", &["contact"], &[], None)).unwrap();
    assert_eq!(rows.len(), 100);
    let port = free_udp_port();
    let _ser = start(&dir, port);
    check_lookups(port, 100);
}

/// REGISTER, 401 with a digest challenge, REGISTER with sipp's own
/// Authorization (an independent digest implementation; credentials from
/// `-au`/`-ap`), 200.
const AUTH_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register_with_digest">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@example.com>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field0]@127.0.0.1:5999>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@example.com>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[field0]@127.0.0.1:5999>
      [authentication]
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

#[test]
fn sipp_digest_authentication_against_the_subscriber_table() {
    if prerequisites().is_none() {
        return;
    }
    let dir = TmpDir::new("reg-sipp-auth");
    let url = dir.sqlite_url("ser.db");
    let n = 100;
    ser_modules::db::with(&url, |c| {
        c.batch(ser_modules::db::schema("sqlite").unwrap())?;
        for i in 0..n {
            c.insert(
                "subscriber",
                &[
                    (
                        "username",
                        ser_modules::db::DbValue::Str(format!("user{i}")),
                    ),
                    (
                        "domain",
                        ser_modules::db::DbValue::Str("example.com".into()),
                    ),
                    ("password", ser_modules::db::DbValue::Str(format!("pw{i}"))),
                ],
            )?;
        }
        Ok(())
    })
    .unwrap();
    ser_modules::db::close_all();
    let cfg = format!(
        "debug=2\nchildren=2\ndisable_tcp=yes\n\
         loadmodule \"sl\"\nloadmodule \"usrloc\"\nloadmodule \"registrar\"\n\
         loadmodule \"auth\"\nloadmodule \"auth_db\"\n\
         modparam(\"auth_db\", \"db_url\", \"{url}\")\n\
         modparam(\"auth_db\", \"calculate_ha1\", yes)\n\
         modparam(\"auth_db\", \"password_column\", \"password\")\n\
         route {{\n\
           if (method==\"REGISTER\") {{\n\
             if (!www_authorize(\"$td\", \"subscriber\")) {{ www_challenge(\"$td\", \"1\"); exit; }}\n\
             if ($au != $tU) {{ sl_send_reply(\"403\", \"Forbidden auth ID\"); exit; }}\n\
             if (!save(\"location\")) {{ sl_reply_error(); }}\n\
             exit;\n\
           }}\n\
           if (lookup(\"location\")) {{ sl_send_reply(\"299\", \"$ru\"); exit; }}\n\
           sl_send_reply(\"404\", \"Not Found\");\n\
         }}\n"
    );
    fs::write(dir.path("ser.cfg"), cfg).unwrap();
    fs::write(dir.path("auth.xml"), AUTH_SCENARIO).unwrap();
    // sipp takes one user's credentials: every call registers user7 anew,
    // each answering its own challenge (fresh nonce, qop=auth).
    fs::write(dir.path("auth.csv"), "SEQUENTIAL\nuser7;\n").unwrap();
    let port = free_udp_port();
    let _ser = start(&dir, port);
    let ok = Command::new("timeout")
        .args(["60", "sipp", "-sf"])
        .arg(dir.path("auth.xml"))
        .arg("-inf")
        .arg(dir.path("auth.csv"))
        .args(["-au", "user7", "-ap", "pw7"])
        .args(["-m", "100", "-r", "100", "-i", "127.0.0.1"])
        .args(["-timeout", "40", "-nostdin"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir.dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "sipp: not every authenticated REGISTER got a 200");
    assert_eq!(ask(port, 7), "SIP/2.0 299 sip:user7@127.0.0.1:5999");
    assert_eq!(ask(port, 8), "SIP/2.0 404 Not Found");
}
