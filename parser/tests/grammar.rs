//! Grammar details: precedence, statements, route kinds, values, variables, recovery.

use ser_parser::ast::*;
use ser_parser::{parse_str, parse_str_report, Keyword, ParseOptions};

fn items(text: &str) -> Vec<Item> {
    match parse_str("t.cfg", text, &ParseOptions::default()) {
        Ok(p) => p.config.items().to_vec(),
        Err(e) => {
            let r = parse_str_report("t.cfg", text, &ParseOptions::default());
            panic!("parse failed ({} diagnostics):\n{}", e.len(), r.render())
        }
    }
}

fn body(text: &str) -> Vec<Stmt> {
    let its = items(&format!("route {{\n{text}\n}}\n"));
    match &its[..] {
        [Item::Route(r)] => r.body.stmts.clone(),
        other => panic!("{other:?}"),
    }
}

fn cond(e: &str) -> Expr {
    match &body(&format!("if ({e}) drop;"))[..] {
        [Stmt::If { cond, .. }] => cond.clone(),
        other => panic!("{other:?}"),
    }
}

/// Compact rendering of an expression: `(op a b)`.
fn sx(e: &Expr) -> String {
    match e {
        Expr::Int { value, .. } => value.to_string(),
        Expr::Str { value, .. } => format!("{value:?}"),
        Expr::Ip { addr, .. } => addr.to_string(),
        Expr::IpNet { addr, prefix, .. } => format!("{addr}/{prefix}"),
        Expr::Ident { name, .. } => name.clone(),
        Expr::Keyword { kw, .. } => kw.as_str().to_string(),
        Expr::Pvar(p) => format!("pv:{}", p.raw),
        Expr::Avp(a) => format!("avp:{}", a.raw),
        Expr::Select(s) => format!("sel:{}", s.raw),
        Expr::Call(c) => format!(
            "{}({})",
            c.name,
            c.args.iter().map(sx).collect::<Vec<_>>().join(",")
        ),
        Expr::Unary { op, expr, .. } => format!("({op:?} {})", sx(expr)),
        Expr::Binary { op, lhs, rhs, .. } => format!("({op:?} {} {})", sx(lhs), sx(rhs)),
    }
}

fn errors(text: &str) -> Vec<String> {
    let r = parse_str_report("t.cfg", text, &ParseOptions::default());
    r.errors.iter().map(|d| d.headline(&r.sources)).collect()
}

#[test]
fn precedence_follows_kamailio() {
    assert_eq!(
        sx(&cond("$a || $b && $c")),
        "(Or avp:$a (And avp:$b avp:$c))"
    );
    assert_eq!(sx(&cond("1 + 2 * 3 == 7")), "(Eq (Add 1 (Mul 2 3)) 7)");
    assert_eq!(sx(&cond("$a & 1 == 1")), "(BitAnd avp:$a (Eq 1 1))");
    assert_eq!(sx(&cond("!$a == 1")), "(Eq (Not avp:$a) 1)");
    assert_eq!(sx(&cond("-$a - -2")), "(Sub (Neg avp:$a) -2)");
    assert_eq!(sx(&cond("1 - 2 - 3")), "(Sub (Sub 1 2) 3)");
    assert_eq!(
        sx(&cond("$a << 2 | ~$b")),
        "(BitOr (Shl avp:$a 2) (BitNot avp:$b))"
    );
    assert_eq!(sx(&cond("$a mod 3 ieq 1")), "(IntEq (Mod avp:$a 3) 1)");
}

#[test]
fn message_keyword_tests_bind_as_one_operand() {
    assert_eq!(
        sx(&cond("!method==\"REGISTER\"")),
        "(Not (Eq method \"REGISTER\"))"
    );
    assert_eq!(sx(&cond("!uri==myself")), "(Not (Eq uri myself))");
    assert_eq!(
        sx(&cond("method==\"INVITE\" && strempty(@to.tag)")),
        "(And (Eq method \"INVITE\") (StrEmpty sel:@to.tag))"
    );
    assert_eq!(sx(&cond("method == CANCEL")), "(Eq method CANCEL)");
    assert_eq!(sx(&cond("src_ip==10.0.0.0/8")), "(Eq src_ip 10.0.0.0/8)");
    assert_eq!(sx(&cond("src_ip == 127.0.0.1")), "(Eq src_ip 127.0.0.1)");
    assert_eq!(sx(&cond("msg:len >= 4096")), "(Ge msg:len 4096)");
    assert_eq!(
        sx(&cond("status=~\"(183)|(2[0-9][0-9])\"")),
        "(Match status \"(183)|(2[0-9][0-9])\")"
    );
    assert_eq!(sx(&cond("$? == -2")), "(Eq retcode -2)");
    assert_eq!(
        sx(&cond("proto == udp && af == inet6")),
        "(And (Eq proto udp) (Eq af inet6))"
    );
    assert_eq!(sx(&cond("dst_port != -1")), "(Ne dst_port -1)");
}

#[test]
fn operands() {
    assert_eq!(sx(&cond("len_gt(max_len)")), "len_gt(max_len)");
    assert_eq!(
        sx(&cond("strlen($var(x)) > 3")),
        "(Gt (StrLen pv:$var(x)) 3)"
    );
    assert_eq!(sx(&cond("defined $avp(s:x)")), "(Defined avp:$avp(s:x))");
    assert_eq!(sx(&cond("$rU==$null")), "(Eq pv:$rU pv:$null)");
    assert_eq!(sx(&cond("$hdr(X-(a)) == yes")), "(Eq pv:$hdr(X-(a)) 1)");
    assert_eq!(
        sx(&cond("$sel(cfg_get.pstn.gw_ip) == @cfg_get.pstn.gw_ip")),
        "(Eq pv:$sel(cfg_get.pstn.gw_ip) sel:@cfg_get.pstn.gw_ip)"
    );
    assert_eq!(sx(&cond("route(CHECK)")), "route(CHECK)");
    assert_eq!(sx(&cond("dst_ip == [::1]")), "(Eq dst_ip ::1)");
    assert_eq!(
        sx(&cond("t_check_status(\"486|600\")")),
        "t_check_status(\"486|600\")"
    );
    assert_eq!(
        sx(&cond("forward(uri:host, uri:port)")),
        "forward(uri:host,uri:port)"
    );
}

#[test]
fn if_else_chains_and_braceless_bodies() {
    let s = body("if (a()) b(); else if (c()) { d(); } else e();");
    let [Stmt::If {
        then,
        otherwise: Some(els),
        ..
    }] = &s[..]
    else {
        panic!("{s:?}")
    };
    assert_eq!(then.stmts.len(), 1);
    let [Stmt::If {
        otherwise: Some(last),
        ..
    }] = &els.stmts[..]
    else {
        panic!("{els:?}")
    };
    assert!(matches!(&last.stmts[..], [Stmt::Call(c)] if c.name == "e"));
    // dangling else binds to the inner if
    let s = body("if (a()) if (b()) c(); else d();");
    let [Stmt::If {
        then,
        otherwise: None,
        ..
    }] = &s[..]
    else {
        panic!("{s:?}")
    };
    assert!(matches!(
        &then.stmts[..],
        [Stmt::If {
            otherwise: Some(_),
            ..
        }]
    ));
}

#[test]
fn ser_0_8_8_style_semicolon_after_block() {
    let s = body("if (!f()) { g(); break; };\nh();");
    assert_eq!(s.len(), 2);
}

#[test]
fn switch_with_fall_through_and_default() {
    let s = body("switch ($rc) {\n case -1:\n case -3:\n  a(); exit;\n case \"x\":\n  break;\n default:\n  b();\n}");
    let [Stmt::Switch { expr, cases, .. }] = &s[..] else {
        panic!("{s:?}")
    };
    assert_eq!(sx(expr), "retcode");
    let labels: Vec<String> = cases
        .iter()
        .map(|c| c.label.as_ref().map_or("default".into(), sx))
        .collect();
    assert_eq!(labels, ["-1", "-3", "\"x\"", "default"]);
    assert!(cases[0].body.is_empty());
    assert_eq!(cases[1].body.len(), 2);
    assert!(matches!(cases[2].body[..], [Stmt::Break { .. }]));
}

#[test]
fn other_statements() {
    let s = body(
        "while ($var(i) < 10) { $var(i) = $var(i) + 1; }\n\
         $avp(s:x) := \"a\" + $ru;\n\
         return(1); return; return -1;\n\
         { exit; }\n drop; ;",
    );
    assert!(matches!(&s[0], Stmt::While { .. }));
    let Stmt::Assign {
        op: AssignOp::ColonAssign,
        target,
        value,
        ..
    } = &s[1]
    else {
        panic!("{s:?}")
    };
    assert_eq!(
        (sx(target), sx(value)),
        ("avp:$avp(s:x)".into(), "(Add \"a\" pv:$ru)".into())
    );
    assert!(matches!(
        &s[2],
        Stmt::Return {
            value: Some(Expr::Int { value: 1, .. }),
            ..
        }
    ));
    assert!(matches!(&s[3], Stmt::Return { value: None, .. }));
    assert!(matches!(
        &s[4],
        Stmt::Return {
            value: Some(Expr::Int { value: -1, .. }),
            ..
        }
    ));
    assert!(matches!(&s[5], Stmt::Block(_)));
    assert!(matches!(&s[6], Stmt::Drop { .. }));
    assert_eq!(s.len(), 7);
}

#[test]
fn route_kinds_and_names() {
    let its = items(
        "route { exit; }\nroute[0] { exit; }\nroute[2] { exit; }\nroute[\"Q\"] { exit; }\n\
         request_route { exit; }\nreply_route { exit; }\nonreply_route[R] { exit; }\n\
         failure_route[F] { exit; }\nbranch_route[B] { exit; }\nonsend_route { exit; }\n\
         event_route[tm:local-request] { exit; }\nerror_route { exit; }\n",
    );
    let got: Vec<(RouteKind, Option<String>)> = its
        .iter()
        .map(|i| match i {
            Item::Route(r) => (r.kind, r.name.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    use RouteKind::*;
    let n = |s: &str| Some(s.to_string());
    assert_eq!(
        got,
        [
            (Request, None),
            (Request, None),
            (Request, n("2")),
            (Request, n("Q")),
            (Request, None),
            (OnReply, None),
            (OnReply, n("R")),
            (Failure, n("F")),
            (Branch, n("B")),
            (OnSend, None),
            (Event, n("tm:local-request")),
            (Error, None),
        ]
    );
}

fn value_of(text: &str) -> ValueKind {
    match &items(text)[..] {
        [Item::Assign { value, .. }] => value.kind.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn global_values() {
    assert_eq!(value_of("debug=-1"), ValueKind::Int(-1));
    assert_eq!(
        value_of("tls_method=default"),
        ValueKind::Ident("default".into())
    );
    assert_eq!(value_of("fork=off"), ValueKind::Bool(false));
    assert_eq!(
        value_of("log_facility=LOG_LOCAL0"),
        ValueKind::Ident("LOG_LOCAL0".into())
    );
    assert_eq!(value_of("listen=eth0"), ValueKind::Ident("eth0".into()));
    assert_eq!(
        value_of("listen=127.0.0.1"),
        ValueKind::Ip("127.0.0.1".parse().unwrap())
    );
    let sock =
        |proto: Option<&str>, host: &str, port: Option<u16>, adv: Option<(&str, Option<u16>)>| {
            ValueKind::Socket(SocketSpec {
                proto: proto.map(str::to_string),
                host: host.into(),
                port,
                advertise: adv.map(|(h, p)| (h.to_string(), p)),
            })
        };
    assert_eq!(
        value_of("listen=udp:1.2.3.4:5060"),
        sock(Some("udp"), "1.2.3.4", Some(5060), None)
    );
    assert_eq!(
        value_of("listen=udp:1.2.3.4:5060 advertise 5.6.7.8:5080"),
        sock(
            Some("udp"),
            "1.2.3.4",
            Some(5060),
            Some(("5.6.7.8", Some(5080)))
        )
    );
    assert_eq!(
        value_of("listen=tcp:[::1]:5060"),
        sock(Some("tcp"), "::1", Some(5060), None)
    );
    assert_eq!(
        value_of("listen=udp:*:5060"),
        sock(Some("udp"), "*", Some(5060), None)
    );
    assert_eq!(
        value_of("alias=sip.my-host.com:5060"),
        sock(None, "sip.my-host.com", Some(5060), None)
    );
    let ValueKind::List(l) = value_of("alias=a.com b.org:5070, c.net") else {
        panic!()
    };
    let hosts: Vec<ValueKind> = l.into_iter().map(|v| v.kind).collect();
    assert_eq!(
        hosts,
        [
            ValueKind::Ident("a.com".into()),
            sock(None, "b.org", Some(5070), None),
            ValueKind::Ident("c.net".into())
        ]
    );
    // values end where the next item starts, with or without `;`
    let its = items("debug=3 fork=no; children=4\nloadmodule \"sl\"\nroute{exit;}");
    assert_eq!(its.len(), 5);
}

#[test]
fn custom_params_modparams_flags() {
    let its = items(
        "pstn.gw_ip = \"\" desc \"PSTN GW Address\"\ngrp.n = 5\n\
         modparam(\"a|b\", \"p\", 1)\nmodparam(\"x\", \"y\", yes);\nmodparam(\"x\", \"z\", -5)\n\
         flags FLAG_ACC : 1, FLAG_X, FLAG_Y:3;\navpflags a, b;\nloadpath \"a:b\"\nmpath=\"c\"\n",
    );
    assert!(
        matches!(&its[0], Item::CustomParam { group, name, desc: Some(d), value, .. }
        if group == "pstn" && name == "gw_ip" && d == "PSTN GW Address" && value.kind == ValueKind::Str(String::new()))
    );
    assert!(
        matches!(&its[1], Item::CustomParam { desc: None, value, .. } if value.kind == ValueKind::Int(5))
    );
    assert!(
        matches!(&its[2], Item::ModParam { modules, param, value: ParamValue::Int(1, _), .. } if modules == "a|b" && param == "p")
    );
    assert!(matches!(
        &its[3],
        Item::ModParam {
            value: ParamValue::Int(1, _),
            ..
        }
    ));
    assert!(matches!(
        &its[4],
        Item::ModParam {
            value: ParamValue::Int(-5, _),
            ..
        }
    ));
    let Item::Flags { flags, .. } = &its[5] else {
        panic!()
    };
    let f: Vec<(&str, Option<u32>)> = flags.iter().map(|f| (f.name.as_str(), f.bit)).collect();
    assert_eq!(
        f,
        [("FLAG_ACC", Some(1)), ("FLAG_X", None), ("FLAG_Y", Some(3))]
    );
    assert!(matches!(&its[6], Item::AvpFlags { names, .. } if names.len() == 2));
    assert!(matches!(&its[7], Item::LoadPath { path, .. } if path == "a:b"));
    assert!(matches!(&its[8], Item::LoadPath { path, .. } if path == "c"));
}

#[test]
fn dialect_changes_variable_classes() {
    let p = parse_str(
        "t.cfg",
        "#!SER\nroute { $rU = 1; }\n",
        &ParseOptions::default(),
    )
    .unwrap();
    let Item::Route(r) = &p.config.items()[0] else {
        panic!()
    };
    assert!(matches!(
        &r.body.stmts[0],
        Stmt::Assign {
            target: Expr::Avp(_),
            ..
        }
    ));
    let p = parse_str(
        "t.cfg",
        "#!KAMAILIO\nroute { $account = 1; }\n",
        &ParseOptions::default(),
    )
    .unwrap();
    let Item::Route(r) = &p.config.items()[0] else {
        panic!()
    };
    assert!(matches!(
        &r.body.stmts[0],
        Stmt::Assign {
            target: Expr::Pvar(_),
            ..
        }
    ));
}

#[test]
fn warnings_for_kamailio_only_parameters() {
    let p = parse_str("t.cfg", "mlock_pages=yes\n", &ParseOptions::default()).unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(
        p.warnings[0].headline(&p.sources),
        "t.cfg:1:1: warning: core parameter `mlock_pages` is not supported by this server and is ignored"
    );
}

#[test]
fn every_error_is_reported_once() {
    let text = "debug=3\nroute {\n\tf()\n\tg();\n}\nroute[A] {\n\tif (x() {\n\t\th();\n\t}\n}\nroute[B] {\n\t$x = ;\n}\n";
    assert_eq!(
        errors(text),
        [
            "t.cfg:3:5: missing `;` before identifier `g`",
            "t.cfg:7:10: missing `)` before `{`",
            "t.cfg:12:7: unexpected `;`; expected an expression",
        ]
    );
}

#[test]
fn unknown_core_parameter_suggests_a_name() {
    let r = parse_str_report("t.cfg", "chidren=4\n", &ParseOptions::default());
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].notes, ["did you mean `children`?"]);
    let text = r.render();
    assert!(text.contains("t.cfg:1:1: unknown core parameter `chidren`\n 1 | chidren=4\n   | ^^^^^^^\n   = note: did you mean `children`?\n"), "{text}");
}

#[test]
fn message_keywords_in_keyword_enum() {
    assert_eq!(Keyword::MsgLen.as_str(), "msg:len");
}

#[test]
fn single_expression_entry_point() {
    let e = ser_parser::parse_expr("$rU == \"alice\" && src_ip == 10.0.0.0/8").unwrap();
    assert_eq!(sx(&e), "(And (Eq pv:$rU \"alice\") (Eq src_ip 10.0.0.0/8))");
    let err = ser_parser::parse_expr("1 + ").unwrap_err();
    assert!(err.starts_with("<expr>:1:"), "{err}");
}

#[test]
fn crlf_line_ends_and_byte_order_mark() {
    let text = "\u{feff}#!KAMAILIO\r\n#!ifdef X\r\ndebug=4\r\n#!else\r\ndebug=2\r\n#!endif\r\nroute {\r\n\texit;\r\n}\r\n";
    let p = parse_str("t.cfg", text, &ParseOptions::default()).unwrap();
    assert_eq!(p.config.items().len(), 2);
    assert_eq!(p.dialect, Some(ser_parser::Dialect::Kamailio));
}

#[test]
fn kamailio_forms() {
    // casts desugar to `0 + x` / `"" + x` (same conversion rules)
    assert_eq!(
        sx(&cond("(int)$hdr(Expires) > 10")),
        "(Gt (Add 0 pv:$hdr(Expires)) 10)"
    );
    assert_eq!(
        sx(&cond("(str)$var(n) == \"1\"")),
        "(Eq (Add \"\" pv:$var(n)) \"1\")"
    );
    // socket-spec arguments
    assert_eq!(
        sx(&cond("force_send_socket(udp:127.0.0.1:5060)")),
        "force_send_socket(udp:127.0.0.1:5060)"
    );
    assert_eq!(
        sx(&cond("f(tcp:[::1], 10.0.0.1:5070, tls:host.example.com)")),
        "f(tcp:[::1],10.0.0.1:5070,tls:host.example.com)"
    );
    // `if` without parentheses, `exit()`, `drop()`, `return()`
    let s = body("if !($rU =~ \"^\\+\") exit();\nif $var(x) == 4 { drop(); }\nreturn();");
    assert!(
        matches!(&s[0], Stmt::If { then, .. } if matches!(then.stmts[..], [Stmt::Exit { .. }]))
    );
    assert!(
        matches!(&s[1], Stmt::If { then, .. } if matches!(then.stmts[..], [Stmt::Drop { .. }]))
    );
    assert!(matches!(&s[2], Stmt::Return { value: None, .. }));
    // SER `%attr` syntax is an AVP, `%` with a space is modulo
    assert_eq!(
        sx(&cond("%subscription_status == \"pending\"")),
        "(Eq avp:%subscription_status \"pending\")"
    );
    assert_eq!(sx(&cond("$a % 2 == 0")), "(Eq (Mod avp:$a 2) 0)");
    // keywords after a dot are names; digit-first host labels
    let its = items("session_timer.default = \"1800\" desc \"x\"\nalias=ims.mnc001.mcc001.3gppnetwork.org\ncfgengine \"native\"\n");
    assert!(
        matches!(&its[0], Item::CustomParam { group, name, .. } if group == "session_timer" && name == "default")
    );
    assert!(
        matches!(&its[1], Item::Assign { value, .. } if value.kind == ValueKind::Ident("ims.mnc001.mcc001.3gppnetwork.org".into()))
    );
    assert!(
        matches!(&its[2], Item::Assign { name, value, .. } if name == "cfgengine" && value.kind == ValueKind::Str("native".into()))
    );
    // a quoted host from a define inside a socket value
    let v = value_of("#!define IP \"192.168.178.75\"\nlisten=udp:IP:5060\n");
    assert_eq!(
        v,
        ValueKind::Socket(SocketSpec {
            proto: Some("udp".into()),
            host: "192.168.178.75".into(),
            port: Some(5060),
            advertise: None
        })
    );
}
