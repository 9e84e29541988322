use std::sync::Arc;

use ser_sip::SipMsg;

use super::*;
use crate::iface::{ParamValue, ScriptNames};
use crate::registry::Modules;
use crate::runtime::ctx::Env;
use crate::runtime::transport::{Listen, Myself, Proto, Recorder};

struct Names;
impl ScriptNames for Names {
    fn flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn avp_flag(&self, _: &str) -> Option<u32> {
        None
    }
    fn has_route(&self, kind: RouteMask, name: &str) -> bool {
        kind == RouteMask::REQUEST && name == "RPC"
    }
}

fn modules(params: &[(&str, ParamValue)]) -> Modules {
    let mut m = Modules::default();
    m.load("xmlrpc").unwrap();
    for (p, v) in params {
        m.modparam("xmlrpc", p, v, &|_| None).unwrap();
    }
    m.init_all().unwrap();
    m
}

fn handler(m: &Modules, name: &str, args: &[Arg]) -> Result<Handler, FixupError> {
    let (l, f) = m.function(name).unwrap();
    (f.fixup)(
        &FixupCtx {
            module: &l.env,
            names: &Names,
        },
        args,
    )
}

fn registry() -> RpcRegistry {
    let mut reg = RpcRegistry::new();
    reg.register("t.echo", &["Echoes its parameters."], |c| {
        for p in c.params().to_vec() {
            c.add(p);
        }
        Ok(())
    })
    .unwrap();
    reg.register("t.int", &["An int parameter."], |c| {
        let n = c.scan_int(0)?;
        c.add(RpcValue::Int(n + 1));
        Ok(())
    })
    .unwrap();
    reg
}

fn http(body: &str, version: &str) -> SipMsg {
    let raw = format!(
        "POST /RPC2 {version}\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    SipMsg::parse_stream(raw.into_bytes()).unwrap()
}

/// Runs `dispatch_rpc()` on `body`; the HTTP answer sent.
fn dispatch(m: &Modules, body: &str, version: &str) -> String {
    let rec = Arc::new(Recorder::default());
    let env = Env::new(rec.clone(), Myself::default(), Vec::<Listen>::new());
    let src = "127.0.0.1:40000".parse().unwrap();
    let local = "127.0.0.1:5060".parse().unwrap();
    let mut ctx = MsgCtx::new(http(body, version), &env, src, local, Proto::Tcp);
    let h = handler(m, "dispatch_rpc", &[]).unwrap();
    assert_eq!(h(&mut ctx), Flow::True);
    let sent = rec.take();
    assert_eq!(sent.len(), 1);
    let (dst, bytes) = &sent[0];
    assert_eq!((dst.proto, dst.addr), (Proto::Tcp, src));
    String::from_utf8(bytes.clone()).unwrap()
}

fn call_doc(method: &str, params: &str) -> String {
    format!(
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>{method}</methodName>\n\
         <params>\n{params}</params>\n</methodCall>\n"
    )
}

#[test]
fn dispatch_answers_values_faults_and_garbage_over_http() {
    install_registry(registry());
    let m = modules(&[]);
    let out = dispatch(
        &m,
        &call_doc(
            "t.echo",
            "<param><value><string>a</string></value></param>\
             <param><value><int>2</int></value></param>",
        ),
        "HTTP/1.1",
    );
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/xml"));
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    assert!(body.contains("<params><param><value><string>a</string></value><value><i4>2</i4></value></param></params>"));

    let out = dispatch(&m, &call_doc("no.such", ""), "HTTP/1.0");
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"));
    assert!(out.contains("<fault>") && out.contains("<i4>500</i4>"));
    assert!(out.contains("<string>Method Not Found</string>"));

    let out = dispatch(&m, "<<<garbage", "HTTP/1.1");
    assert!(
        out.contains("<fault>") && out.contains("<i4>400</i4>"),
        "{out}"
    );

    let listed = dispatch(&m, &call_doc("system.listMethods", ""), "HTTP/1.1");
    assert!(listed.contains("<string>t.echo</string>"));
}

#[test]
fn autoconversion_decides_whether_strings_pass_as_ints() {
    install_registry(registry());
    let as_string = call_doc("t.int", "<param><value><string>41</string></value></param>");
    let strict = modules(&[]);
    let out = dispatch(&strict, &as_string, "HTTP/1.1");
    assert!(
        out.contains("<fault>") && out.contains("expected integer"),
        "{out}"
    );
    let lenient = modules(&[("autoconversion", ParamValue::Int(1))]);
    let out = dispatch(&lenient, &as_string, "HTTP/1.1");
    assert!(out.contains("<i4>42</i4>"), "{out}");
}

#[test]
fn escape_cr_param() {
    install_registry(registry());
    let doc = call_doc("t.echo", "<param><value>a&#xD;b</value></param>");
    assert!(dispatch(&modules(&[]), &doc, "HTTP/1.1").contains("a&#xD;b"));
    let off = modules(&[("escape_cr", ParamValue::Int(0))]);
    assert!(dispatch(&off, &doc, "HTTP/1.1").contains("a\rb"));
}

#[test]
fn without_a_registry_the_answer_is_a_fault() {
    REGISTRY.with(|r| *r.borrow_mut() = None);
    let out = dispatch(&modules(&[]), &call_doc("core.version", ""), "HTTP/1.1");
    assert!(out.contains("<fault>") && out.contains("no RPC methods"));
}

#[test]
fn xmlrpc_reply_sends_a_fault() {
    let m = modules(&[]);
    let h = handler(
        &m,
        "xmlrpc_reply",
        &[Arg::Str("403".into()), Arg::Str("only over TLS".into())],
    )
    .unwrap();
    let rec = Arc::new(Recorder::default());
    let env = Env::new(rec.clone(), Myself::default(), Vec::new());
    let mut ctx = MsgCtx::new(
        http("", "HTTP/1.1"),
        &env,
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        Proto::Tcp,
    );
    assert_eq!(h(&mut ctx), Flow::True);
    let out = String::from_utf8(rec.take().remove(0).1).unwrap();
    assert!(out.contains("<i4>403</i4>") && out.contains("only over TLS"));
    assert!(handler(&m, "xmlrpc_reply", &[Arg::Int(5), Arg::Str("x".into())]).is_err());
}

#[test]
fn route_param_must_name_a_route() {
    let ok = modules(&[("route", ParamValue::Str("RPC".into()))]);
    assert!(handler(&ok, "dispatch_rpc", &[]).is_ok());
    let bad = modules(&[("route", ParamValue::Str("NOPE".into()))]);
    let e = handler(&bad, "dispatch_rpc", &[]).err().unwrap();
    assert!(e.message.contains("NOPE"));
    let mut m = Modules::default();
    m.load("xmlrpc").unwrap();
    m.modparam("xmlrpc", "url_match", &ParamValue::Str("(".into()), &|_| {
        None
    })
    .unwrap();
    assert!(m.init_all().is_err());
}

/// Records which routes the module asked to run.
#[derive(Default)]
struct Runner(std::sync::Mutex<Vec<String>>);

impl crate::iface::RouteRunner for Runner {
    fn run_route(&self, kind: RouteMask, name: &str, _ctx: &mut MsgCtx<'_>) -> RouteEnd {
        assert_eq!(kind, RouteMask::REQUEST);
        self.0.lock().unwrap().push(name.to_owned());
        RouteEnd::Done
    }
}

/// Whether the pre-script hook lets `raw` (a stream message) on to the main
/// route, and which routes it ran instead.
fn pre_script(params: &[(&str, ParamValue)], raw: &str) -> (bool, Vec<String>) {
    let m = modules(params);
    let runner = Arc::new(Runner::default());
    let dynrunner: Arc<dyn crate::iface::RouteRunner> = runner.clone();
    m.set_route_runner(Arc::downgrade(&dynrunner));
    let env = Env::new(Arc::new(Recorder::default()), Myself::default(), Vec::new());
    let msg = SipMsg::parse_stream(raw.as_bytes().to_vec()).unwrap();
    let mut ctx = MsgCtx::new(
        msg,
        &env,
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
        Proto::Tcp,
    );
    let l = m.iter().next().unwrap();
    let go_on = l.module.on_request(&l.env, &mut ctx);
    let ran = runner.0.lock().unwrap().clone();
    (go_on, ran)
}

#[test]
fn http_get_and_post_run_the_route_param_instead_of_the_main_route() {
    let route = ("route", ParamValue::Str("RPC".into()));
    let post = "POST /RPC2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let get = "GET /RPC2 HTTP/1.0\r\n\r\n";
    assert_eq!(
        pre_script(std::slice::from_ref(&route), post),
        (false, vec!["RPC".into()])
    );
    assert_eq!(
        pre_script(std::slice::from_ref(&route), get),
        (false, vec!["RPC".into()])
    );
    // Other HTTP methods, SIP, no route param, or mode 1: the main route.
    let put = "PUT /RPC2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        pre_script(std::slice::from_ref(&route), put),
        (true, vec![])
    );
    let sip = "OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        pre_script(std::slice::from_ref(&route), sip),
        (true, vec![])
    );
    assert_eq!(pre_script(&[], post), (true, vec![]));
    let mode1 = ("mode", ParamValue::Int(1));
    assert_eq!(pre_script(&[route.clone(), mode1], post), (true, vec![]));
    // url_skip wins over url_match.
    let skip = ("url_skip", ParamValue::Str("^/sip".into()));
    let only = ("url_match", ParamValue::Str("^/RPC2$".into()));
    let sip_url = "POST /sip/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let other_url = "POST /other HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let params = [route.clone(), skip, only];
    assert_eq!(pre_script(&params, sip_url), (true, vec![]));
    assert_eq!(pre_script(&params, other_url), (true, vec![]));
    assert_eq!(pre_script(&params, post), (false, vec!["RPC".into()]));
}
