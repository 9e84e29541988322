//! Runtime cfg parameters (SER 2.x's cfg framework, Kamailio's `cfg.*`): the
//! config's custom parameters (`pstn.gw_ip = "" desc "PSTN GW Address"`) and
//! the core's runtime ones (`core.debug`), changeable over the ctl socket
//! without a restart.
//!
//! The names, types and descriptions are fixed at config load and live in
//! private memory (every child inherits the same copy at fork).  The values
//! live in shm: one slot per parameter under one lock, plus a version counter
//! bumped on every change.  Each process keeps a private snapshot and takes
//! up a new one in [`CfgStore::refresh`] — a worker calls it at each message
//! boundary, the timer process each tick — so one message never sees two
//! values of a parameter, and the common case (nothing changed) is one atomic
//! load.  A change of `core.debug` sets the process's log level when the
//! process takes up the snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use ser_modules::runtime::cfg::{CfgStore, StaticCfg};
use ser_modules::Value;
use ser_shm::{ShmBox, ShmSlice, ShmStr};

/// Group of the core's runtime parameters (`core.debug`).
const CORE_GROUP: &str = "core";

/// The shm part: version counter, and per parameter `(int value, text value)`.
type Shared = (AtomicU64, ser_shm::Mutex<ShmSlice<(i64, ShmStr)>>);

/// Why a value cannot be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// No parameter `group.name`.
    Unknown,
    /// A text that is not a number for an integer parameter.
    NotANumber,
    /// Shared memory is full.
    NoMemory,
}

/// One declared parameter.
#[derive(Debug, Clone)]
struct Def {
    group: String,
    name: String,
    desc: String,
    int: bool,
}

#[derive(Debug)]
struct Snapshot {
    version: u64,
    values: Vec<Value>,
}

/// The runtime cfg store (see the module docs).
#[derive(Debug)]
pub struct RuntimeCfg {
    defs: Vec<Def>,
    index: HashMap<(String, String), usize>,
    shared: OnceLock<&'static Shared>,
    local: Mutex<Snapshot>,
}

impl RuntimeCfg {
    /// The core parameters (`core.debug` = `debug`) and the config's custom
    /// ones with their config values.
    pub fn new(debug: i32, custom: &StaticCfg) -> RuntimeCfg {
        let mut defs = vec![Def {
            group: CORE_GROUP.into(),
            name: "debug".into(),
            desc: "debug level".into(),
            int: true,
        }];
        let mut values = vec![Value::Int(i64::from(debug))];
        for (group, name, p) in custom.params() {
            defs.push(Def {
                group: group.into(),
                name: name.into(),
                desc: p.desc.clone(),
                int: matches!(p.value, Value::Int(_)),
            });
            values.push(match &p.value {
                Value::Null => Value::Str(String::new()),
                v => v.clone(),
            });
        }
        let index = defs
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.group.clone(), d.name.clone()), i))
            .collect();
        RuntimeCfg {
            defs,
            index,
            shared: OnceLock::new(),
            local: Mutex::new(Snapshot { version: 0, values }),
        }
    }

    /// Copies the values into shm (in main, after `ser_shm::init`, before the
    /// first fork); from then on changes reach every process.
    pub fn attach_shm(&self) -> Result<(), String> {
        let values = self.snapshot_values();
        let slots = ShmSlice::from_fn(values.len(), |_| (0i64, ShmStr::empty()))
            .map_err(|e| e.to_string())?;
        let shared: Shared = (AtomicU64::new(0), ser_shm::Mutex::new(slots));
        let shared: &'static Shared = ShmBox::leak(ShmBox::new(shared).map_err(|e| e.to_string())?);
        {
            let mut slots = shared.1.lock();
            for (slot, v) in slots.iter_mut().zip(&values) {
                *slot = to_slot(v).map_err(|e| e.to_string())?;
            }
        }
        self.shared
            .set(shared)
            .map_err(|_| "runtime cfg attached twice".to_string())
    }

    fn snapshot_values(&self) -> Vec<Value> {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values
            .clone()
    }

    /// Every parameter as `(group, name)`, core first, then by group and name.
    pub fn names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.defs
            .iter()
            .map(|d| (d.group.as_str(), d.name.as_str()))
    }

    /// `(description, is an integer)` of `group.name`.
    pub fn describe(&self, group: &str, name: &str) -> Option<(&str, bool)> {
        let d = &self.defs[self.find(group, name)?];
        Some((d.desc.as_str(), d.int))
    }

    fn find(&self, group: &str, name: &str) -> Option<usize> {
        self.index
            .get(&(group.to_owned(), name.to_owned()))
            .copied()
    }

    /// The current value of `group.name` as every process will see it at its
    /// next message (read from shm, not from this process's snapshot).
    pub fn current(&self, group: &str, name: &str) -> Option<Value> {
        let i = self.find(group, name)?;
        match self.shared.get() {
            Some(shared) => {
                let slots = shared.1.lock();
                Some(from_slot(&slots[i], self.defs[i].int))
            }
            None => self.snapshot_values().get(i).cloned(),
        }
    }

    /// Sets `group.name` for every process (Kamailio's `cfg.set_now_*`): text
    /// for an integer parameter must be a number, a number for a text
    /// parameter is written as text.
    pub fn set(&self, group: &str, name: &str, value: Value) -> Result<(), SetError> {
        let change = self.check(group, name, value)?;
        self.commit(vec![change])
    }

    /// Validates a change of `group.name` and converts `value` to the
    /// parameter's type: the change [`commit`](Self::commit) takes.
    pub fn check(&self, group: &str, name: &str, value: Value) -> Result<Change, SetError> {
        let index = self.find(group, name).ok_or(SetError::Unknown)?;
        let value = match (self.defs[index].int, value) {
            (true, Value::Str(s)) => {
                Value::Int(s.trim().parse().map_err(|_| SetError::NotANumber)?)
            }
            (true, Value::Null) => Value::Int(0),
            (false, Value::Int(n)) => Value::Str(n.to_string()),
            (false, Value::Null) => Value::Str(String::new()),
            (_, v) => v,
        };
        Ok(Change { index, value })
    }

    /// `(group, name, new value)` of a checked change (`cfg.diff`).
    pub fn describe_change<'a>(&'a self, c: &'a Change) -> (&'a str, &'a str, &'a Value) {
        let d = &self.defs[c.index];
        (&d.group, &d.name, &c.value)
    }

    /// Applies `changes` at once: one version step, so a message sees all of
    /// them or none (Kamailio's `cfg.commit`).
    pub fn commit(&self, changes: Vec<Change>) -> Result<(), SetError> {
        match self.shared.get() {
            Some(shared) => {
                // Allocate before locking: the lock is held only to swap.
                let slots: Vec<(usize, (i64, ShmStr))> = changes
                    .iter()
                    .map(|c| to_slot(&c.value).map(|s| (c.index, s)))
                    .collect::<Result<_, _>>()
                    .map_err(|_| SetError::NoMemory)?;
                let old: Vec<(i64, ShmStr)> = {
                    let mut shm = shared.1.lock();
                    let old = slots
                        .into_iter()
                        .map(|(i, slot)| std::mem::replace(&mut shm[i], slot))
                        .collect();
                    shared.0.fetch_add(1, Ordering::Release);
                    old
                };
                drop(old);
                self.refresh();
            }
            None => {
                let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                for c in changes {
                    if c.index == DEBUG_INDEX {
                        apply_debug(&c.value);
                    }
                    local.values[c.index] = c.value;
                }
                local.version += 1;
            }
        }
        Ok(())
    }
}

/// A checked change of one parameter (see [`RuntimeCfg::check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    index: usize,
    value: Value,
}

/// `core.debug` is always the first parameter.
const DEBUG_INDEX: usize = 0;

fn to_slot(v: &Value) -> Result<(i64, ShmStr), ser_shm::ShmError> {
    Ok(match v {
        Value::Int(n) => (*n, ShmStr::empty()),
        other => (0, ShmStr::new(other.as_str().as_bytes())?),
    })
}

fn from_slot(slot: &(i64, ShmStr), int: bool) -> Value {
    if int {
        Value::Int(slot.0)
    } else {
        Value::Str(String::from_utf8_lossy(slot.1.as_bytes()).into_owned())
    }
}

fn apply_debug(v: &Value) {
    if let Value::Int(n) = v {
        let level = i32::try_from(*n).unwrap_or(if *n < 0 { i32::MIN } else { i32::MAX });
        log::set_max_level(crate::logging::level_filter(level));
    }
}

impl CfgStore for RuntimeCfg {
    fn get(&self, group: &str, name: &str) -> Option<Value> {
        let i = self.find(group, name)?;
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        local.values.get(i).cloned()
    }

    fn refresh(&self) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let version = shared.0.load(Ordering::Acquire);
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        if local.version == version {
            return;
        }
        let debug_before = local.values.get(DEBUG_INDEX).cloned();
        {
            let slots = shared.1.lock();
            local.values = slots
                .iter()
                .zip(&self.defs)
                .map(|(s, d)| from_slot(s, d.int))
                .collect();
            // Read under the lock: a change after it bumps the version again.
            local.version = shared.0.load(Ordering::Acquire);
        }
        if let Some(debug) = local.values.get(DEBUG_INDEX) {
            if debug_before.as_ref() != Some(debug) {
                apply_debug(debug);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom() -> StaticCfg {
        let mut c = StaticCfg::default();
        c.declare(
            "pstn",
            "gw_ip",
            Value::Str(String::new()),
            "PSTN GW Address",
        );
        c.declare("pstn", "n", Value::Int(5), "a number");
        c
    }

    #[test]
    fn private_until_attached() {
        let cfg = RuntimeCfg::new(2, &custom());
        assert_eq!(
            cfg.names().collect::<Vec<_>>(),
            [("core", "debug"), ("pstn", "gw_ip"), ("pstn", "n")]
        );
        assert_eq!(cfg.get("pstn", "n"), Some(Value::Int(5)));
        assert_eq!(
            cfg.set("pstn", "n", Value::Str("x".into())),
            Err(SetError::NotANumber)
        );
        assert_eq!(
            cfg.set("pstn", "nope", Value::Int(1)),
            Err(SetError::Unknown)
        );
        cfg.set("pstn", "n", Value::Str(" 7".into())).unwrap();
        cfg.set("pstn", "gw_ip", Value::Int(9)).unwrap();
        assert_eq!(cfg.get("pstn", "n"), Some(Value::Int(7)));
        assert_eq!(cfg.current("pstn", "gw_ip"), Some(Value::Str("9".into())));
        assert_eq!(
            cfg.describe("pstn", "gw_ip"),
            Some(("PSTN GW Address", false))
        );
    }

    #[test]
    fn shm_values_reach_a_snapshot_only_on_refresh() {
        ser_shm::init_once(4 << 20).unwrap();
        let cfg = RuntimeCfg::new(0, &custom());
        cfg.attach_shm().unwrap();
        // A second process's view: same shm, its own snapshot.
        let other = RuntimeCfg {
            defs: cfg.defs.clone(),
            index: cfg.index.clone(),
            shared: cfg.shared.clone(),
            local: Mutex::new(Snapshot {
                version: 0,
                values: cfg.snapshot_values(),
            }),
        };
        cfg.set("pstn", "gw_ip", Value::Str("127.0.0.9".into()))
            .unwrap();
        assert_eq!(
            cfg.get("pstn", "gw_ip"),
            Some(Value::Str("127.0.0.9".into()))
        );
        assert_eq!(other.get("pstn", "gw_ip"), Some(Value::Str(String::new())));
        assert_eq!(
            other.current("pstn", "gw_ip"),
            Some(Value::Str("127.0.0.9".into()))
        );
        other.refresh();
        assert_eq!(
            other.get("pstn", "gw_ip"),
            Some(Value::Str("127.0.0.9".into()))
        );
        cfg.set("pstn", "gw_ip", Value::Str("x".into())).unwrap();
        cfg.set("pstn", "gw_ip", Value::Str("y".into())).unwrap();
        other.refresh();
        assert_eq!(other.get("pstn", "gw_ip"), Some(Value::Str("y".into())));
        assert_eq!(other.get("core", "debug"), Some(Value::Int(0)));
    }
}
