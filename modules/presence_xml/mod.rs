//! `presence_xml`: the `presence` event package for the presence module
//! (replaces Kamailio's `presence_xml`): it makes `presence` a known event,
//! decides the subscription status (`force_active` 1: every watcher is
//! active; 0: pending, since there is no XCAP authorization here), and
//! aggregates several PIDF publications of one presentity into one document.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::iface::{Module, ModuleEnv, ParamExport};

/// The `presence_xml` module.
pub struct PresenceXml;

static PARAMS: &[ParamExport] = &[
    ParamExport::str("db_url", ""),
    ParamExport::int("force_active", 0),
    ParamExport::str("xcap_table", "xcap"),
    ParamExport::int("integrated_xcap_server", 0),
    ParamExport::int("pidf_manipulation", 0),
    ParamExport::int("disable_presence", 0),
];

static LOADED: AtomicBool = AtomicBool::new(false);
static FORCE_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether the `presence` event package is available (module initialised).
pub fn presence_event_supported() -> bool {
    LOADED.load(Ordering::Relaxed)
}

/// Whether new watchers are active at once.
pub fn force_active() -> bool {
    FORCE_ACTIVE.load(Ordering::Relaxed)
}

impl Module for PresenceXml {
    fn name(&self) -> &'static str {
        "presence_xml"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        LOADED.store(env.int("disable_presence") == 0, Ordering::Relaxed);
        FORCE_ACTIVE.store(env.int("force_active") != 0, Ordering::Relaxed);
        Ok(())
    }
}

/// One document of several PIDF bodies (oldest first): the newest document
/// with the `<tuple>` elements of the others added before `</presence>`.
pub fn aggregate(bodies: &[String]) -> Option<String> {
    let (newest, others) = bodies.split_last()?;
    if others.is_empty() {
        return Some(newest.clone());
    }
    let Some(end) = newest.rfind("</presence>") else {
        return Some(newest.clone());
    };
    let mut extra = String::new();
    for b in others {
        extra.push_str(&tuples(b));
    }
    Some(format!("{}{extra}{}", &newest[..end], &newest[end..]))
}

/// The `<tuple ...>...</tuple>` elements of a document, verbatim.
fn tuples(doc: &str) -> String {
    let mut out = String::new();
    let mut rest = doc;
    while let Some(start) = rest.find("<tuple") {
        let Some(len) = rest[start..].find("</tuple>") else {
            break;
        };
        let end = start + len + "</tuple>".len();
        out.push_str(&rest[start..end]);
        out.push('\n');
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation() {
        let a = "<presence entity=\"sip:a@x\"><tuple id=\"1\"><status><basic>open</basic></status></tuple></presence>".to_owned();
        let b = "<presence entity=\"sip:a@x\"><tuple id=\"2\"><status><basic>closed</basic></status></tuple></presence>".to_owned();
        assert_eq!(aggregate(&[]), None);
        assert_eq!(aggregate(std::slice::from_ref(&a)).unwrap(), a);
        let both = aggregate(&[a, b]).unwrap();
        assert!(both.contains("id=\"1\"") && both.contains("id=\"2\""));
        assert!(both.ends_with("</presence>"));
        assert_eq!(both.matches("<presence").count(), 1);
    }
}
