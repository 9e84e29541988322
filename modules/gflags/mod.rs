//! `gflags`: global flags shared by every process, and SER 3.0 global
//! attributes (replaces SER `modules_s/gflags`).
//!
//! - `set_gflag(n)`, `reset_gflag(n)`, `is_gflag(n)`: 32 flags in one shm
//!   word (`initial` sets them at start-up); also RPC `gflags.set`,
//!   `gflags.reset`, `gflags.is_set`, `gflags.get`.
//! - `load_global_attrs` 1: the `uid_global_attrs` rows (flag bit 0) are read
//!   once at start-up and every request sees them as global-class AVPs
//!   (`$g.x`, or `$x` when no other class has it).

use std::sync::atomic::{AtomicU32, Ordering};

use ser_fifo::{RpcCtx, RpcFault, RpcRegistry, RpcValue};
use ser_shm::ShmBox;

use crate::db;
use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, RouteMask,
};
use crate::runtime::avp::{AvpName, Class, Track};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::value::Value;

/// The `gflags` module.
pub struct Gflags;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("initial", 0),
    ParamExport::int("load_global_attrs", 0),
    ParamExport::str("db_url", "sqlite:///var/lib/ser/ser.db"),
    ParamExport::str("global_attrs_table", "uid_global_attrs"),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "set_gflag",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_set,
    },
    FunctionExport {
        name: "reset_gflag",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_reset,
    },
    FunctionExport {
        name: "is_gflag",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_is,
    },
    FunctionExport {
        name: "flush_gflags",
        min_args: 0,
        max_args: 0,
        routes: RouteMask::ANY,
        fixup: fixup_flush,
    },
];

/// What `init` creates: the shared flag word and the global attributes.
struct State {
    flags: &'static AtomicU32,
    globals: Vec<(String, Value)>,
}

fn state(env: &ModuleEnv) -> Option<&State> {
    env.state.get().and_then(|s| s.downcast_ref::<State>())
}

impl Module for Gflags {
    fn name(&self) -> &'static str {
        "gflags"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let initial = u32::try_from(env.int("initial")).map_err(|_| {
            format!(
                "gflags: initial {} is not a 32-bit mask",
                env.int("initial")
            )
        })?;
        let flags = ShmBox::leak(
            ShmBox::new(AtomicU32::new(initial)).map_err(|e| format!("gflags: shm: {e}"))?,
        );
        let globals = if env.int("load_global_attrs") != 0 {
            let table = env.str("global_attrs_table");
            db::ident(&table).map_err(|e| format!("gflags: {e}"))?;
            let rows = db::with(&env.str("db_url"), |c| {
                c.query(&table, &["name", "value", "type", "flags"], &[], None)
            })
            .map_err(|e| format!("gflags: cannot load global attributes: {e}"))?;
            crate::avp_db::attrs_of(rows)
        } else {
            Vec::new()
        };
        let _ = env.state.set(Box::new(State { flags, globals }));
        Ok(())
    }
    fn on_request(&self, env: &ModuleEnv, ctx: &mut MsgCtx<'_>) -> bool {
        if let Some(s) = state(env) {
            for (name, v) in &s.globals {
                ctx.avps.import(
                    Track::From,
                    Class::Global,
                    AvpName::Str(name.clone()),
                    v.clone(),
                    0,
                );
            }
        }
        true
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let Some(s) = state(env) else { return };
        let flags = s.flags;
        fn bit(ctx: &dyn RpcCtx) -> Result<u32, RpcFault> {
            let n = ctx.scan_int(0)?;
            u32::try_from(n)
                .ok()
                .filter(|n| *n <= 31)
                .ok_or_else(|| RpcFault::new(400, format!("flag {n} out of range 0..31")))
        }
        let results = [
            reg.register("gflags.set", &["Set a global flag."], move |ctx| {
                let b = bit(ctx)?;
                flags.fetch_or(1 << b, Ordering::Relaxed);
                Ok(())
            }),
            reg.register("gflags.reset", &["Reset a global flag."], move |ctx| {
                let b = bit(ctx)?;
                flags.fetch_and(!(1 << b), Ordering::Relaxed);
                Ok(())
            }),
            reg.register(
                "gflags.is_set",
                &["Whether a global flag is set."],
                move |ctx| {
                    let b = bit(ctx)?;
                    ctx.add(RpcValue::Int(
                        (flags.load(Ordering::Relaxed) >> b & 1) as i32,
                    ));
                    Ok(())
                },
            ),
            reg.register(
                "gflags.get",
                &["All global flags as a number."],
                move |ctx| {
                    ctx.add(RpcValue::long(i64::from(flags.load(Ordering::Relaxed))));
                    Ok(())
                },
            ),
        ];
        for e in results.into_iter().filter_map(Result::err) {
            log::warn!("gflags: rpc: {e}");
        }
    }
}

fn gflag_arg(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<u32, FixupError> {
    let n = fx.int_arg(a, 0)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= 31)
        .ok_or_else(|| FixupError::arg(0, format!("global flag {n} out of range 0..31")))
}

fn with_flags(
    fx: &FixupCtx<'_>,
    a: &[Arg],
    f: impl Fn(&AtomicU32, u32) -> bool + Send + Sync + 'static,
) -> Result<Handler, FixupError> {
    let bit = gflag_arg(fx, a)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |_ctx| {
        match st.get().and_then(|s| s.downcast_ref::<State>()) {
            Some(s) => Flow::from_bool(f(s.flags, bit)),
            None => {
                log::error!("gflags: module not initialised");
                Flow::False
            }
        }
    }))
}

fn fixup_set(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_flags(fx, a, |w, b| {
        w.fetch_or(1 << b, Ordering::Relaxed);
        true
    })
}

fn fixup_reset(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_flags(fx, a, |w, b| {
        w.fetch_and(!(1 << b), Ordering::Relaxed);
        true
    })
}

fn fixup_is(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_flags(fx, a, |w, b| w.load(Ordering::Relaxed) & (1 << b) != 0)
}

/// `flush_gflags()`: SER saved the flags to the database; ours live in shm
/// only, so there is nothing to write.
fn fixup_flush(_fx: &FixupCtx<'_>, _a: &[Arg]) -> Result<Handler, FixupError> {
    Ok(Box::new(|_ctx| Flow::True))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::ParamValue;

    #[test]
    fn initial_flags_and_rpc() {
        ser_shm::init_once(8 << 20).expect("shm");
        let mut env = ModuleEnv::new(&Gflags);
        env.set_param(&Gflags, "initial", ParamValue::Int(0b10), &|_| None)
            .unwrap();
        Gflags.init(&env).unwrap();
        let mut reg = RpcRegistry::new();
        Gflags.register_rpc(&env, &mut reg);
        assert_eq!(reg.call("gflags.get", vec![]).unwrap(), [RpcValue::long(2)]);
        reg.call("gflags.set", vec![RpcValue::Int(5)]).unwrap();
        assert_eq!(
            reg.call("gflags.is_set", vec![RpcValue::Int(5)]).unwrap(),
            [RpcValue::Int(1)]
        );
        reg.call("gflags.reset", vec![RpcValue::Int(1)]).unwrap();
        assert_eq!(
            reg.call("gflags.get", vec![]).unwrap(),
            [RpcValue::long(32)]
        );
        assert!(reg.call("gflags.set", vec![RpcValue::Int(32)]).is_err());
    }
}
