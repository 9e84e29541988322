//! The table of core (global) parameter names.
//!
//! The grammar accepts any `name = value`; this table decides what the name means:
//! a parameter of SER's core (0.8.8 – 3.0, the ones this server handles), a parameter only
//! Kamailio knows (accepted with a warning and ignored), or an unknown name (an error).

/// What a core parameter name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A SER core parameter.
    Core,
    /// Known to Kamailio but not handled here: warn and ignore.
    Ignored,
    /// Not a parameter at all.
    Unknown,
}

/// SER core parameters (SER 0.8.8 … 3.0, plus the Kamailio spellings of the same settings).
pub const CORE: &[&str] = &[
    // logging and process
    "debug",
    "fork",
    "log_stderror",
    "log_facility",
    "log_name",
    "memlog",
    "mem_log",
    "memdbg",
    "mem_dbg",
    "children",
    "user",
    "uid",
    "group",
    "gid",
    "chroot",
    "wdir",
    "workdir",
    "disable_core_dump",
    "open_files_limit",
    // ours: main replaces a dead child instead of stopping the server
    "child_respawn",
    "shm_mem_size",
    "shm",
    "shm_mem",
    "max_while_loops",
    "mhomed",
    "phone2tel",
    // sockets
    "listen",
    "port",
    "alias",
    "advertised_address",
    "advertised_port",
    "auto_aliases",
    // SIP behaviour
    "check_via",
    "dns",
    "rev_dns",
    "dns_rev_via",
    "sip_warning",
    "server_signature",
    "server_header",
    "user_agent_header",
    "reply_to_via",
    "syn_branch",
    "avp_aliases",
    // FIFO / unix socket control (SER 0.8.8 – 2.0)
    "fifo",
    "fifo_mode",
    "fifo_dir",
    "fifo_user",
    "fifo_group",
    "fifo_db_url",
    "unix_sock",
    "unix_sock_children",
    "unix_tx_timeout",
    "sock_mode",
    "sock_user",
    "sock_group",
    // TCP
    "disable_tcp",
    "tcp_children",
    "tcp_accept_aliases",
    "tcp_send_timeout",
    "tcp_msg_read_timeout",
    "tcp_connect_timeout",
    "tcp_connection_lifetime",
    "tcp_poll_method",
    "tcp_max_connections",
    // relayed replies run onsend_route too
    "onsend_route_reply",
    // destinations a send failed to are skipped (Kamailio: dst_blocklist)
    "use_dst_blacklist",
    "dst_blacklist_expire",
    "use_dst_blocklist",
    "dst_blocklist_expire",
    "dst_blacklist_mem",
    "dst_blocklist_mem",
    "dst_blacklist_ttl",
    "dst_blocklist_ttl",
    "dst_blacklist_gc_interval",
    "dst_blocklist_gc_interval",
    "tcp_no_connect",
    "tcp_source_ipv4",
    "tcp_source_ipv6",
    "tcp_fd_cache",
    "tcp_buf_write",
    "tcp_async",
    "tcp_conn_wq_max",
    "tcp_wq_max",
    "tcp_rd_buf_size",
    "tcp_wq_blk_size",
    "tcp_defer_accept",
    "tcp_delayed_ack",
    "tcp_syncnt",
    "tcp_linger2",
    "tcp_keepalive",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_keepcnt",
    "tcp_crlf_ping",
    "tcp_accept_no_cl",
    // TLS
    "enable_tls",
    "tls_enable",
    "disable_tls",
    "tls_disable",
    "tls_port_no",
    "tls_method",
    "tls_verify",
    "tls_require_certificate",
    "tls_certificate",
    "tls_private_key",
    "tls_ca_list",
    "tls_handshake_timeout",
    "tls_send_timeout",
    "tls_max_connections",
    "tls_log",
    "tlslog",
    // DNS
    "dns_try_ipv6",
    "dns_try_naptr",
    "dns_srv_lb",
    "dns_srv_loadbalancing",
    "dns_udp_pref",
    "dns_udp_preference",
    "dns_tcp_pref",
    "dns_tcp_preference",
    "dns_tls_pref",
    "dns_tls_preference",
    "dns_sctp_pref",
    "dns_sctp_preference",
    "dns_retr_time",
    "dns_retr_no",
    "dns_servers_no",
    "dns_use_search_list",
    "dns_search_full_match",
    "dns_cache_init",
    "use_dns_cache",
    "dns_use_cache",
    "use_dns_failover",
    "dns_use_failover",
    "dns_cache_flags",
    "dns_cache_negative_ttl",
    "dns_cache_min_ttl",
    "dns_cache_max_ttl",
    "dns_cache_mem",
    "dns_cache_gc_interval",
    "dns_cache_del_nonexp",
    "dns_cache_delete_nonexpired",
];

/// Parameters Kamailio knows that this server does not handle.
pub const KAMAILIO_ONLY: &[&str] = &[
    "fork_delay",
    "modinit_delay",
    "log_color",
    "log_prefix",
    "log_prefix_mode",
    "log_engine_type",
    "log_engine_data",
    "xavp_via_params",
    "xavp_via_fields",
    "virtual",
    "domain",
    "auto_domains",
    "dns_slow_query_ms",
    "dns_naptr_ignore_rfc",
    "dns_cache_rec_pref",
    "auto_bind_ipv6",
    "bind_ipv6_link_local",
    "ipv6_hex_style",
    "dst_blocklist_init",
    "dst_blocklist_udp_imask",
    "dst_blocklist_tcp_imask",
    "dst_blocklist_tls_imask",
    "dst_blocklist_sctp_imask",
    "dst_blacklist_init",
    "ip_free_bind",
    "ipfreebind",
    "ip_nonlocal_bind",
    "statistics",
    "stats_name_separator",
    "maxbuffer",
    "sql_buffer_size",
    "socket",
    "bind",
    "workers",
    "socket_workers",
    "async_workers",
    "async_usleep",
    "async_nonblock",
    "async_workers_group",
    "mem_summary",
    "mem_safety",
    "mem_join",
    "mem_status_mode",
    "corelog",
    "core_log",
    "sip_parser_log_oneline",
    "sip_parser_log",
    "sip_parser_mode",
    "rundir",
    "run_dir",
    "tcp_accept_unique",
    "tcp_connection_match",
    "tcp_accept_hep3",
    "tcp_accept_haproxy",
    "tcp_close_rst",
    "tcp_clone_rcvbuf",
    "tcp_reuse_port",
    "tcp_wait_data",
    "tcp_script_mode",
    "disable_sctp",
    "enable_sctp",
    "sctp_children",
    "shm_force_alloc",
    "mlock_pages",
    "real_time",
    "rt_prio",
    "rt_policy",
    "rt_timer1_prio",
    "rt_fast_timer_prio",
    "rt_ftimer_prio",
    "rt_timer1_policy",
    "rt_ftimer_policy",
    "rt_timer2_prio",
    "rt_stimer_prio",
    "rt_timer2_policy",
    "rt_stimer_policy",
    "mcast_loopback",
    "mcast_ttl",
    "mcast",
    "tos",
    "pmtu_discovery",
    "exit_timeout",
    "ser_kill_timeout",
    "pv_buffer_size",
    "pv_buffer_slots",
    "pv_cache_limit",
    "pv_cache_action",
    "http_reply_hack",
    "http_reply_parse",
    "version_table",
    "verbose_startup",
    "server_id",
    "route_locks_size",
    "wait_worker1_mode",
    "wait_worker1_time",
    "wait_worker1_usleep",
    "kemi",
    "onsend_route_callback",
    "reply_route_callback",
    "event_route_callback",
    "received_route_callback",
    "received_route_mode",
    "pre_routing_callback",
    "max_recursive_level",
    "max_branches",
    "latency_cfg_log",
    "latency_log",
    "latency_limit_db",
    "latency_limit_action",
    "latency_limit_cfg",
    "rpc_exec_delta",
    "uri_host_extra_chars",
    "hdr_name_extra_chars",
    "msg_time",
    "cfgengine",
    "return_mode",
    "udp_mtu",
    "udp_mtu_try_proto",
    "udp4_raw",
    "udp4_raw_mtu",
    "udp4_raw_ttl",
    "force_rport",
    "add_rport",
    "local_rport",
    "add_local_rport",
    "force_tcp_alias",
    "add_tcp_alias",
];

/// Classifies a core parameter name.
pub fn kind(name: &str) -> ParamKind {
    if CORE.contains(&name) {
        ParamKind::Core
    } else if KAMAILIO_ONLY.contains(&name) {
        ParamKind::Ignored
    } else {
        ParamKind::Unknown
    }
}

/// The closest known name, if one is close enough to be a likely typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    let limit = (name.len() / 3).max(2);
    CORE.iter()
        .chain(KAMAILIO_ONLY)
        .map(|k| (distance(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance (names are short).
fn distance(a: &str, b: &str) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_suggestions() {
        assert_eq!(kind("debug"), ParamKind::Core);
        assert_eq!(kind("fifo"), ParamKind::Core);
        assert_eq!(kind("mlock_pages"), ParamKind::Ignored);
        assert_eq!(kind("debgu"), ParamKind::Unknown);
        assert_eq!(suggest("debgu"), Some("debug"));
        assert_eq!(suggest("childern"), Some("children"));
        assert_eq!(suggest("zzzzzzzz"), None);
    }
}
