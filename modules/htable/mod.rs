//! `htable`: Kamailio's shared hash tables, the basics.
//!
//! - `modparam("htable", "htable", "name=>size=8;autoexpire=300;initval=0;updateexpire=1")`
//!   (may repeat): a table of 2^size buckets in shm, so every process sees
//!   the same items.  `autoexpire` (seconds, 0 never) drops an item that long
//!   after it was set (`updateexpire` 1, the default: after its last update).
//!   `initval` is what an absent item reads as (else `$null`).  The DB and
//!   DMQ parameters (`dbtable`, `dbmode`, `dmqreplicate`, ...) are accepted
//!   without effect.
//! - `$sht(name=>key)` reads and assigns (`$null` deletes); the key may hold
//!   pseudo-variables (`$sht(ipban=>$si)`).  `$shtex(name=>key)`: seconds
//!   until the item expires (0 never / absent).
//! - `sht_rm(name, key)`, `sht_reset(name)`.
//! - RPC `htable.get name key`, `htable.delete name key`, `htable.sets`/`seti
//!   name key value`, `htable.dump name`, `htable.flush name`,
//!   `htable.listTables`.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use ser_fifo::{RpcCtx, RpcFault, RpcRegistry, RpcValue};
use ser_shm::{hash, HashTable, ShmBox, ShmStr};

use crate::iface::{
    Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, ModuleEnv, ParamExport, ParamValue,
    RouteMask,
};
use crate::runtime::flow::Flow;
use crate::runtime::value::Value;

/// The `htable` module.
pub struct Htable;

static PARAMS: &[ParamExport] = &[
    ParamExport::str_multi("htable", ""),
    ParamExport::str("db_url", ""),
    ParamExport::int("timer_interval", 20),
];

static FUNCTIONS: &[FunctionExport] = &[
    FunctionExport {
        name: "sht_rm",
        min_args: 2,
        max_args: 2,
        routes: RouteMask::ANY,
        fixup: fixup_rm,
    },
    FunctionExport {
        name: "sht_reset",
        min_args: 1,
        max_args: 1,
        routes: RouteMask::ANY,
        fixup: fixup_reset,
    },
];

/// Most buckets: 2^14, Kamailio's limit.
const MAX_SIZE_BITS: u32 = 14;

/// One item: key, int value, string value (None: the value is the int),
/// expiry (unix seconds, 0 never).
type Item = (ShmStr, i64, Option<ShmStr>, u64);

/// A declared table.
struct Table {
    name: String,
    size_bits: u32,
    autoexpire: u64,
    updateexpire: bool,
    initval: Option<i64>,
    map: &'static HashTable<Item>,
}

/// The tables, created in main by `init` (before the fork: every process
/// inherits the same shm tables).
static TABLES: OnceLock<Vec<Table>> = OnceLock::new();

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A table spec: `name=>size=8;autoexpire=300;...`.
fn parse_spec(spec: &str) -> Result<(String, u32, u64, bool, Option<i64>), String> {
    let (name, attrs) = spec
        .split_once("=>")
        .ok_or_else(|| format!("htable: `{spec}`: want name=>attr=value;..."))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("htable: bad table name `{name}`"));
    }
    let (mut size, mut expire, mut update, mut init) = (4u32, 0u64, true, None);
    for a in attrs.split(';').map(str::trim).filter(|a| !a.is_empty()) {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("htable `{name}`: bad attribute `{a}`"))?;
        let (k, v) = (k.trim(), v.trim());
        let num = || {
            v.parse::<i64>()
                .map_err(|_| format!("htable `{name}`: {k}: `{v}` is not a number"))
        };
        match k {
            "size" => size = (num()?.clamp(1, i64::from(MAX_SIZE_BITS))) as u32,
            "autoexpire" => expire = num()?.max(0) as u64,
            "updateexpire" => update = num()? != 0,
            "initval" => init = Some(num()?),
            "dbtable" | "dbmode" | "dmqreplicate" | "cols" | "colnull" | "coldelim" | "colsep" => {}
            _ => return Err(format!("htable `{name}`: unknown attribute `{k}`")),
        }
    }
    Ok((name.to_owned(), size, expire, update, init))
}

fn table(name: &str) -> Option<&'static Table> {
    TABLES.get()?.iter().find(|t| t.name == name)
}

fn live(it: &Item, now: u64) -> bool {
    it.3 == 0 || it.3 > now
}

fn value_of(it: &Item) -> Value {
    match &it.2 {
        Some(s) => Value::Str(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        None => Value::Int(it.1),
    }
}

/// A live item's value and expiry.
fn lookup(t: &Table, key: &str) -> Option<(Value, u64)> {
    let now = now();
    let b = t.map.bucket(hash(&[key.as_bytes()]));
    b.iter()
        .find(|it| it.0.as_bytes() == key.as_bytes() && live(it, now))
        .map(|it| (value_of(it), it.3))
}

/// `$sht(table=>key)`: the item, `initval` or `$null` when absent.
pub fn get(table_name: &str, key: &str) -> Value {
    let Some(t) = table(table_name) else {
        return Value::Null;
    };
    lookup(t, key)
        .map(|(v, _)| v)
        .unwrap_or_else(|| t.initval.map_or(Value::Null, Value::Int))
}

/// `$shtex(table=>key)`: seconds until the item expires (0: never, absent).
pub fn expires_in(table_name: &str, key: &str) -> Value {
    let Some(t) = table(table_name) else {
        return Value::Null;
    };
    let now = now();
    let b = t.map.bucket(hash(&[key.as_bytes()]));
    let left = b
        .iter()
        .find(|it| it.0.as_bytes() == key.as_bytes() && live(it, now))
        .map_or(0, |it| it.3.saturating_sub(now));
    Value::Int(left as i64)
}

/// `$sht(table=>key) = v`; `$null` deletes.
pub fn set(table_name: &str, key: &str, v: Value) -> Result<(), String> {
    let t = table(table_name).ok_or_else(|| format!("no htable `{table_name}`"))?;
    if v.is_null() {
        remove(t, key);
        return Ok(());
    }
    let (int, s) = match &v {
        Value::Int(i) => (*i, None),
        other => (
            0,
            Some(
                ShmStr::new(other.as_str().as_bytes())
                    .map_err(|e| format!("htable {table_name}: {e}"))?,
            ),
        ),
    };
    let now = now();
    let expiry = if t.autoexpire == 0 {
        0
    } else {
        now + t.autoexpire
    };
    let mut b = t.map.bucket(hash(&[key.as_bytes()]));
    b.retain(|it| live(it, now));
    if let Some(it) = b.iter_mut().find(|it| it.0.as_bytes() == key.as_bytes()) {
        it.1 = int;
        it.2 = s;
        if t.updateexpire {
            it.3 = expiry;
        }
        return Ok(());
    }
    let k = ShmStr::new(key.as_bytes()).map_err(|e| format!("htable {table_name}: {e}"))?;
    b.push((k, int, s, expiry))
        .map_err(|e| format!("htable {table_name}: {e}"))
}

fn remove(t: &Table, key: &str) -> bool {
    let mut b = t.map.bucket(hash(&[key.as_bytes()]));
    let before = b.len();
    b.retain(|it| it.0.as_bytes() != key.as_bytes());
    b.len() != before
}

fn reset(t: &Table) {
    for b in t.map.buckets() {
        b.lock().clear();
    }
}

/// Every live item of a table, bucket by bucket: (bucket, name, value).
fn items(t: &Table) -> Vec<(usize, String, Value)> {
    let now = now();
    let mut out = Vec::new();
    for (i, b) in t.map.buckets().enumerate() {
        let g = b.lock();
        for it in g.iter().filter(|it| live(it, now)) {
            out.push((
                i,
                String::from_utf8_lossy(it.0.as_bytes()).into_owned(),
                value_of(it),
            ));
        }
    }
    out
}

impl Module for Htable {
    fn name(&self) -> &'static str {
        "htable"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        if TABLES.get().is_some() {
            return Ok(());
        }
        let mut tables = Vec::new();
        for v in env.all("htable") {
            let ParamValue::Str(spec) = v else { continue };
            if spec.trim().is_empty() {
                continue;
            }
            let (name, size_bits, autoexpire, updateexpire, initval) = parse_spec(spec)?;
            if tables.iter().any(|t: &Table| t.name == name) {
                return Err(format!("htable: table `{name}` declared twice"));
            }
            let e = |e: ser_shm::ShmError| format!("htable {name}: shm: {e}");
            let map =
                ShmBox::leak(ShmBox::new(HashTable::new(1 << size_bits).map_err(e)?).map_err(e)?);
            tables.push(Table {
                name,
                size_bits,
                autoexpire,
                updateexpire,
                initval,
                map,
            });
        }
        let _ = TABLES.set(tables);
        Ok(())
    }
    fn timer_interval(&self, env: &ModuleEnv) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(
            env.int("timer_interval").clamp(1, 3600) as u64,
        ))
    }
    fn on_timer(&self, _env: &ModuleEnv) {
        let now = now();
        for t in TABLES.get().into_iter().flatten() {
            if t.autoexpire == 0 {
                continue;
            }
            for b in t.map.buckets() {
                b.lock().retain(|it| live(it, now));
            }
        }
    }
    fn register_rpc(&self, _env: &ModuleEnv, reg: &mut RpcRegistry) {
        fn tbl(ctx: &dyn RpcCtx) -> Result<&'static Table, RpcFault> {
            let n = ctx.scan_str(0)?;
            table(&n).ok_or_else(|| RpcFault::new(500, "No such htable"))
        }
        fn rpc_value(v: Value) -> RpcValue {
            match v {
                Value::Int(i) => RpcValue::long(i),
                other => RpcValue::Str(other.as_str().into_owned()),
            }
        }
        fn store(ctx: &mut dyn RpcCtx, int: bool) -> Result<(), RpcFault> {
            let t = tbl(ctx)?;
            let k = ctx.scan_str(1)?;
            let v = if int {
                Value::Int(i64::from(ctx.scan_int(2)?))
            } else {
                Value::Str(ctx.scan_str(2)?)
            };
            set(&t.name, &k, v).map_err(|e| RpcFault::new(500, e))
        }
        let results = [
            reg.register("htable.get", &["Get one key from a hash table."], |ctx| {
                let t = tbl(ctx)?;
                let k = ctx.scan_str(1)?;
                let Some((v, expiry)) = lookup(t, &k) else {
                    return Err(RpcFault::new(500, "Key name doesn't exist in htable."));
                };
                ctx.add(RpcValue::structure([(
                    "item",
                    RpcValue::structure([
                        ("name", RpcValue::Str(k)),
                        ("value", rpc_value(v)),
                        ("flags", RpcValue::Int(0)),
                        (
                            "expire",
                            RpcValue::Str(crate::db::format_datetime(expiry as i64)),
                        ),
                    ]),
                )]));
                Ok(())
            }),
            reg.register(
                "htable.delete",
                &["Delete one key from a hash table."],
                |ctx| {
                    let t = tbl(ctx)?;
                    let k = ctx.scan_str(1)?;
                    if !remove(t, &k) {
                        return Err(RpcFault::new(500, "Key name doesn't exist in htable."));
                    }
                    ctx.add(RpcValue::from("Ok. Key deleted."));
                    Ok(())
                },
            ),
            reg.register(
                "htable.sets",
                &["Set one key in a hash table to a string value."],
                |ctx| store(ctx, false),
            ),
            reg.register(
                "htable.seti",
                &["Set one key in a hash table to an integer value."],
                |ctx| store(ctx, true),
            ),
            reg.register("htable.flush", &["Flush hash table."], |ctx| {
                reset(tbl(ctx)?);
                Ok(())
            }),
            reg.register(
                "htable.dump",
                &["Dump the contents of hash table."],
                |ctx| {
                    let t = tbl(ctx)?;
                    let mut slots: Vec<(usize, Vec<RpcValue>)> = Vec::new();
                    for (i, name, v) in items(t) {
                        let ty = if matches!(v, Value::Int(_)) {
                            "int"
                        } else {
                            "str"
                        };
                        let item = RpcValue::structure([
                            ("name", RpcValue::Str(name)),
                            ("value", rpc_value(v)),
                            ("type", RpcValue::Str(ty.into())),
                        ]);
                        match slots.last_mut() {
                            Some((j, s)) if *j == i => s.push(item),
                            _ => slots.push((i, vec![item])),
                        }
                    }
                    for (i, s) in slots {
                        ctx.add(RpcValue::structure([
                            ("entry", RpcValue::Int(i as i32)),
                            ("size", RpcValue::Int(s.len() as i32)),
                            ("slot", RpcValue::Array(s)),
                        ]));
                    }
                    Ok(())
                },
            ),
            reg.register("htable.listTables", &["List all htables."], |ctx| {
                for t in TABLES.get().into_iter().flatten() {
                    ctx.add(RpcValue::structure([
                        ("name", RpcValue::Str(t.name.clone())),
                        ("dbtable", RpcValue::Str(String::new())),
                        ("dbmode", RpcValue::Int(0)),
                        ("expire", RpcValue::Int(t.autoexpire as i32)),
                        ("updateexpire", RpcValue::Int(i32::from(t.updateexpire))),
                        ("size", RpcValue::Int(1 << t.size_bits)),
                        ("dmqreplicate", RpcValue::Int(0)),
                    ]));
                }
                Ok(())
            }),
        ];
        for e in results.into_iter().filter_map(Result::err) {
            log::warn!("htable: rpc: {e}");
        }
    }
}

/// A table-name argument: must be declared by a `htable` modparam.
fn table_arg(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<String, FixupError> {
    let name = fx.str_arg(a, 0)?;
    let declared = fx.module.all("htable").iter().any(|v| match v {
        ParamValue::Str(s) => parse_spec(s).is_ok_and(|(n, ..)| n == name),
        ParamValue::Int(_) => false,
    });
    if !declared {
        return Err(FixupError::arg(0, format!("no htable `{name}` declared")));
    }
    Ok(name)
}

fn fixup_rm(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let name = table_arg(fx, a)?;
    let key = fx.format_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        let k = ctx.render(&key);
        Flow::from_bool(table(&name).is_some_and(|t| remove(t, &k)))
    }))
}

fn fixup_reset(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let name = table_arg(fx, a)?;
    Ok(Box::new(move |_ctx| match table(&name) {
        Some(t) => {
            reset(t);
            Flow::True
        }
        None => Flow::False,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse_spec("ipban=>size=8;autoexpire=300;").unwrap(),
            ("ipban".into(), 8, 300, true, None)
        );
        assert_eq!(
            parse_spec("a=>size=99;initval=0;updateexpire=0").unwrap(),
            ("a".into(), 14, 0, false, Some(0))
        );
        assert!(parse_spec("nope").is_err());
        assert!(parse_spec("t=>size=x").is_err());
        assert!(parse_spec("t=>colour=red").is_err());
    }

    #[test]
    fn items_rpc_and_expiry() {
        ser_shm::init_once(8 << 20).expect("shm");
        let mut env = ModuleEnv::new(&Htable);
        env.set_param(
            &Htable,
            "htable",
            ParamValue::Str("t1=>size=2;autoexpire=100".into()),
            &|_| None,
        )
        .unwrap();
        Htable.init(&env).unwrap();
        assert_eq!(get("t1", "k"), Value::Null);
        set("t1", "k", Value::Int(1)).unwrap();
        set("t1", "s", Value::Str("v".into())).unwrap();
        assert_eq!(get("t1", "k"), Value::Int(1));
        assert!(matches!(expires_in("t1", "k"), Value::Int(n) if (99..=100).contains(&n)));
        let mut reg = RpcRegistry::new();
        Htable.register_rpc(&env, &mut reg);
        let s = |t: &str| RpcValue::Str(t.into());
        let r = reg.call("htable.get", vec![s("t1"), s("s")]).unwrap();
        let RpcValue::Struct(item) = &r[0] else {
            panic!("{r:?}")
        };
        let RpcValue::Struct(members) = &item[0].1 else {
            panic!("{r:?}")
        };
        let r_expire = members[3].1.clone();
        assert_eq!(r_expire.as_str().map(str::len), Some(19), "{r:?}");
        assert_eq!(
            r,
            [RpcValue::structure([(
                "item",
                RpcValue::structure([
                    ("name", s("s")),
                    ("value", s("v")),
                    ("flags", RpcValue::Int(0)),
                    ("expire", r_expire.clone()),
                ])
            )])]
        );
        assert!(!reg.call("htable.dump", vec![s("t1")]).unwrap().is_empty());
        reg.call("htable.delete", vec![s("t1"), s("k")]).unwrap();
        assert_eq!(get("t1", "k"), Value::Null);
        set("t1", "s", Value::Null).unwrap();
        assert!(items(table("t1").unwrap()).is_empty());
        assert!(reg.call("htable.get", vec![s("nope"), s("k")]).is_err());
    }
}
