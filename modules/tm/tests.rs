//! Load-time checks of tm's script functions and parameters.

use super::*;
use crate::iface::{ParamValue, ScriptNames};

struct Names(&'static [&'static str]);

impl ScriptNames for Names {
    fn flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn avp_flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn has_route(&self, _: RouteMask, name: &str) -> bool {
        self.0.contains(&name)
    }
}

fn fixup(name: &str, args: &[Arg]) -> Result<Handler, FixupError> {
    let env = ModuleEnv::new(&Tm);
    let f = FUNCTIONS.iter().find(|f| f.name == name).expect("exported");
    assert!(
        args.len() >= f.min_args && args.len() <= f.max_args,
        "{name} arity"
    );
    (f.fixup)(
        &FixupCtx {
            module: &env,
            names: &Names(&["busy", "1"]),
        },
        args,
    )
}

#[test]
fn route_names_are_checked() {
    assert!(fixup("t_on_failure", &[Arg::Str("busy".into())]).is_ok());
    assert!(fixup("t_on_reply", &[Arg::Int(1)]).is_ok());
    let e = fixup("t_on_branch", &[Arg::Str("nope".into())])
        .err()
        .unwrap();
    assert!(e.message.contains("not defined"), "{e:?}");
}

#[test]
fn constants_are_checked() {
    assert!(fixup("t_reply", &[Arg::Int(404), Arg::Str("Not Found".into())]).is_ok());
    assert!(fixup("t_reply", &[Arg::Int(99), Arg::Str("x".into())]).is_err());
    assert!(fixup(
        "t_reply",
        &[Arg::Str("$var(code)".into()), Arg::Str("x".into())]
    )
    .is_ok());
    assert!(fixup("t_relay", &[Arg::Str("10.0.0.1".into()), Arg::Int(5060)]).is_ok());
    assert!(fixup(
        "t_relay",
        &[Arg::Str("10.0.0.1".into()), Arg::Str("port".into())]
    )
    .is_err());
    assert!(fixup(
        "t_relay",
        &[
            Arg::Str("h".into()),
            Arg::Int(5060),
            Arg::Str("sctpx".into())
        ]
    )
    .is_err());
    assert!(fixup("t_relay_to_tcp", &[Arg::Str("h".into()), Arg::Int(5060)]).is_ok());
    assert!(fixup("t_check_status", &[Arg::Str("[45][0-9][0-9]".into())]).is_ok());
    assert!(fixup("t_check_status", &[Arg::Str("(".into())]).is_err());
}

#[test]
fn t_set_fr_takes_numbers_and_variables() {
    assert!(fixup("t_set_fr", &[Arg::Int(10_000)]).is_ok());
    assert!(fixup("t_set_fr", &[Arg::Int(10_000), Arg::Int(2000)]).is_ok());
    // SER 3.0 style: the value comes from an AVP.
    assert!(fixup("t_set_fr", &[Arg::Str("$t.fr_inv_timer".into())]).is_ok());
    assert!(fixup(
        "t_set_fr",
        &[
            Arg::Str("$avp(s:fr)".into()),
            Arg::Str("$avp(s:nfr)".into())
        ]
    )
    .is_ok());
    if let Ok(pv) = crate::runtime::pvar::parse_pv("$avp(s:fr)") {
        assert!(fixup("t_set_fr", &[Arg::Pv(pv)]).is_ok());
    }
    assert!(fixup("t_set_fr", &[Arg::Str("soon".into())]).is_err());
}

#[test]
fn timer_params_accept_seconds_of_old_configs() {
    let mut env = ModuleEnv::new(&Tm);
    let no = |_: &str| None;
    env.set_param(&Tm, "fr_timer", ParamValue::Int(5), &no)
        .unwrap();
    env.set_param(&Tm, "fr_inv_timer", ParamValue::Int(90_000), &no)
        .unwrap();
    assert_eq!(timer_ms(&env, "fr_timer"), 5000);
    assert_eq!(timer_ms(&env, "fr_inv_timer"), 90_000);
    assert!(env
        .set_param(&Tm, "no_such", ParamValue::Int(1), &no)
        .is_err());
}

#[test]
fn proxy_strings() {
    assert_eq!(
        parse_proxy("tcp:10.0.0.1:5080").unwrap(),
        (Some(Proto::Tcp), "10.0.0.1".into(), Some(5080))
    );
    assert_eq!(
        parse_proxy("tls:example.com").unwrap(),
        (Some(Proto::Tls), "example.com".into(), None)
    );
    assert_eq!(
        parse_proxy("example.com:5070").unwrap(),
        (None, "example.com".into(), Some(5070))
    );
    assert_eq!(
        parse_proxy("udp:[::1]:5062").unwrap(),
        (Some(Proto::Udp), "::1".into(), Some(5062))
    );
    assert_eq!(parse_proxy("::1").unwrap(), (None, "::1".into(), None));
    assert!(parse_proxy("udp:").is_err());
    assert!(parse_proxy("h:99999").is_err());
    assert!(parse_proxy("[::1").is_err());
    assert!(parse_proxy("").is_err());
    assert_eq!(relay_flags("0x03"), Some(3));
    assert_eq!(relay_flags("2"), Some(2));
    assert_eq!(relay_flags("tcp:h"), None);
    assert!(fixup("t_relay", &[Arg::Str("udp:1.2.3.4:x".into())]).is_err());
    assert!(fixup("t_relay_to", &[Arg::Str("0x01".into())]).is_ok());
    assert!(fixup("t_set_disable_6xx", &[Arg::Int(2)]).is_err());
    assert!(fixup("t_drop_replies", &[Arg::Str("q".into())]).is_err());
}
