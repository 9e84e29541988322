//! The `dns.*` and `dst_blacklist.*` RPC methods, with Kamailio 5.6's names
//! (and its `dst_blocklist.*` spellings), parameters and reply shapes.

use std::net::{IpAddr, SocketAddr};

use ser_fifo::{RpcCtx, RpcFault, RpcRegistry, RpcValue};

use super::blacklist;
use super::cache::{self, Entry};
use super::wire::{Rdata, RrType, Srv};
use crate::runtime::transport::Proto;

fn int(v: impl TryInto<i32>) -> RpcValue {
    RpcValue::Int(v.try_into().unwrap_or(i32::MAX))
}

fn yes_no(b: bool) -> RpcValue {
    RpcValue::Str(if b { "yes" } else { "no" }.into())
}

fn cache_on() -> Result<(), RpcFault> {
    if cache::enabled() {
        Ok(())
    } else {
        Err(RpcFault::new(
            500,
            "dns cache support disabled (see use_dns_cache)",
        ))
    }
}

fn blacklist_on() -> Result<(), RpcFault> {
    if blacklist::enabled() {
        Ok(())
    } else {
        Err(RpcFault::new(
            500,
            "dst blacklist support disabled (see use_dst_blacklist)",
        ))
    }
}

/// Seconds an entry has left (0 for a permanent one).
fn remaining(e: &Entry, now: u64) -> i64 {
    if e.is_permanent() {
        0
    } else {
        e.expires as i64 - now as i64
    }
}

fn record_members(e: &Entry, i: usize, r: &Rdata, now: u64) -> Vec<(String, RpcValue)> {
    let mut m: Vec<(String, RpcValue)> = vec![("rr_idx".into(), int(i))];
    match r {
        Rdata::A(a) => m.push(("rr_ip".into(), RpcValue::Str(a.to_string()))),
        Rdata::Aaaa(a) => m.push(("rr_ip".into(), RpcValue::Str(a.to_string()))),
        Rdata::Cname(n) => m.push(("rr_name".into(), RpcValue::Str(n.clone()))),
        Rdata::Srv(s) => {
            m.push(("rr_name".into(), RpcValue::Str(s.target.clone())));
            m.push(("rr_port".into(), int(s.port)));
            m.push(("rr_priority".into(), int(s.priority)));
            m.push(("rr_weight".into(), int(s.weight)));
        }
        Rdata::Naptr(n) => {
            m.push(("rr_order".into(), int(n.order)));
            m.push(("rr_preference".into(), int(n.preference)));
            m.push(("rr_flags".into(), RpcValue::Str(n.flags.clone())));
            m.push(("rr_service".into(), RpcValue::Str(n.service.clone())));
            m.push(("rr_regexp".into(), RpcValue::Str(n.regexp.clone())));
            // Kamailio labels the replacement `rr_regexp` too
            m.push(("rr_regexp".into(), RpcValue::Str(n.replacement.clone())));
        }
    }
    m.push(("rr_permanent".into(), yes_no(e.is_permanent())));
    m.push(("rr_expires".into(), int(remaining(e, now))));
    m
}

/// One entry as `dns.view` / `dns.lookup` show it.
fn entry_view(e: &Entry, now: u64) -> RpcValue {
    let mut m: Vec<(String, RpcValue)> = vec![
        ("name".into(), RpcValue::Str(e.name.clone())),
        ("type".into(), RpcValue::Str(e.ty.name().into())),
        ("size_bytes".into(), int(e.size)),
        ("reference_counter".into(), int(1)),
        ("permanent".into(), yes_no(e.is_permanent())),
        ("expires".into(), int(remaining(e, now))),
        ("last_used".into(), int(now.saturating_sub(e.last_used))),
        ("negative_entry".into(), yes_no(e.is_negative())),
    ];
    if !e.is_negative() {
        let recs = e
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| RpcValue::Struct(record_members(e, i, r, now)))
            .collect();
        m.push(("records".into(), RpcValue::Array(recs)));
    }
    RpcValue::Struct(m)
}

fn live_entries() -> Vec<Entry> {
    let now = cache::now();
    cache::entries()
        .into_iter()
        .filter(|e| e.is_permanent() || e.expires > now)
        .collect()
}

fn reg(
    reg: &mut RpcRegistry,
    name: &'static str,
    doc: &'static [&'static str],
    f: impl Fn(&mut dyn RpcCtx) -> Result<(), RpcFault> + 'static,
) {
    if let Err(e) = reg.register(name, doc, f) {
        log::error!("dns: cannot register {name}: {e}");
    }
}

fn scan_ttl(c: &dyn RpcCtx, i: usize) -> Result<u32, RpcFault> {
    u32::try_from(c.scan_int(i)?).map_err(|_| RpcFault::bad_param(i, "negative ttl"))
}

fn add_entry(c: &dyn RpcCtx, ty: RrType) -> Result<(), RpcFault> {
    cache_on()?;
    let name = c.scan_str(0)?.trim_end_matches('.').to_ascii_lowercase();
    let ttl = scan_ttl(c, 1)?;
    let (data, flags_at) = match ty {
        RrType::A | RrType::Aaaa => {
            let ip = c.scan_str(2)?;
            let data = match (ip.parse::<IpAddr>(), ty) {
                (Ok(IpAddr::V4(a)), RrType::A) => Rdata::A(a),
                (Ok(IpAddr::V6(a)), RrType::Aaaa) => Rdata::Aaaa(a),
                _ => return Err(RpcFault::new(400, format!("invalid IP address: {ip}"))),
            };
            (data, 3)
        }
        _ => {
            let num = |i: usize| {
                u16::try_from(c.scan_int(i)?).map_err(|_| RpcFault::bad_param(i, "out of range"))
            };
            let data = Rdata::Srv(Srv {
                priority: num(2)?,
                weight: num(3)?,
                port: num(4)?,
                target: c.scan_str(5)?.trim_end_matches('.').to_ascii_lowercase(),
            });
            (data, 6)
        }
    };
    let flags = c.scan_opt_int(flags_at)?.unwrap_or(0);
    // Kamailio's DNS_FLAG_PERMANENT is 2, as ours
    let flags = if flags & i32::from(cache::PERMANENT) != 0 {
        cache::PERMANENT
    } else {
        0
    };
    // a record adds to the entry's others (Kamailio merges too)
    let mut records = cache::get(&name, ty)
        .filter(|e| !e.is_negative())
        .map(|e| e.records)
        .unwrap_or_default();
    if !records.contains(&data) {
        records.push(data);
    }
    cache::put(&name, ty, &records, ttl, flags)
        .map_err(|e| RpcFault::new(500, format!("Failed to add the entry: {e}")))
}

fn delete_entry(c: &dyn RpcCtx, ty: RrType) -> Result<(), RpcFault> {
    cache_on()?;
    let name = c.scan_str(0)?.trim_end_matches('.').to_ascii_lowercase();
    if cache::delete(&name, ty) {
        Ok(())
    } else {
        Err(RpcFault::new(400, "Not found"))
    }
}

/// Registers the `dns.*` methods.
pub fn register_dns(r: &mut RpcRegistry) {
    reg(r, "dns.mem_info", &["dns cache memory info."], |c| {
        cache_on()?;
        let (used, max) = cache::mem_info();
        c.add(int(used));
        c.add(int(max));
        Ok(())
    });
    reg(r, "dns.debug", &["dns debug info."], |c| {
        cache_on()?;
        let now = cache::now();
        for e in live_entries() {
            c.add(RpcValue::Str(e.name.clone()));
            c.add(int(e.ty.code()));
            c.add(int(e.size));
            c.add(int(1));
            c.add(int(remaining(&e, now)));
            c.add(int(now.saturating_sub(e.last_used)));
            c.add(int(e.flags));
        }
        Ok(())
    });
    reg(r, "dns.debug_all", &["complete dns debug dump"], |c| {
        cache_on()?;
        let now = cache::now();
        // Kamailio's flat dump: the entry, then per record its kind, value
        // and expiry
        for e in live_entries() {
            c.add(RpcValue::Str(e.name.clone()));
            c.add(int(e.ty.code()));
            c.add(int(0));
            c.add(int(e.size));
            c.add(int(1));
            c.add(int(remaining(&e, now)));
            c.add(int(now.saturating_sub(e.last_used)));
            c.add(int(e.flags));
            for r in &e.records {
                let (kind, value) = match r {
                    Rdata::A(a) => ("ip", a.to_string()),
                    Rdata::Aaaa(a) => ("ip", a.to_string()),
                    Rdata::Srv(s) => ("srv", s.target.clone()),
                    Rdata::Cname(n) => ("cname", n.clone()),
                    Rdata::Naptr(n) => ("naptr", n.replacement.clone()),
                };
                c.add(RpcValue::Str(kind.into()));
                c.add(RpcValue::Str(value));
                c.add(int(remaining(&e, now)));
            }
        }
        Ok(())
    });
    reg(
        r,
        "dns.view",
        &["dns cache dump in a human-readable format"],
        |c| {
            cache_on()?;
            let now = cache::now();
            for e in live_entries() {
                c.add(entry_view(&e, now));
            }
            Ok(())
        },
    );
    reg(r, "dns.lookup", &["perform a dns lookup"], |c| {
        cache_on()?;
        let ty = c.scan_str(0)?;
        let name = c.scan_str(1)?.trim_end_matches('.').to_ascii_lowercase();
        let ty = RrType::from_name(&ty).ok_or_else(|| RpcFault::new(400, "Invalid type"))?;
        match super::lookup(&name, ty) {
            Ok(_) => {}
            Err(_) => return Err(RpcFault::new(400, "Not found")),
        }
        // the answer is in the cache now (or in /etc/hosts)
        let now = cache::now();
        match cache::get(&name, ty) {
            Some(e) if !e.is_negative() => c.add(entry_view(&e, now)),
            _ => return Err(RpcFault::new(400, "Not found")),
        }
        Ok(())
    });
    reg(
        r,
        "dns.delete_all",
        &["deletes all the non-permanent entries from the DNS cache"],
        |c| {
            cache_on()?;
            cache::delete_all(false);
            c.add(RpcValue::structure([("status", "ok")]));
            Ok(())
        },
    );
    reg(
        r,
        "dns.delete_all_force",
        &["deletes all the entries from the DNS cache including the permanent ones"],
        |c| {
            cache_on()?;
            cache::delete_all(true);
            c.add(RpcValue::structure([("status", "ok")]));
            Ok(())
        },
    );
    reg(
        r,
        "dns.add_a",
        &["adds an A record to the DNS cache"],
        |c| add_entry(c, RrType::A),
    );
    reg(
        r,
        "dns.add_aaaa",
        &["adds an AAAA record to the DNS cache"],
        |c| add_entry(c, RrType::Aaaa),
    );
    reg(
        r,
        "dns.add_srv",
        &["adds an SRV record to the DNS cache"],
        |c| add_entry(c, RrType::Srv),
    );
    for (name, ty) in [
        ("dns.delete_a", RrType::A),
        ("dns.delete_aaaa", RrType::Aaaa),
        ("dns.delete_srv", RrType::Srv),
        ("dns.delete_naptr", RrType::Naptr),
        ("dns.delete_cname", RrType::Cname),
    ] {
        let doc: &'static [&'static str] = match ty {
            RrType::A => &["deletes an A record from the DNS cache"],
            RrType::Aaaa => &["deletes an AAAA record from the DNS cache"],
            RrType::Srv => &["deletes an SRV record from the DNS cache"],
            RrType::Naptr => &["deletes a NAPTR record from the DNS cache"],
            RrType::Cname => &["deletes a CNAME record from the DNS cache"],
        };
        reg(r, name, doc, move |c| delete_entry(c, ty));
    }
}

fn proto_text(p: Proto) -> String {
    p.as_str().to_ascii_lowercase()
}

/// Registers `dst_blacklist.*` and Kamailio 5.6's `dst_blocklist.*`.
pub fn register_blacklist(r: &mut RpcRegistry) {
    for prefix in ["dst_blacklist", "dst_blocklist"] {
        let name =
            |m: &str| -> &'static str { Box::leak(format!("{prefix}.{m}").into_boxed_str()) };
        // Kamailio's help texts, in the spelling of the method's name
        let black = prefix == "dst_blacklist";
        let doc = move |i: usize| -> &'static [&'static str] {
            match (i, black) {
                (0, true) => &["dst blacklist memory usage info."],
                (0, false) => &["dst blocklist memory usage info."],
                (1, true) => &["dst blacklist debug info."],
                (1, false) => &["dst blocklist debug info."],
                (2, true) => &["dst blacklist dump in human-readable format."],
                (2, false) => &["dst blocklist dump in human-readable format."],
                (3, true) => {
                    &["Deletes all the entries from the dst blacklist except the permanent ones."]
                }
                (3, false) => {
                    &["Deletes all the entries from the dst blocklist except the permanent ones."]
                }
                (_, true) => &["Adds a new entry to the dst blacklist."],
                (_, false) => &["Adds a new entry to the dst blocklist."],
            }
        };
        reg(r, name("mem_info"), doc(0), |c| {
            blacklist_on()?;
            let (used, max) = blacklist::mem_info();
            c.add(int(used));
            c.add(int(max));
            Ok(())
        });
        reg(r, name("debug"), doc(1), |c| {
            blacklist_on()?;
            for e in blacklist::entries() {
                c.add(RpcValue::Str(proto_text(e.proto)));
                c.add(RpcValue::Str(e.addr.ip().to_string()));
                c.add(int(e.addr.port()));
                c.add(int(e.expires_in_ms / 1000));
                c.add(int(e.flags));
            }
            Ok(())
        });
        reg(r, name("view"), doc(2), |c| {
            blacklist_on()?;
            // Kamailio prints each entry as five preformatted lines
            for e in blacklist::entries() {
                let proto = proto_text(e.proto);
                c.add(RpcValue::Str(format!("{{\n    protocol: {proto}")));
                c.add(RpcValue::Str(format!("    ip: {}", e.addr.ip())));
                c.add(RpcValue::Str(format!("    port: {}", e.addr.port())));
                let secs = e.expires_in_ms / 1000;
                c.add(RpcValue::Str(format!("    expires in (s): {secs}")));
                c.add(RpcValue::Str(format!("    flags: {}\n}}", e.flags)));
            }
            Ok(())
        });
        reg(r, name("delete_all"), doc(3), |_| {
            blacklist_on()?;
            blacklist::delete_all();
            Ok(())
        });
        reg(r, name("add"), doc(4), |c| {
            blacklist_on()?;
            let ip = c.scan_str(0)?;
            let port = c.scan_int(1)?;
            let proto = c.scan_int(2)?;
            let flags = c.scan_int(3)?;
            let ip: IpAddr = ip
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| RpcFault::new(400, format!("invalid IP address: {ip}")))?;
            let port = u16::try_from(port).map_err(|_| RpcFault::bad_param(1, "bad port"))?;
            let proto = blacklist::proto_from_code(proto)
                .ok_or_else(|| RpcFault::bad_param(2, "unknown protocol"))?;
            let flags = u16::try_from(flags).map_err(|_| RpcFault::bad_param(3, "bad flags"))?;
            blacklist::add(
                proto,
                SocketAddr::new(ip, port),
                flags,
                blacklist::settings().expire,
            )
            .map_err(|e| RpcFault::new(500, format!("Failed to add the entry: {e}")))
        });
    }
}
