//! Custom cfg parameters (`pstn.gw_ip = "" desc "..."`), read by
//! `$sel(cfg_get.pstn.gw_ip)` / `@cfg_get.pstn.gw_ip`.  Behind a trait so the
//! shm-backed, runtime-changeable store (cfg framework) can replace it.

use std::collections::HashMap;

use crate::runtime::value::Value;

/// Read access to cfg parameters.
pub trait CfgStore: Send + Sync {
    /// Value of `group.name`, if declared.
    fn get(&self, group: &str, name: &str) -> Option<Value>;

    /// Takes up values changed at runtime (`cfg.set_now_*` over the ctl
    /// socket).  A worker calls this at each message boundary, so one message
    /// sees one value of each parameter; a fixed store does nothing.
    fn refresh(&self) {}
}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgParam {
    /// Current value.
    pub value: Value,
    /// `desc` text.
    pub desc: String,
}

/// The config-file values, fixed after load.
#[derive(Debug, Clone, Default)]
pub struct StaticCfg {
    params: HashMap<(String, String), CfgParam>,
}

impl StaticCfg {
    /// Declare (or redeclare) `group.name`.
    pub fn declare(&mut self, group: &str, name: &str, value: Value, desc: &str) {
        self.params.insert(
            (group.to_owned(), name.to_owned()),
            CfgParam {
                value,
                desc: desc.to_owned(),
            },
        );
    }

    /// Every declared parameter as `(group, name, param)`, sorted by group
    /// and name.
    pub fn params(&self) -> Vec<(&str, &str, &CfgParam)> {
        let mut v: Vec<_> = self
            .params
            .iter()
            .map(|((g, n), p)| (g.as_str(), n.as_str(), p))
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// Whether `group.name` is declared.
    pub fn has(&self, group: &str, name: &str) -> bool {
        self.params
            .contains_key(&(group.to_owned(), name.to_owned()))
    }
}

impl CfgStore for StaticCfg {
    fn get(&self, group: &str, name: &str) -> Option<Value> {
        self.params
            .get(&(group.to_owned(), name.to_owned()))
            .map(|p| p.value.clone())
    }
}
