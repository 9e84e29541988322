//! `counters`: script counters in shared memory (Kamailio's `counters`
//! module, script side).
//!
//! - `modparam("counters", "script_counter", "name [description]")` declares
//!   a counter (`grp.name` puts it in group `grp`; without a dot the group is
//!   `script_cnt_grp`, as `script_cnt_grp_name` says), may repeat.
//! - `cnt_inc("[grp.]name")`, `cnt_add("[grp.]name", n)`, `cnt_reset("[grp.]name")`.
//! - RPC `cnt.get grp name`, `cnt.reset grp name`, `cnt.grps_list`,
//!   `cnt.var_list grp`, `cnt.grp_get_all grp`, `cnt.help grp name`.
//!
//! Every counter is one shm atomic, so the increments of all processes add up.

use std::sync::atomic::{AtomicI64, Ordering};

use ser_fifo::{RpcCtx, RpcFault, RpcRegistry, RpcValue};
use ser_shm::ShmSlice;

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, ParamValue,
    RouteMask,
};
use crate::runtime::flow::Flow;

/// The `counters` module.
pub struct Counters;

static PARAMS: &[ParamExport] = &[
    ParamExport::str_multi("script_counter", ""),
    ParamExport::str("script_cnt_grp_name", "script"),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "cnt_inc",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_inc,
    },
    FunctionExport {
        name: "cnt_add",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_add,
    },
    FunctionExport {
        name: "cnt_reset",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_reset,
    },
];

/// One declared counter.
struct Def {
    group: String,
    name: String,
    help: String,
}

/// What `init` creates: the definitions and their shm values (same index).
struct State {
    defs: Vec<Def>,
    values: &'static [AtomicI64],
}

impl State {
    fn find(&self, group: &str, name: &str) -> Option<&'static AtomicI64> {
        let values = self.values;
        self.defs
            .iter()
            .position(|d| d.group == group && d.name == name)
            .map(|i| &values[i])
    }
}

/// The declarations of the `script_counter` params, in order.
fn defs(env: &ModuleEnv) -> Result<Vec<Def>, String> {
    let default_group = env.str("script_cnt_grp_name");
    let mut out: Vec<Def> = Vec::new();
    for v in env.all("script_counter") {
        let ParamValue::Str(s) = v else { continue };
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        let (full, help) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        let (group, name) = split_name(full, &default_group);
        if name.is_empty() || group.is_empty() {
            return Err(format!("counters: bad counter name `{full}`"));
        }
        if out.iter().any(|d| d.group == group && d.name == name) {
            return Err(format!("counters: counter `{group}.{name}` declared twice"));
        }
        out.push(Def {
            group: group.to_owned(),
            name: name.to_owned(),
            help: help.trim().to_owned(),
        });
    }
    Ok(out)
}

fn split_name<'a>(full: &'a str, default_group: &'a str) -> (&'a str, &'a str) {
    full.split_once('.').unwrap_or((default_group, full))
}

impl Module for Counters {
    fn name(&self) -> &'static str {
        "counters"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let defs = defs(env)?;
        let values = ShmSlice::from_fn(defs.len(), |_| AtomicI64::new(0))
            .map_err(|e| format!("counters: shm: {e}"))?;
        let _ = env.state.set(Box::new(State {
            defs,
            values: ShmSlice::leak(values),
        }));
        Ok(())
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        let Some(st) = env.state.get().and_then(|s| s.downcast_ref::<State>()) else {
            return;
        };
        let groups = |st: &State| {
            let mut g: Vec<String> = Vec::new();
            for d in &st.defs {
                if !g.contains(&d.group) {
                    g.push(d.group.clone());
                }
            }
            g
        };
        let grps = groups(st);
        let entries: Vec<(String, String, String, &'static AtomicI64)> = st
            .defs
            .iter()
            .zip(st.values)
            .map(|(d, v)| (d.group.clone(), d.name.clone(), d.help.clone(), v))
            .collect();
        let e1 = entries.clone();
        let e2 = entries.clone();
        let e3 = entries.clone();
        let e4 = entries.clone();
        let e5 = entries;
        fn find(
            e: &[(String, String, String, &'static AtomicI64)],
            ctx: &dyn RpcCtx,
        ) -> Result<(usize, &'static AtomicI64), RpcFault> {
            let g = ctx.scan_str(0)?;
            let n = ctx.scan_str(1)?;
            e.iter()
                .position(|(eg, en, _, _)| *eg == g && *en == n)
                .map(|i| (i, e[i].3))
                .ok_or_else(|| RpcFault::new(400, "non-existent counter"))
        }
        fn in_group(
            e: &[(String, String, String, &'static AtomicI64)],
            ctx: &dyn RpcCtx,
        ) -> Result<Vec<usize>, RpcFault> {
            let g = ctx.scan_str(0)?;
            let v: Vec<usize> = (0..e.len()).filter(|i| e[*i].0 == g).collect();
            if v.is_empty() {
                return Err(RpcFault::new(400, "group not found"));
            }
            Ok(v)
        }
        let results = [
            reg.register(
                "cnt.get",
                &["get counter value (takes group and counter name as parameters)"],
                move |ctx| {
                    let (_, v) = find(&e1, ctx)?;
                    ctx.add(RpcValue::long(v.load(Ordering::Relaxed)));
                    Ok(())
                },
            ),
            reg.register(
                "cnt.reset",
                &["reset counter (takes group and counter name as parameters)"],
                move |ctx| {
                    let (_, v) = find(&e2, ctx)?;
                    v.store(0, Ordering::Relaxed);
                    Ok(())
                },
            ),
            reg.register(
                "cnt.help",
                &["print the description of a counter (group and counter name required)."],
                move |ctx| {
                    let (i, _) = find(&e3, ctx)?;
                    ctx.add(RpcValue::Str(e3[i].2.clone()));
                    Ok(())
                },
            ),
            reg.register(
                "cnt.grps_list",
                &["list all the counter group names"],
                move |ctx| {
                    for g in &grps {
                        ctx.add(RpcValue::Str(g.clone()));
                    }
                    Ok(())
                },
            ),
            reg.register(
                "cnt.var_list",
                &["list all the counters names in a specified group"],
                move |ctx| {
                    for i in in_group(&e4, ctx)? {
                        ctx.add(RpcValue::Str(e4[i].1.clone()));
                    }
                    Ok(())
                },
            ),
            reg.register(
                "cnt.grp_get_all",
                &["list all counter names and values in a specified group"],
                move |ctx| {
                    let members = in_group(&e5, ctx)?
                        .into_iter()
                        .map(|i| {
                            (
                                e5[i].1.clone(),
                                RpcValue::long(e5[i].3.load(Ordering::Relaxed)),
                            )
                        })
                        .collect();
                    ctx.add(RpcValue::Struct(members));
                    Ok(())
                },
            ),
        ];
        for e in results.into_iter().filter_map(Result::err) {
            log::warn!("counters: rpc: {e}");
        }
    }
}

/// A counter argument, resolved at fixup (it must be declared).
fn counter_arg(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<(String, String), FixupError> {
    let full = fx.str_arg(a, 0)?;
    let default_group = fx.module.str("script_cnt_grp_name");
    let (g, n) = split_name(&full, &default_group);
    let declared = defs(fx.module)
        .map_err(|e| FixupError::arg(0, e))?
        .iter()
        .any(|d| d.group == g && d.name == n);
    if !declared {
        return Err(FixupError::arg(
            0,
            format!("counter `{full}` is not declared (modparam script_counter)"),
        ));
    }
    Ok((g.to_owned(), n.to_owned()))
}

fn with_counter(
    fx: &FixupCtx<'_>,
    a: &[Arg],
    f: impl Fn(&AtomicI64) + Send + Sync + 'static,
) -> Result<Handler, FixupError> {
    let (g, n) = counter_arg(fx, a)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |_ctx| {
        match st
            .get()
            .and_then(|s| s.downcast_ref::<State>())
            .and_then(|s| s.find(&g, &n))
        {
            Some(v) => {
                f(v);
                Flow::True
            }
            None => Flow::False,
        }
    }))
}

fn fixup_inc(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_counter(fx, a, |v| {
        v.fetch_add(1, Ordering::Relaxed);
    })
}

fn fixup_add(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (g, n) = counter_arg(fx, a)?;
    let amount = fx.format_arg(a, 1)?;
    let st = fx.module.state.clone();
    Ok(Box::new(move |ctx| {
        let text = ctx.render(&amount);
        let Ok(k) = text.trim().parse::<i64>() else {
            log::warn!("cnt_add: `{text}` is not a number");
            return Flow::False;
        };
        match st
            .get()
            .and_then(|s| s.downcast_ref::<State>())
            .and_then(|s| s.find(&g, &n))
        {
            Some(v) => {
                v.fetch_add(k, Ordering::Relaxed);
                Flow::True
            }
            None => Flow::False,
        }
    }))
}

fn fixup_reset(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    with_counter(fx, a, |v| v.store(0, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_counters_and_rpc() {
        ser_shm::init_once(8 << 20).expect("shm");
        let mut env = ModuleEnv::new(&Counters);
        let s = |t: &str| ParamValue::Str(t.into());
        env.set_param(&Counters, "script_counter", s("foo counts foo"), &|_| None)
            .unwrap();
        env.set_param(&Counters, "script_counter", s("g.bar"), &|_| None)
            .unwrap();
        Counters.init(&env).unwrap();
        let st = env.state.get().unwrap().downcast_ref::<State>().unwrap();
        st.find("script", "foo")
            .unwrap()
            .fetch_add(3, Ordering::Relaxed);
        let mut reg = RpcRegistry::new();
        Counters.register_rpc(&env, &mut reg);
        let r = |m: &str, p: &[&str]| {
            reg.call(m, p.iter().map(|x| RpcValue::Str((*x).into())).collect())
        };
        assert_eq!(
            r("cnt.get", &["script", "foo"]).unwrap(),
            [RpcValue::long(3)]
        );
        assert_eq!(
            r("cnt.help", &["script", "foo"]).unwrap(),
            [RpcValue::Str("counts foo".into())]
        );
        assert_eq!(
            r("cnt.grps_list", &[]).unwrap(),
            [RpcValue::Str("script".into()), RpcValue::Str("g".into())]
        );
        assert_eq!(
            r("cnt.var_list", &["g"]).unwrap(),
            [RpcValue::Str("bar".into())]
        );
        r("cnt.reset", &["script", "foo"]).unwrap();
        assert_eq!(
            r("cnt.grp_get_all", &["script"]).unwrap(),
            [RpcValue::structure([("foo", RpcValue::long(0))])]
        );
        assert!(r("cnt.get", &["script", "nope"]).is_err());
    }
}
