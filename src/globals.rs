//! The core globals (SER's `globals.h`): defaults, then the config file's
//! core assignments, then the command line, which wins.

use std::path::PathBuf;

use ser_children::daemon::{DaemonOptions, ForkMode};
use ser_children::socket::MAX_RECV_BUFFER_SIZE;
use ser_children::Proto;
use ser_parser::ast::{Item, Value, ValueKind};
use ser_parser::Diagnostic;

use crate::flags::{CmdLine, DEFAULT_CFG_FILE, DEFAULT_MODULES_DIR};
use crate::listen::ListenSpec;

/// SER's default shared memory size in MB (`SHM_MEM_SIZE`).
pub const DEFAULT_SHM_MB: u32 = 32;

/// The core settings after defaults, config and command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Globals {
    /// `-f`.
    pub cfg_file: PathBuf,
    /// `-L`, `loadpath`.
    pub modules_dir: String,
    /// `debug=` (SER level: -3 alert .. 0 warning .. 3 debug).
    pub debug: i32,
    /// Number of `-D`; `fork=no` counts as one.
    pub dont_fork: u32,
    /// `-E`, `log_stderror=yes`.
    pub log_stderr: bool,
    /// `log_facility=` (`LOG_DAEMON`).
    pub log_facility: String,
    /// `-l`, `listen=`.
    pub listen: Vec<ListenSpec>,
    /// `alias=`: other names of this server (same syntax as `listen`).
    pub aliases: Vec<ListenSpec>,
    /// `port=`: the port of listen addresses that give none.
    pub port: u16,
    /// `-n`, `children=`: UDP receivers per socket.
    pub children: u32,
    /// `-N`, `tcp_children=`; `None` = same as `children`.
    pub tcp_children: Option<u32>,
    /// `-T`, `disable_tcp=yes`.
    pub disable_tcp: bool,
    /// `tcp_connection_lifetime=`, seconds.
    pub tcp_lifetime: u32,
    /// `child_respawn=yes`: main replaces a dead child instead of stopping
    /// the server (SER stops: the default).
    pub child_respawn: bool,
    /// `-m`, MB.
    pub shm_mb: u32,
    /// `-b`: receive buffer probing ceiling.
    pub rcvbuf_max: u32,
    /// `-u`, `user=`/`uid=`.
    pub user: Option<String>,
    /// `-g`, `group=`/`gid=`.
    pub group: Option<String>,
    /// `-t`, `chroot=`.
    pub chroot: Option<PathBuf>,
    /// `-w`, `workdir=`/`wdir=`.
    pub wdir: Option<PathBuf>,
    /// `-P`.
    pub pid_file: Option<PathBuf>,
    /// `-G`.
    pub pgid_file: Option<PathBuf>,
    /// `mhomed=`.
    pub mhomed: bool,
    /// `-v`, `check_via=`.
    pub check_via: bool,
    /// `-r`, `dns=`.
    pub dns: bool,
    /// `-R`, `rev_dns=`.
    pub rev_dns: bool,
    /// `-a`, `auto_aliases=`.
    pub auto_aliases: bool,
    /// `-W`, `tcp_poll_method=`; `None` = epoll_lt.
    pub poll_method: Option<String>,
    /// `tcp_connect_timeout=`, seconds; `None` = the children's default.
    pub tcp_connect_timeout: Option<u32>,
    /// `tcp_max_connections=`: open TCP connections tcp main allows.
    pub tcp_max_connections: u32,
    /// `tcp_send_timeout=`, seconds; `None` = the children's default.
    pub tcp_send_timeout: Option<u32>,
    /// `tcp_msg_read_timeout=`, seconds; `None` = the children's default (20).
    pub tcp_msg_read_timeout: Option<u32>,
    /// `tcp_conn_wq_max=`, bytes queued per connection; `None` = default.
    pub tcp_conn_wq_max: Option<u32>,
    /// `tcp_async=` (default yes): connects and writes never block.
    pub tcp_async: bool,
    /// `tcp_accept_aliases=` (Via aliases are recorded anyway).
    pub tcp_accept_aliases: bool,
    /// `tcp_keepalive=` (SER's default yes: SO_KEEPALIVE), with
    /// `tcp_keepidle=`, `tcp_keepintvl=`, `tcp_keepcnt=`.
    pub tcp_keepalive: bool,
    /// See `tcp_keepalive`: idle, interval, count.
    pub tcp_keep: [Option<u32>; 3],
    /// `advertised_address=`: the host put in Via/Record-Route instead of
    /// a socket's address (sockets with their own `advertise` keep theirs).
    pub advertised_address: Option<String>,
    /// `advertised_port=`: likewise for the port.
    pub advertised_port: Option<u16>,
    /// `listen=... advertise host[:port]`: the spec and what it advertises.
    pub listen_advertise: Vec<(ListenSpec, (String, Option<u16>))>,
    /// `use_dst_blacklist=`: destinations whose send failed are skipped.
    pub use_dst_blacklist: bool,
    /// `dst_blacklist_expire=`, seconds a failed destination stays skipped.
    pub dst_blacklist_expire: u32,
    /// `dst_blacklist_mem=` (KB) and `dst_blacklist_gc_interval=` (s).
    pub dst_blacklist_mem_gc: (u32, u32),
    /// The `dns_*` and `use_dns_cache` parameters.
    pub dns_cfg: DnsGlobals,
    /// `-O`.
    pub opt_level: u32,
    /// `-A` defines for the preprocessor.
    pub defines: Vec<(String, Option<String>)>,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            cfg_file: PathBuf::from(DEFAULT_CFG_FILE),
            modules_dir: DEFAULT_MODULES_DIR.into(),
            debug: 0,
            dont_fork: 0,
            log_stderr: false,
            log_facility: "LOG_DAEMON".into(),
            listen: Vec::new(),
            aliases: Vec::new(),
            port: 5060,
            children: 8,
            tcp_children: None,
            disable_tcp: false,
            tcp_lifetime: 120,
            child_respawn: false,
            shm_mb: DEFAULT_SHM_MB,
            rcvbuf_max: MAX_RECV_BUFFER_SIZE as u32,
            user: None,
            group: None,
            chroot: None,
            wdir: None,
            pid_file: None,
            pgid_file: None,
            mhomed: false,
            check_via: false,
            dns: false,
            rev_dns: false,
            auto_aliases: true,
            poll_method: None,
            tcp_connect_timeout: None,
            tcp_send_timeout: None,
            tcp_msg_read_timeout: None,
            tcp_conn_wq_max: None,
            tcp_async: true,
            tcp_accept_aliases: false,
            tcp_keepalive: true,
            tcp_keep: [None; 3],
            tcp_max_connections: 2048,
            advertised_address: None,
            advertised_port: None,
            listen_advertise: Vec::new(),
            use_dst_blacklist: false,
            dst_blacklist_expire: 60,
            dst_blacklist_mem_gc: (250, 60),
            dns_cfg: DnsGlobals::default(),
            opt_level: 2,
            defines: Vec::new(),
        }
    }
}

fn int(v: &Value) -> Result<i64, Diagnostic> {
    match &v.kind {
        ValueKind::Int(n) => Ok(*n),
        ValueKind::Bool(b) => Ok(i64::from(*b)),
        _ => Err(Diagnostic::error(v.span, "number expected")),
    }
}

fn ranged<T: TryFrom<i64>>(v: &Value) -> Result<T, Diagnostic> {
    T::try_from(int(v)?).map_err(|_| Diagnostic::error(v.span, "number out of range"))
}

fn boolean(v: &Value) -> Result<bool, Diagnostic> {
    match &v.kind {
        ValueKind::Bool(b) => Ok(*b),
        ValueKind::Int(n) => Ok(*n != 0),
        _ => Err(Diagnostic::error(v.span, "yes/no expected")),
    }
}

fn text(v: &Value) -> Result<String, Diagnostic> {
    match &v.kind {
        ValueKind::Str(s) | ValueKind::Ident(s) => Ok(s.clone()),
        ValueKind::Int(n) => Ok(n.to_string()),
        ValueKind::Ip(ip) => Ok(ip.to_string()),
        _ => Err(Diagnostic::error(v.span, "string expected")),
    }
}

/// `listen=... advertise host[:port]` pairs.
type Advertised = Vec<(ListenSpec, (String, Option<u16>))>;

fn listen_specs(
    v: &Value,
    out: &mut Vec<ListenSpec>,
    adv: &mut Advertised,
) -> Result<(), Diagnostic> {
    let bad = |msg: String| Diagnostic::error(v.span, msg);
    match &v.kind {
        ValueKind::Socket(s) => {
            let proto = match &s.proto {
                None => None,
                Some(p) => Some(Proto::parse(p).ok_or_else(|| bad(format!("bad protocol '{p}'")))?),
            };
            let host = if s.host == "*" {
                "0.0.0.0".to_string()
            } else {
                s.host.clone()
            };
            let spec = ListenSpec {
                proto,
                hosts: vec![host],
                port: s.port,
            };
            if let Some(a) = &s.advertise {
                adv.push((spec.clone(), a.clone()));
            }
            out.push(spec);
        }
        ValueKind::Ip(ip) => out.push(ListenSpec {
            proto: None,
            hosts: vec![ip.to_string()],
            port: None,
        }),
        ValueKind::Ident(s) | ValueKind::Str(s) => out.push(ListenSpec::parse(s).map_err(bad)?),
        ValueKind::List(vs) => {
            for v in vs {
                listen_specs(v, out, adv)?;
            }
        }
        _ => return Err(bad("listen address expected".into())),
    }
    Ok(())
}

impl Globals {
    /// Takes the core assignments this crate knows from the config; others
    /// (module-level and runtime parameters) are left to their owners.
    /// Returns the diagnostics of values of the wrong type.
    pub fn apply_config(&mut self, items: &[Item]) -> Vec<Diagnostic> {
        let mut errors = Vec::new();
        let mut cfg_listen = Vec::new();
        let mut cfg_adv = Vec::new();
        for item in items {
            let Item::Assign { name, value, .. } = item else {
                continue;
            };
            let r: Result<(), Diagnostic> = (|| {
                match name.as_str() {
                    "debug" => self.debug = ranged(value)?,
                    "fork" => self.dont_fork = u32::from(!boolean(value)?),
                    "log_stderror" => self.log_stderr = boolean(value)?,
                    "log_facility" => self.log_facility = text(value)?,
                    "listen" => listen_specs(value, &mut cfg_listen, &mut cfg_adv)?,
                    "alias" => listen_specs(value, &mut self.aliases, &mut Vec::new())?,
                    "port" => self.port = ranged(value)?,
                    "children" => self.children = ranged(value)?,
                    "tcp_children" => self.tcp_children = Some(ranged(value)?),
                    "disable_tcp" => self.disable_tcp = boolean(value)?,
                    "tcp_connection_lifetime" => self.tcp_lifetime = ranged(value)?,
                    "tcp_connect_timeout" => self.tcp_connect_timeout = Some(ranged(value)?),
                    "tcp_max_connections" => self.tcp_max_connections = ranged(value)?,
                    "tcp_send_timeout" => self.tcp_send_timeout = Some(ranged(value)?),
                    "tcp_msg_read_timeout" => self.tcp_msg_read_timeout = Some(ranged(value)?),
                    "tcp_conn_wq_max" => self.tcp_conn_wq_max = Some(ranged(value)?),
                    "tcp_async" => self.tcp_async = boolean(value)?,
                    "tcp_accept_aliases" => self.tcp_accept_aliases = boolean(value)?,
                    "tcp_keepalive" => self.tcp_keepalive = boolean(value)?,
                    "tcp_keepidle" => self.tcp_keep[0] = Some(ranged(value)?),
                    "tcp_keepintvl" => self.tcp_keep[1] = Some(ranged(value)?),
                    "tcp_keepcnt" => self.tcp_keep[2] = Some(ranged(value)?),
                    "tcp_poll_method" => {
                        let m = text(value)?;
                        ser_children::reactor::PollMethod::parse(&m)
                            .map_err(|e| Diagnostic::error(value.span, e))?;
                        self.poll_method = Some(m);
                    }
                    "advertised_address" => self.advertised_address = Some(text(value)?),
                    "advertised_port" => self.advertised_port = Some(ranged(value)?),
                    "use_dst_blacklist" | "use_dst_blocklist" => {
                        self.use_dst_blacklist = boolean(value)?
                    }
                    "dst_blacklist_expire"
                    | "dst_blocklist_expire"
                    | "dst_blacklist_ttl"
                    | "dst_blocklist_ttl" => self.dst_blacklist_expire = ranged(value)?,
                    "dst_blacklist_mem" | "dst_blocklist_mem" => {
                        self.dst_blacklist_mem_gc.0 = ranged(value)?
                    }
                    "dst_blacklist_gc_interval" | "dst_blocklist_gc_interval" => {
                        self.dst_blacklist_mem_gc.1 = ranged(value)?
                    }
                    n if n.starts_with("dns_")
                        || n == "use_dns_cache"
                        || n == "use_dns_failover" =>
                    {
                        self.dns_cfg.apply(n, value)?
                    }
                    "child_respawn" => self.child_respawn = boolean(value)?,
                    "user" | "uid" => self.user = Some(text(value)?),
                    "group" | "gid" => self.group = Some(text(value)?),
                    "chroot" => self.chroot = Some(text(value)?.into()),
                    "workdir" | "wdir" => self.wdir = Some(text(value)?.into()),
                    "mhomed" => self.mhomed = boolean(value)?,
                    "check_via" => self.check_via = boolean(value)?,
                    "dns" => self.dns = boolean(value)?,
                    "rev_dns" => self.rev_dns = boolean(value)?,
                    "auto_aliases" => self.auto_aliases = boolean(value)?,
                    "loadpath" | "mpath" => self.modules_dir = text(value)?,
                    _ => {}
                }
                Ok(())
            })();
            if let Err(mut d) = r {
                d.message = format!("{name}: {}", d.message);
                errors.push(d);
            }
        }
        if !cfg_listen.is_empty() {
            self.listen = cfg_listen;
            self.listen_advertise = cfg_adv;
        }
        errors
    }

    /// The command line's values, which override the config's.
    pub fn apply_cmdline(&mut self, cl: &CmdLine) {
        if let Some(f) = &cl.cfg_file {
            self.cfg_file = f.into();
        }
        if let Some(d) = &cl.modules_dir {
            self.modules_dir = d.clone();
        }
        // -d raises the configured level, one step per flag.
        self.debug = self
            .debug
            .saturating_add(i32::try_from(cl.debug_count).unwrap_or(i32::MAX));
        if cl.dont_fork_count > 0 {
            self.dont_fork = cl.dont_fork_count;
        }
        self.log_stderr |= cl.log_stderr;
        if !cl.listen.is_empty() {
            // SER 3.0's -l has no advertise part
            self.listen = cl.listen.clone();
            self.listen_advertise.clear();
        }
        if let Some(n) = cl.children {
            self.children = n;
        }
        if let Some(n) = cl.tcp_children {
            self.tcp_children = Some(n);
        }
        self.disable_tcp |= cl.disable_tcp;
        self.dns |= cl.dns;
        self.rev_dns |= cl.rev_dns;
        self.check_via |= cl.check_via;
        let set = |dst: &mut Option<String>, src: &Option<String>| {
            if src.is_some() {
                dst.clone_from(src);
            }
        };
        set(&mut self.user, &cl.user);
        set(&mut self.group, &cl.group);
        set(&mut self.poll_method, &cl.poll_method);
        let set_path = |dst: &mut Option<PathBuf>, src: &Option<String>| {
            if let Some(s) = src {
                *dst = Some(PathBuf::from(s));
            }
        };
        set_path(&mut self.chroot, &cl.chroot);
        set_path(&mut self.wdir, &cl.wdir);
        set_path(&mut self.pid_file, &cl.pid_file);
        set_path(&mut self.pgid_file, &cl.pgid_file);
        if let Some(n) = cl.shm_mb {
            self.shm_mb = n;
        }
        if let Some(n) = cl.rcvbuf_max {
            self.rcvbuf_max = n;
        }
        if let Some(n) = cl.opt_level {
            self.opt_level = n;
        }
        if let Some(a) = cl.auto_aliases {
            self.auto_aliases = a;
        }
        self.defines.clone_from(&cl.defines);
    }

    /// TCP workers: `tcp_children`, else `children`.
    pub fn tcp_workers(&self) -> u32 {
        self.tcp_children.unwrap_or(self.children)
    }

    /// The `-W`/`tcp_poll_method` reactor (validated when set).
    pub fn poll_method(&self) -> ser_children::reactor::PollMethod {
        self.poll_method
            .as_deref()
            .and_then(|m| ser_children::reactor::PollMethod::parse(m).ok())
            .unwrap_or_default()
    }

    /// The TCP settings the children get (`enabled`: a TCP socket is bound).
    pub fn tcp_config(&self, enabled: bool) -> ser_children::tcp_conn::TcpConfig {
        let mut c = ser_children::tcp_conn::TcpConfig {
            enabled,
            lifetime: std::time::Duration::from_secs(u64::from(self.tcp_lifetime.max(1))),
            max_connections: self.tcp_max_connections as usize,
            poll_method: self.poll_method(),
            ..Default::default()
        };
        if let Some(t) = self.tcp_connect_timeout {
            c.connect_timeout = std::time::Duration::from_secs(u64::from(t.max(1)));
        }
        if let Some(t) = self.tcp_send_timeout {
            c.send_timeout = std::time::Duration::from_secs(u64::from(t.max(1)));
        }
        if let Some(t) = self.tcp_msg_read_timeout {
            c.msg_read_timeout = std::time::Duration::from_secs(u64::from(t.max(1)));
        }
        if let Some(q) = self.tcp_conn_wq_max {
            c.conn_wq_max = q.max(1) as usize;
        }
        c.async_send = self.tcp_async;
        c.accept_aliases = self.tcp_accept_aliases;
        if self.tcp_keepalive {
            let [idle, interval, count] = self.tcp_keep;
            c.keepalive = Some(ser_children::tcp_conn::Keepalive {
                idle,
                interval,
                count,
            });
        }
        c
    }

    /// The `-D` level as a fork mode.
    pub fn fork_mode(&self) -> ForkMode {
        ForkMode::from_count(self.dont_fork)
    }

    /// What the daemon step needs.
    pub fn daemon_options(&self) -> DaemonOptions {
        DaemonOptions {
            mode: self.fork_mode(),
            log_stderr: self.log_stderr,
            pid_file: self.pid_file.clone(),
            pgid_file: self.pgid_file.clone(),
            chroot: self.chroot.clone(),
            wdir: self.wdir.clone(),
        }
    }
}

/// SER's DNS parameters (resolver, cache, RFC 3263 choices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsGlobals {
    /// `use_dns_cache` (default on).
    pub use_cache: bool,
    /// `dns_cache_flags`: 1 IPv4 only, 2 IPv6 only, 4 IPv6 first.
    pub cache_flags: u32,
    /// `dns_cache_negative_ttl`, `dns_cache_min_ttl`, `dns_cache_max_ttl` (s).
    pub ttl: (u32, u32, u32),
    /// `dns_cache_mem` (KB).
    pub cache_mem_kb: u32,
    /// `dns_cache_gc_interval` (s).
    pub gc_interval: u32,
    /// `dns_cache_del_nonexp`.
    pub del_nonexp: bool,
    /// `dns_try_ipv6`, `dns_try_naptr`, `dns_srv_lb`.
    pub try_ipv6: bool,
    /// See `try_ipv6`.
    pub try_naptr: bool,
    /// See `try_ipv6`.
    pub srv_lb: bool,
    /// `dns_udp_pref`, `dns_tcp_pref`, `dns_tls_pref`, `dns_sctp_pref`.
    pub prefs: [i32; 4],
    /// `dns_retr_time`, `dns_retr_no`, `dns_servers_no`.
    pub retr: (u32, u32, u32),
    /// `dns_use_search_list`, `dns_search_full_match`.
    pub search: (bool, bool),
    /// `use_dns_failover`.
    pub failover: bool,
}

impl Default for DnsGlobals {
    fn default() -> Self {
        DnsGlobals {
            use_cache: true,
            cache_flags: 0,
            ttl: (60, 0, u32::MAX),
            cache_mem_kb: 500,
            gc_interval: 120,
            del_nonexp: false,
            try_ipv6: true,
            try_naptr: false,
            srv_lb: false,
            prefs: [30, 20, 10, 20],
            retr: (2, 2, 3),
            search: (true, true),
            failover: false,
        }
    }
}

impl DnsGlobals {
    fn apply(&mut self, name: &str, v: &Value) -> Result<(), Diagnostic> {
        match name {
            "use_dns_cache" | "dns_use_cache" => self.use_cache = boolean(v)?,
            "dns_cache_flags" => self.cache_flags = ranged(v)?,
            "dns_cache_negative_ttl" => self.ttl.0 = ranged(v)?,
            "dns_cache_min_ttl" => self.ttl.1 = ranged(v)?,
            "dns_cache_max_ttl" => self.ttl.2 = ranged(v)?,
            "dns_cache_mem" => self.cache_mem_kb = ranged(v)?,
            "dns_cache_gc_interval" => self.gc_interval = ranged(v)?,
            "dns_cache_del_nonexp" | "dns_cache_delete_nonexpired" => self.del_nonexp = boolean(v)?,
            "dns_try_ipv6" => self.try_ipv6 = boolean(v)?,
            "dns_try_naptr" => self.try_naptr = boolean(v)?,
            "dns_srv_lb" | "dns_srv_loadbalancing" => self.srv_lb = boolean(v)?,
            "dns_udp_pref" | "dns_udp_preference" => self.prefs[0] = ranged(v)?,
            "dns_tcp_pref" | "dns_tcp_preference" => self.prefs[1] = ranged(v)?,
            "dns_tls_pref" | "dns_tls_preference" => self.prefs[2] = ranged(v)?,
            "dns_sctp_pref" | "dns_sctp_preference" => self.prefs[3] = ranged(v)?,
            "dns_retr_time" => self.retr.0 = ranged(v)?,
            "dns_retr_no" => self.retr.1 = ranged(v)?,
            "dns_servers_no" => self.retr.2 = ranged(v)?,
            "dns_use_search_list" => self.search.0 = boolean(v)?,
            "dns_search_full_match" => self.search.1 = boolean(v)?,
            "use_dns_failover" | "dns_use_failover" => self.failover = boolean(v)?,
            // `dns_rev_via`, `dns_cache_init`: accepted
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ser_parser::ast::SocketSpec;
    use ser_parser::Span;

    fn assign(name: &str, kind: ValueKind) -> Item {
        let span = Span::default();
        Item::Assign {
            name: name.into(),
            name_span: span,
            value: Value { kind, span },
            span,
        }
    }

    #[test]
    fn defaults_then_config_then_cmdline() {
        let mut g = Globals::default();
        let errs = g.apply_config(&[
            assign("debug", ValueKind::Int(3)),
            assign("children", ValueKind::Int(4)),
            assign("fork", ValueKind::Bool(false)),
            assign("log_stderror", ValueKind::Bool(true)),
            assign(
                "listen",
                ValueKind::Socket(SocketSpec {
                    proto: Some("udp".into()),
                    host: "127.0.0.1".into(),
                    port: Some(5070),
                    advertise: None,
                }),
            ),
            assign("disable_tcp", ValueKind::Ident("maybe".into())),
        ]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].message, "disable_tcp: yes/no expected");
        assert_eq!(
            (g.debug, g.children, g.dont_fork, g.log_stderr),
            (3, 4, 1, true)
        );
        assert_eq!(g.listen[0].port, Some(5070));
        let cl = crate::flags::parse(["-dd", "-n", "2", "-l", "127.0.0.1:5080", "-DD"]).unwrap();
        g.apply_cmdline(&cl);
        assert_eq!((g.debug, g.children, g.dont_fork), (5, 2, 2));
        assert_eq!(g.listen, [ListenSpec::parse("127.0.0.1:5080").unwrap()]);
        assert_eq!(g.tcp_workers(), 2);
    }
}
