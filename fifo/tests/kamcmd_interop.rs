//! The real kamcmd, and our sercmd, against our ctl server: same bytes on stdout.

mod common;

use common::*;
use ser_fifo::ctl::CtlConfig;

const STRUCT_TEXT: &str = "{\n\tnow: Sun Nov 29 16:00:00 2026\n\tuptime: 42\n\tload: 1.500000\n\
                           \tnested: {\n\t\ta: 1\n\t\tb: x\n\t}\n}\n";

/// (arguments, expected stdout, call faults)
fn cases() -> Vec<(Vec<&'static str>, String, bool)> {
    let methods = "system.listMethods\nsystem.methodHelp\nsystem.methodSignature\ntest.struct\n\
                   test.array\ntest.fault\ntest.echo\ntest.add\ntest.ps\ntest.big\ntest.panic\n";
    vec![
        (vec!["test.struct"], STRUCT_TEXT.to_owned(), false),
        (
            vec!["test.array"],
            "{\n\t1\n\ttwo\n\t3\n}\n".to_owned(),
            false,
        ),
        (
            vec!["test.echo", "abc", "12", "s:34", "1.25"],
            "abc\n12\n34\n1.250000\n".to_owned(),
            false,
        ),
        (vec!["test.add", "2", "40"], "42\n".to_owned(), false),
        (
            vec!["test.ps"],
            "100\nmain process - attendant\n101\nudp receiver child=0\n".to_owned(),
            false,
        ),
        (
            vec!["-f", "%v\\t%v\\n", "test.ps"],
            "100\tmain process - attendant\n101\tudp receiver child=0\n".to_owned(),
            false,
        ),
        (
            vec!["test.fault"],
            "error: 499 - test fault\n".to_owned(),
            true,
        ),
        (
            vec!["test.add", "x", "1"],
            "error: 400 - Invalid parameter 1: expected integer, got \"x\"\n".to_owned(),
            true,
        ),
        (
            vec!["test.panic"],
            "error: 500 - internal error\n".to_owned(),
            true,
        ),
        (vec!["system.listMethods"], methods.to_owned(), false),
        (vec!["ls"], methods.to_owned(), false),
        (
            vec!["system.methodHelp", "test.echo"],
            "Echoes its parameters.\n".to_owned(),
            false,
        ),
        (
            vec!["system.methodSignature", "test.echo"],
            "error: 500 - Not Implemented Yet\n".to_owned(),
            true,
        ),
        (
            vec!["no.such"],
            "error: 500 - command no.such not found\n".to_owned(),
            true,
        ),
    ]
}

#[test]
fn kamcmd_and_sercmd_print_our_replies_identically() {
    let dir = temp_dir("kamcmd");
    let addr = format!("unixs:{}", dir.join("ctl").display());
    let _srv = TestServer::start(std::slice::from_ref(&addr), CtlConfig::default());
    let have_kamcmd = kamcmd_present();
    for (args, want, faults) in cases() {
        if have_kamcmd {
            let (out, code) = ctl_cmd(KAMCMD, &addr, &args);
            assert_eq!(out, want, "kamcmd {args:?}");
            assert_eq!(code, 0, "kamcmd exits 0 even on faults");
        }
        let (out, code) = ctl_cmd(SERCMD, &addr, &args);
        assert_eq!(out, want, "sercmd {args:?}");
        assert_eq!(
            code,
            if faults { 1 } else { 0 },
            "sercmd exit code {args:?}"
        );
    }
}

#[test]
fn sercmd_extras_and_errors() {
    let dir = temp_dir("sercmd");
    let addr = format!("unixs:{}", dir.join("ctl").display());
    let _srv = TestServer::start(std::slice::from_ref(&addr), CtlConfig::default());
    // Negative numbers and i:/s: prefixes (kamcmd's getopt would take "-5" for an option).
    let (out, code) = ctl_cmd(SERCMD, &addr, &["test.echo", "-5", "i:7", "s:-5"]);
    assert_eq!((out.as_str(), code), ("-5\n7\n-5\n", 0));
    // A reply bigger than kamcmd's 128 KiB buffer is refused by the server's limit.
    let (out, code) = ctl_cmd(SERCMD, &addr, &["test.big", "200000"]);
    assert_eq!((out.as_str(), code), ("error: 500 - reply too big\n", 1));
    let (out, _) = ctl_cmd(SERCMD, &addr, &["test.big", "100000"]);
    assert_eq!(out.len(), 100_001);
    // help for aliases, builtins and methods.
    let (out, _) = ctl_cmd(SERCMD, &addr, &["help", "ps"]);
    assert_eq!(
        out,
        "ps is an alias for core.ps with reply formatting: \"%v\\t%v\\n\"\n"
    );
    let (out, _) = ctl_cmd(SERCMD, &addr, &["help", "test.add"]);
    assert_eq!(out, "Adds two integers.\n");
    // Connection errors: clear message on stderr, exit code 2.
    let missing = format!("unixs:{}", dir.join("nothing-here").display());
    let o = run(
        std::process::Command::new(SERCMD).args(["-s", &missing, "core.uptime"]),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ERROR: core.uptime:") && err.contains("nothing-here"),
        "{err}"
    );
    // Usage errors exit 2.
    let o = run(
        std::process::Command::new(SERCMD).args(["-s", "tcp:h:x", "x"]),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn sercmd_interactive_reads_stdin_line_by_line() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = temp_dir("interactive");
    let addr = format!("unixs:{}", dir.join("ctl").display());
    let _srv = TestServer::start(std::slice::from_ref(&addr), CtlConfig::default());
    let mut child = Command::new(SERCMD)
        .args(["-s", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"test.add 1 2\n\n   test.echo hello\nps\nquit\ntest.add 5 5\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // "ps" is an alias for core.ps, which the test server lacks: a fault, then quit.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "3\nhello\nerror: 500 - command core.ps not found\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn all_transports_with_sercmd_and_kamcmd() {
    let dir = temp_dir("transports");
    let tcp_port = free_port();
    let udp_port = free_port();
    let addrs = vec![
        format!("unixd:{}", dir.join("dgram").display()),
        format!("tcp:127.0.0.1:{tcp_port}"),
        format!("udp:127.0.0.1:{udp_port}"),
    ];
    let _srv = TestServer::start(&addrs, CtlConfig::default());
    let have_kamcmd = kamcmd_present();
    for a in &addrs {
        let (out, code) = ctl_cmd(SERCMD, a, &["test.struct"]);
        assert_eq!((out.as_str(), code), (STRUCT_TEXT, 0), "sercmd via {a}");
        if have_kamcmd {
            let (out, code) = ctl_cmd(KAMCMD, a, &["test.struct"]);
            assert_eq!((out.as_str(), code), (STRUCT_TEXT, 0), "kamcmd via {a}");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
