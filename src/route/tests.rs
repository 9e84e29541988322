//! Unit tests of the interpreter: expression evaluation, return-code
//! semantics, switch fall-through and while limits, on tiny scripts.

use std::sync::Arc;

use ser_modules::runtime::pvar::parse_pv;
use ser_modules::Value;
use ser_parser::ParseOptions;
use ser_sip::SipMsg;

use super::{load, Env, LoadOptions, MsgCtx, Myself, Outcome, Proto, Recorder, Script};

fn script_with(cfg: &str, opts: LoadOptions) -> Script {
    let parsed = ser_parser::parse_str("unit.cfg", cfg, &ParseOptions::default())
        .unwrap_or_else(|d| panic!("{cfg}: {d:?}"));
    load(&parsed, &opts).unwrap_or_else(|d| panic!("{cfg}: {d:?}"))
}

fn msg() -> SipMsg {
    SipMsg::parse(
        b"OPTIONS sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
          From: <sip:bob@example.org>;tag=a\r\nTo: <sip:alice@example.com>\r\nCall-ID: c\r\n\
          CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    )
    .unwrap()
}

/// Run `body` as the main route; return the outcome and `$var(r)`.
fn run_opts(body: &str, opts: LoadOptions) -> (Outcome, Value, i32) {
    let s = script_with(
        &format!("route {{ {body} }}\nroute[R] {{ return($var(ret)); }}"),
        opts,
    );
    let env = Env::new(Arc::new(Recorder::default()), Myself::default(), Vec::new());
    let mut ctx = MsgCtx::new(
        msg(),
        &env,
        "10.0.0.1:5060".parse().unwrap(),
        "10.0.0.2:5060".parse().unwrap(),
        Proto::Udp,
    );
    let out = s.run_request(&mut ctx);
    (out, ctx.get_pv(&parse_pv("$var(r)").unwrap()), ctx.retcode)
}

fn eval(expr: &str) -> Value {
    run_opts(&format!("$var(r) = {expr};"), LoadOptions::default()).1
}

#[test]
fn arithmetic_and_concat() {
    assert_eq!(eval("1 + 2 * 3"), Value::Int(7));
    assert_eq!(eval("(1 + 2) * 3"), Value::Int(9));
    assert_eq!(eval("7 / 2"), Value::Int(3));
    assert_eq!(eval("7 % 4"), Value::Int(3));
    assert_eq!(eval("6 & 3"), Value::Int(2));
    assert_eq!(eval("6 | 3"), Value::Int(7));
    assert_eq!(eval("\"a\" + \"b\" + 1"), Value::from("ab1"));
    assert_eq!(
        eval("\"sip:\" + $rU + \"@\" + $rd"),
        Value::from("sip:alice@example.com")
    );
    assert_eq!(eval("-5 + 2"), Value::Int(-3));
    // casts: the left operand's type decides
    assert_eq!(eval("(int)\"42\" + 1"), Value::Int(43));
    assert_eq!(eval("(str)42 + 1"), Value::from("421"));
    assert_eq!(eval("0 + \"7\""), Value::Int(7));
    // division by zero is an error value, not a crash
    assert_eq!(eval("1 / 0"), Value::Null);
}

#[test]
fn comparisons_and_logic() {
    assert_eq!(eval("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3"), Value::Int(1));
    assert_eq!(eval("\"abc\" == \"abc\""), Value::Int(1));
    assert_eq!(eval("\"abc\" != \"abd\""), Value::Int(1));
    assert_eq!(eval("$rU == \"alice\" || 0"), Value::Int(1));
    assert_eq!(eval("!($rU == \"alice\")"), Value::Int(0));
    assert_eq!(eval("$fU =~ \"^B\""), Value::Int(1)); // case-insensitive as SER
    assert_eq!(eval("$fU !~ \"^x\""), Value::Int(1));
    assert_eq!(eval("$hdr(X-None) == $null"), Value::Int(1));
    assert_eq!(eval("$rU == $null"), Value::Int(0));
    assert_eq!(eval("strempty($hdr(X-None))"), Value::Int(1));
    assert_eq!(eval("\"10\" == 10"), Value::Int(1));
}

#[test]
fn return_codes() {
    // a route's return value becomes $? ; negative is false, positive true
    let (_, r, _) = run_opts(
        "$var(ret) = -3; route(R); $var(r) = $?;",
        LoadOptions::default(),
    );
    assert_eq!(r, Value::Int(-3));
    let (_, r, _) = run_opts(
        "$var(ret) = -1; if (route(R)) $var(r) = \"t\"; else $var(r) = \"f\";",
        LoadOptions::default(),
    );
    assert_eq!(r, Value::from("f"));
    let (_, r, _) = run_opts(
        "$var(ret) = 5; if (route(R)) $var(r) = \"t\"; else $var(r) = \"f\";",
        LoadOptions::default(),
    );
    assert_eq!(r, Value::from("t"));
    // return(0) from a sub-route ends the script
    let (out, r, _) = run_opts(
        "$var(r) = 0; $var(ret) = 0; route(R); $var(r) = 1;",
        LoadOptions::default(),
    );
    assert_eq!((out, r), (Outcome::Exit, Value::Int(0)));
    // a function's code is $? too
    let (_, r, rc) = run_opts("isflagset(3); $var(r) = $rc;", LoadOptions::default());
    assert_eq!((r, rc), (Value::Int(-1), -1));
}

#[test]
fn switch_fall_through_and_default() {
    let sw = |v: &str| {
        run_opts(
            &format!(
                "$var(r) = \"\"; switch ({v}) {{ case 1: $var(r) = $var(r) + \"1\"; \
                 case 2: $var(r) = $var(r) + \"2\"; break; case 3: default: $var(r) = \"d\"; }}"
            ),
            LoadOptions::default(),
        )
        .1
    };
    assert_eq!(sw("1"), Value::from("12"));
    assert_eq!(sw("2"), Value::from("2"));
    assert_eq!(sw("3"), Value::from("d"));
    assert_eq!(sw("42"), Value::from("d"));
}

#[test]
fn while_limit_is_configurable() {
    let opts = LoadOptions {
        max_while_loops: 7,
        ..LoadOptions::default()
    };
    let (out, r, _) = run_opts("$var(r) = 0; while (1) { $var(r) = $var(r) + 1; }", opts);
    assert_eq!((out, r), (Outcome::Done, Value::Int(7)));
}

#[test]
fn exit_inside_a_condition_stops_the_script() {
    let s = script_with(
        "route { if (route(X)) $var(r) = 1; $var(r) = 2; }\nroute[X] { exit; }",
        LoadOptions::default(),
    );
    let env = Env::new(Arc::new(Recorder::default()), Myself::default(), Vec::new());
    let mut ctx = MsgCtx::new(
        msg(),
        &env,
        "10.0.0.1:5060".parse().unwrap(),
        "10.0.0.2:5060".parse().unwrap(),
        Proto::Udp,
    );
    assert_eq!(s.run_request(&mut ctx), Outcome::Exit);
    assert_eq!(ctx.get_pv(&parse_pv("$var(r)").unwrap()), Value::Int(0));
}
