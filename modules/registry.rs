//! The static module registry (replaces `loadmodule` + dlopen): every built-in
//! module, the catalogue of SER/Kamailio modules not built in yet, and the set
//! of modules a config loaded with their parameters.

use crate::iface::{FunctionExport, Module, ModuleEnv, ParamValue};

/// Every built-in module, in a stable order.
pub fn builtin() -> &'static [&'static dyn Module] {
    static ALL: &[&dyn Module] = &[
        &crate::sl::Sl,
        &crate::maxfwd::Maxfwd,
        &crate::print::Print,
        &crate::textops::Textops,
        &crate::siputils::Siputils,
        &crate::xlog::Xlog,
        &crate::pv::Pv,
        &crate::sanity::Sanity,
        &crate::kex::Kex,
        &crate::ctl::Ctl,
        &crate::ctl::MiFifo,
        &crate::ctl::MiRpc,
        &crate::ctl::CfgRpc,
        &crate::tm::Tm,
        &crate::tmx::Tmx,
        &crate::usrloc::Usrloc,
        &crate::registrar::Registrar,
        &crate::auth::AuthModule,
        &crate::auth_db::AuthDb,
        &crate::domain::DomainModule,
        &crate::uri_db::UriDb,
        &crate::rr::Rr,
        &crate::acc::Acc,
        &crate::acc_db::AccDb,
        &crate::avp::AvpModule,
        &crate::avp_db::AvpDb,
        &crate::gflags::Gflags,
        &crate::permissions::Permissions,
        &crate::presence::Presence,
        &crate::presence_xml::PresenceXml,
        &crate::nathelper::Nathelper,
        &crate::rtpproxy::Rtpproxy,
        &crate::tls::Tls,
        &crate::pike::Pike,
        &crate::pipelimit::Pipelimit,
        &crate::xmlrpc::Xmlrpc,
        &crate::jsonrpcs::Jsonrpcs,
        &crate::corex::Corex,
        &crate::counters::Counters,
        &crate::textopsx::Textopsx,
        &crate::debugger::Debugger,
        &crate::htable::Htable,
        &crate::xhttp::Xhttp,
        &crate::rtpengine::Rtpengine,
        &crate::alias_db::AliasDb,
        &crate::speeddial::Speeddial,
        &crate::db::drivers::DB_SQLITE,
        &crate::db::drivers::DB_POSTGRES,
        &crate::db::drivers::DB_MYSQL,
        &crate::db::drivers::MYSQL,
    ];
    ALL
}

/// A built-in module by name.
pub fn find_builtin(name: &str) -> Option<&'static dyn Module> {
    builtin().iter().copied().find(|m| m.name() == name)
}

/// SER / Kamailio modules that exist but are not built in yet, with the
/// functions configs commonly call.  Lets `-c` say "t_relay is in module tm,
/// which is not available" instead of "unknown function".
pub const NOT_YET: &[(&str, &[&str])] = &[
    ("usrloc", &[]),
    (
        "registrar",
        &[
            "save",
            "lookup",
            "save_contacts",
            "lookup_contacts",
            "registered",
        ],
    ),
    (
        "auth",
        &["www_challenge", "proxy_challenge", "consume_credentials"],
    ),
    (
        "auth_db",
        &[
            "www_authorize",
            "proxy_authorize",
            "www_authenticate",
            "proxy_authenticate",
        ],
    ),
    (
        "domain",
        &["lookup_domain", "is_uri_host_local", "is_from_local"],
    ),
    ("uri_db", &["lookup_user", "check_to", "check_from"]),
    ("db_mysql", &[]),
    ("mysql", &[]),
];

/// The module that provides `func` among the not-yet-built-in ones.
pub fn not_yet_module_of(func: &str) -> Option<&'static str> {
    NOT_YET
        .iter()
        .find(|(_, fns)| fns.contains(&func))
        .map(|(m, _)| *m)
}

/// A module a config loaded: the code and its environment.
pub struct Loaded {
    /// The module.
    pub module: &'static dyn Module,
    /// Its parameters and state.
    pub env: ModuleEnv,
}

/// Why a `loadmodule` / `modparam` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// A SER module we know of, not built in yet.
    NotYet(String),
    /// Not a module name we know.
    Unknown(String),
    /// modparam: no loaded module matches the module list/regex.
    NoModuleMatches(String),
    /// modparam: the module list is not a valid regex.
    BadModuleRegex(String),
    /// modparam: bad parameter name or value.
    Param(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::NotYet(m) => write!(
                f,
                "module `{m}` is not available in this build (not implemented yet)"
            ),
            LoadError::Unknown(m) => write!(f, "unknown module `{m}`"),
            LoadError::NoModuleMatches(m) => write!(f, "modparam: no loaded module matches `{m}`"),
            LoadError::BadModuleRegex(e) => write!(f, "modparam: bad module name regex: {e}"),
            LoadError::Param(e) => write!(f, "modparam: {e}"),
        }
    }
}

/// Module name from a `loadmodule` argument: `/usr/lib/ser/modules/sl.so`,
/// `tm.so` and `sl` all name the built-in module.
pub fn module_name_of(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".so").unwrap_or(base)
}

/// The modules a config loaded, in load order.
#[derive(Default)]
pub struct Modules {
    loaded: Vec<Loaded>,
    /// Requested but not available (their modparams are skipped, not errors).
    pub missing: Vec<String>,
}

impl Modules {
    /// `loadmodule "path"`.  Loading a module twice is a no-op.
    pub fn load(&mut self, path: &str) -> Result<&'static dyn Module, LoadError> {
        let name = module_name_of(path);
        if let Some(l) = self.loaded.iter().find(|l| l.module.name() == name) {
            return Ok(l.module);
        }
        match find_builtin(name) {
            Some(m) => {
                if path != name {
                    log::info!("loadmodule \"{path}\": using built-in module `{name}`");
                }
                self.loaded.push(Loaded {
                    module: m,
                    env: ModuleEnv::new(m),
                });
                Ok(m)
            }
            None => {
                self.missing.push(name.to_owned());
                if NOT_YET.iter().any(|(m, _)| *m == name) {
                    Err(LoadError::NotYet(name.to_owned()))
                } else {
                    Err(LoadError::Unknown(name.to_owned()))
                }
            }
        }
    }

    /// `modparam("mod1|mod2", "param", value)`: the module part is a regex
    /// matched against whole names of loaded modules.
    pub fn modparam(
        &mut self,
        modules: &str,
        param: &str,
        value: &ParamValue,
        flag: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<(), LoadError> {
        let re = regex::Regex::new(&format!("^(?:{modules})$"))
            .map_err(|e| LoadError::BadModuleRegex(e.to_string()))?;
        let mut matched = false;
        for l in self
            .loaded
            .iter_mut()
            .filter(|l| re.is_match(l.module.name()))
        {
            matched = true;
            l.env
                .set_param(l.module, param, value.clone(), flag)
                .map_err(LoadError::Param)?;
        }
        if !matched && !self.missing.iter().any(|m| re.is_match(m)) {
            return Err(LoadError::NoModuleMatches(modules.to_owned()));
        }
        Ok(())
    }

    /// Find a script function among loaded modules.
    pub fn function(&self, name: &str) -> Option<(&Loaded, &'static FunctionExport)> {
        self.loaded.iter().find_map(|l| {
            l.module
                .functions()
                .iter()
                .find(|f| f.name == name)
                .map(|f| (l, f))
        })
    }

    /// The loaded modules.
    pub fn iter(&self) -> impl Iterator<Item = &Loaded> {
        self.loaded.iter()
    }

    /// Run every module's `init` (main process, before fork).
    pub fn init_all(&self) -> Result<(), String> {
        for l in &self.loaded {
            l.module
                .init(&l.env)
                .map_err(|e| format!("module `{}` init failed: {e}", l.module.name()))?;
        }
        Ok(())
    }

    /// Run every module's per-child init.
    pub fn child_init_all(&self, rank: i32) -> Result<(), String> {
        for l in &self.loaded {
            l.module
                .child_init(&l.env, rank)
                .map_err(|e| format!("module `{}` child init failed: {e}", l.module.name()))?;
        }
        Ok(())
    }

    /// Register every loaded module's RPC methods.
    pub fn register_rpc(&self, reg: &mut ser_fifo::RpcRegistry) {
        for l in &self.loaded {
            l.module.register_rpc(&l.env, reg);
        }
    }

    /// Give every loaded module the engine, so tm can run failure/onreply/branch
    /// routes (call once, in main after loading, with the script in an `Arc`).
    pub fn set_route_runner(&self, runner: std::sync::Weak<dyn crate::iface::RouteRunner>) {
        for l in &self.loaded {
            let _ = l.env.routes.set(runner.clone());
        }
    }

    /// Every module's reply hook, in load order; `false` as soon as one took
    /// the reply (then the engine must not forward it statelessly).
    pub fn on_reply_all(&self, ctx: &mut crate::runtime::ctx::MsgCtx<'_>) -> bool {
        self.loaded.iter().all(|l| l.module.on_reply(&l.env, ctx))
    }

    /// Every module's timer hook (the timer process calls this on each tick).
    pub fn tick_all(&self, proc_env: &crate::runtime::ctx::Env, now: std::time::Instant) {
        for l in &self.loaded {
            l.module.on_tick(&l.env, proc_env, now);
        }
    }

    /// Run every module's destroy (reverse load order).
    pub fn destroy_all(&self) {
        for l in self.loaded.iter().rev() {
            l.module.destroy(&l.env);
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a third of the name's length (at least 2 edits).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        assert_eq!(module_name_of("/usr/lib/ser/modules/sl.so"), "sl");
        assert_eq!(module_name_of("tm.so"), "tm");
        assert_eq!(module_name_of("maxfwd"), "maxfwd");
    }

    #[test]
    fn load_and_modparam() {
        let mut m = Modules::default();
        assert!(m.load("/x/maxfwd.so").is_ok());
        assert_eq!(
            m.load("bogus").err(),
            Some(LoadError::Unknown("bogus".into()))
        );
        let no_flags = |_: &str| None;
        m.modparam("maxfwd", "max_limit", &ParamValue::Int(20), &no_flags)
            .unwrap();
        assert_eq!(m.iter().next().unwrap().env.int("max_limit"), 20);
        // regex list with a missing module is fine; with nothing known is an error
        m.modparam(
            "sl|maxfwd",
            "max_limit",
            &ParamValue::Str("30".into()),
            &no_flags,
        )
        .unwrap();
        assert_eq!(m.iter().next().unwrap().env.int("max_limit"), 30);
        assert_eq!(
            m.modparam("nothere", "x", &ParamValue::Int(1), &no_flags),
            Err(LoadError::NoModuleMatches("nothere".into()))
        );
        assert!(matches!(
            m.modparam("maxfwd", "nope", &ParamValue::Int(1), &no_flags),
            Err(LoadError::Param(_))
        ));
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            closest("sl_send_replay", ["sl_send_reply", "t_reply"]),
            Some("sl_send_reply")
        );
        assert_eq!(closest("zzz", ["sl_send_reply"]), None);
    }
}
