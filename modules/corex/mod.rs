//! `corex`: Kamailio's core extensions.
//!
//! Much of what Kamailio 5 configs use of it is in the core here already:
//! `append_branch` is a core function, and the `corex.debug` RPC is
//! registered by the core (src/core_rpc.rs).  The module adds:
//!
//! - `send_data(uri, data)`: sends `data` as it is to the URI's address
//!   (resolved as SIP, `transport=` honoured; UDP by default);
//! - `file_read(path, $var)`: a file's content into a variable (false when
//!   unreadable; at most 1 MiB);
//! - `file_write(path, content)`: writes (replaces) a file;
//! - `is_faked_msg()`: false (no faked messages reach the script here).
//!
//! Not built in yet: `sendx`, `set_recv_socket`, `set_send_socket`,
//! `is_socket_name`, `msg_iflag_*`, `via_add_srvid`.

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::flow::Flow;
use crate::runtime::transport::{Dest, Proto};
use crate::runtime::value::Value;

/// The `corex` module.
pub struct Corex;

/// Largest file `file_read` reads.
const MAX_FILE: u64 = 1 << 20;

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "send_data",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_send_data,
    },
    FunctionExport {
        name: "file_read",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_file_read,
    },
    FunctionExport {
        name: "file_write",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_file_write,
    },
    FunctionExport {
        name: "is_faked_msg",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_is_faked,
    },
];

impl Module for Corex {
    fn name(&self) -> &'static str {
        "corex"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// The first address a SIP URI resolves to.
fn dest_of(uri: &str) -> Result<Dest, String> {
    let u = ser_sip::parse_uri(uri.as_bytes()).map_err(|e| format!("bad URI `{uri}`: {e}"))?;
    let b = uri.as_bytes();
    let host = String::from_utf8_lossy(u.host.of(b)).into_owned();
    let proto = u
        .transport
        .and_then(|t| Proto::from_name(&String::from_utf8_lossy(t.of(b))));
    let sips = u.scheme == ser_sip::Scheme::Sips;
    let t = crate::runtime::dns::resolve_sip(&host, u.port, proto, sips)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("`{host}` has no address"))?;
    Ok(Dest {
        proto: t.proto,
        addr: t.addr,
        send_sock: None,
    })
}

fn fixup_send_data(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let uri = fx.format_arg(a, 0)?;
    let data = fx.format_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        let (uri, data) = (ctx.render(&uri), ctx.render(&data));
        let sent = dest_of(&uri).and_then(|d| {
            ctx.env
                .transport
                .send(data.as_bytes(), &d)
                .map_err(|e| e.to_string())
        });
        match sent {
            Ok(()) => Flow::True,
            Err(e) => {
                log::warn!("send_data to {uri}: {e}");
                Flow::False
            }
        }
    }))
}

fn fixup_file_read(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let path = fx.format_arg(a, 0)?;
    let Arg::Pv(pv) = &a[1] else {
        return Err(FixupError::arg(1, "want a variable to read into"));
    };
    if !pv.is_writable() {
        return Err(FixupError::arg(1, "the variable is read-only"));
    }
    let pv = pv.clone();
    Ok(Box::new(move |ctx| {
        let p = ctx.render(&path);
        let read = std::fs::File::open(&p).and_then(|f| {
            use std::io::Read;
            let mut s = String::new();
            f.take(MAX_FILE).read_to_string(&mut s).map(|_| s)
        });
        match read {
            Ok(s) => Flow::from_bool(ctx.set_pv(&pv, Value::Str(s), false).is_ok()),
            Err(e) => {
                log::warn!("file_read {p}: {e}");
                Flow::False
            }
        }
    }))
}

fn fixup_file_write(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let path = fx.format_arg(a, 0)?;
    let content = fx.format_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        let (p, c) = (ctx.render(&path), ctx.render(&content));
        match std::fs::write(&p, c) {
            Ok(()) => Flow::True,
            Err(e) => {
                log::warn!("file_write {p}: {e}");
                Flow::False
            }
        }
    }))
}

fn fixup_is_faked(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|_ctx| Flow::False))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ser_sip::SipMsg;

    use super::*;
    use crate::iface::ScriptNames;
    use crate::registry::Modules;
    use crate::runtime::ctx::{Env, MsgCtx};
    use crate::runtime::pvar::parse_pv;
    use crate::runtime::transport::{Myself, Recorder};

    struct Names;
    impl ScriptNames for Names {
        fn flag(&self, _: &str) -> Option<u32> {
            None
        }
        fn avp_flag(&self, _: &str) -> Option<u32> {
            None
        }
        fn has_route(&self, _: RouteMask, _: &str) -> bool {
            false
        }
    }

    fn call(m: &Modules, ctx: &mut MsgCtx<'_>, name: &str, args: &[Arg]) -> Flow {
        let (l, f) = m.function(name).unwrap();
        let h = (f.fixup)(
            &FixupCtx {
                module: &l.env,
                names: &Names,
            },
            args,
        )
        .unwrap();
        h(ctx)
    }

    #[test]
    fn send_data_and_files() {
        let mut m = Modules::default();
        m.load("corex").unwrap();
        let rec = Arc::new(Recorder::default());
        let env = Env::new(rec.clone(), Myself::default(), vec![]);
        let msg = SipMsg::parse(
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
              From: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\
              Content-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .unwrap();
        let addr = "127.0.0.1:5060".parse().unwrap();
        let mut ctx = MsgCtx::new(msg, &env, addr, addr, Proto::Udp);
        let s = |t: &str| Arg::Str(t.into());
        let f = call(
            &m,
            &mut ctx,
            "send_data",
            &[s("sip:127.0.0.1:5099"), s("ping $ci")],
        );
        assert_eq!(f, Flow::True);
        let sent = rec.take();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.addr, "127.0.0.1:5099".parse().unwrap());
        assert_eq!(sent[0].1, b"ping c");

        let path = std::env::temp_dir().join(format!("corex-{}", std::process::id()));
        let p = path.display().to_string();
        assert_eq!(
            call(&m, &mut ctx, "file_write", &[s(&p), s("id=$ci")]),
            Flow::True
        );
        let var = Arg::Pv(parse_pv("$var(f)").unwrap());
        assert_eq!(call(&m, &mut ctx, "file_read", &[s(&p), var]), Flow::True);
        assert_eq!(
            ctx.get_pv(&parse_pv("$var(f)").unwrap()),
            Value::Str("id=c".into())
        );
        std::fs::remove_file(&path).unwrap();
        let var = Arg::Pv(parse_pv("$var(f)").unwrap());
        assert_eq!(call(&m, &mut ctx, "file_read", &[s(&p), var]), Flow::False);
        assert_eq!(call(&m, &mut ctx, "is_faked_msg", &[]), Flow::False);
    }
}
