//! The management listeners the config asks for — ctl's `binrpc` and `fifo`
//! addresses, mi_fifo's `fifo_name`, jsonrpcs' FIFO and datagram socket, the
//! core's `fifo=` (SER 0.8.8) — bound
//! in main before the first fork and before privileges are dropped, so a
//! socket under `/run` can still be created and chowned.  The ctl process
//! then serves them (`ChildInit::run_ctl`); dropping a listener removes its
//! file, in the ctl process on SIGTERM and again in main on exit.

use ser_fifo::{CtlAddr, CtlConfig, CtlListener, SocketPerms};
use ser_modules::ctl::ListenSpec;
use ser_modules::registry::Modules;
use ser_parser::ast::{Item, ValueKind};
use ser_parser::Parsed;

/// SER 0.8.8's default mode of the core FIFO (`fifo_mode`).
const CORE_FIFO_MODE: u32 = 0o660;

/// Every management listener of the config: the modules' (ctl, mi_fifo)
/// first, then the core `fifo=`.
pub fn listen_specs(parsed: &Parsed, modules: &Modules) -> Result<Vec<ListenSpec>, String> {
    let mut specs = ser_modules::ctl::listen_specs(modules)?;
    let mut fifo = None;
    let mut mode = CORE_FIFO_MODE;
    for item in parsed.config.items() {
        let Item::Assign { name, value, .. } = item else {
            continue;
        };
        match (name.as_str(), &value.kind) {
            ("fifo", ValueKind::Str(s) | ValueKind::Ident(s)) if !s.is_empty() => {
                fifo = Some(s.clone())
            }
            ("fifo_mode", ValueKind::Int(m)) => {
                mode = u32::try_from(*m)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("fifo_mode: bad file mode {m:o}"))?;
            }
            _ => {}
        }
    }
    if let Some(path) = fifo {
        let addr = CtlAddr::parse(&format!("fifo:{path}")).map_err(|e| format!("fifo: {e}"))?;
        if !specs.iter().any(|s| s.addr == addr) {
            specs.push(ListenSpec {
                addr,
                perms: SocketPerms {
                    mode,
                    user: None,
                    group: None,
                },
            });
        }
    }
    Ok(specs)
}

/// Binds every spec; the first failure is the error (the server does not
/// start half-manageable).  Files without their own `user`/`group` are given
/// to the server's (`user=`, `-u`), so that the unprivileged processes still
/// own, and on shutdown can remove, them.
pub fn bind(
    specs: &[ListenSpec],
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Vec<CtlListener>, String> {
    specs
        .iter()
        .map(|s| {
            let mut perms = s.perms.clone();
            if perms.user.is_none() {
                perms.user = user.map(str::to_owned);
            }
            if perms.group.is_none() {
                perms.group = group.map(str::to_owned);
            }
            let l = CtlListener::bind_addr(&s.addr, &perms).map_err(|e| format!("ctl: {e}"))?;
            log::info!("ctl: listening on {}", s.addr);
            Ok(l)
        })
        .collect()
}

/// The ctl server's settings: FIFO replies go to the core's `fifo_dir`
/// (SER 0.9) if set, else to mi_fifo's `reply_dir` (default `/tmp/`).
pub fn server_config(parsed: &Parsed, modules: &Modules) -> CtlConfig {
    let core_dir = parsed.config.items().iter().find_map(|item| match item {
        Item::Assign { name, value, .. } if name == "fifo_dir" => match &value.kind {
            ValueKind::Str(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        _ => None,
    });
    let (json_reply_dir, json_pretty) =
        ser_modules::jsonrpcs::settings(modules).unwrap_or_else(|| ("/tmp/".into(), true));
    CtlConfig {
        fifo_reply_dir: core_dir
            .unwrap_or_else(|| ser_modules::ctl::fifo_reply_dir(modules))
            .into(),
        json_reply_dir: json_reply_dir.into(),
        json_pretty,
        ..CtlConfig::default()
    }
}
