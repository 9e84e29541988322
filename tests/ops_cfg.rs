//! The shipped default config, `etc/ser.cfg`, passes `ser -c` with every
//! combination of its feature switches (`-A WITH_...`).
//!
//! Modules it loads that this build does not have yet are listed in
//! [`NOT_YET`]: `ser -c` must refuse the config naming exactly those modules
//! (and nothing else).  When one lands, `ser -c` stops naming it and this test
//! fails until it is removed from the list, so the list only ever shrinks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const SER: &str = env!("CARGO_BIN_EXE_ser");

/// Modules `etc/ser.cfg` loads in every variant that are not built in yet.
const NOT_YET: &[&str] = &[];

/// Loaded only with `WITH_TLS`; not built in yet.
const NOT_YET_TLS: &[&str] = &["tls"];

/// The switches the config documents, combined in every way.
const SWITCHES: &[&str] = &["WITH_AUTH", "WITH_USRLOCDB", "WITH_TCP", "WITH_TLS"];

fn cfg_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("etc/ser.cfg")
}

/// Runs `ser -c` on the config with `defines`; returns (success, stdout, stderr).
fn check(defines: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(SER);
    cmd.arg("-c").arg("-f").arg(cfg_path());
    for d in defines {
        cmd.arg("-A").arg(d);
    }
    let out = cmd.output().expect("run ser -c");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The modules named by "not available in this build" diagnostics; any other
/// diagnostic headline is returned as an error.
fn missing_modules(stderr: &str) -> Result<BTreeSet<String>, String> {
    let prefix = format!("{}:", cfg_path().display());
    let mut out = BTreeSet::new();
    for line in stderr.lines().filter(|l| l.starts_with(&prefix)) {
        if !line.ends_with("is not available in this build (not implemented yet)") {
            return Err(format!("unexpected diagnostic: {line}"));
        }
        // "module `rr` is ..." or "function `f` (module `rr`) is ..."
        let module = line
            .rsplit_once("module `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(m, _)| m.to_owned())
            .ok_or_else(|| format!("no module named in: {line}"))?;
        out.insert(module);
    }
    Ok(out)
}

fn expect_missing(defines: &[&str]) -> BTreeSet<String> {
    let mut want: BTreeSet<String> = NOT_YET.iter().map(|m| m.to_string()).collect();
    if defines.contains(&"WITH_TLS") {
        want.extend(NOT_YET_TLS.iter().map(|m| m.to_string()));
    }
    want
}

fn assert_variant(defines: &[&str]) {
    let (ok, stdout, stderr) = check(defines);
    let want = expect_missing(defines);
    let got = match missing_modules(&stderr) {
        Ok(g) => g,
        Err(e) => panic!("ser -c {defines:?}: {e}\n{stderr}"),
    };
    if want.is_empty() {
        assert!(
            ok && stdout.starts_with("config file ok"),
            "ser -c {defines:?} failed:\n{stderr}"
        );
        return;
    }
    assert!(
        !ok,
        "ser -c {defines:?} passed: remove {want:?} from NOT_YET"
    );
    if let Some(m) = want.difference(&got).next() {
        panic!("module `{m}` is built in now: remove it from NOT_YET in tests/ops_cfg.rs");
    }
    assert_eq!(got, want, "ser -c {defines:?}:\n{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "ser: bad config file ({})\n",
            cfg_path().display()
        )),
        "{stderr}"
    );
}

#[test]
fn default_config_checks_with_every_switch_combination() {
    for mask in 0..(1u32 << SWITCHES.len()) {
        let defines: Vec<&str> = SWITCHES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect();
        assert_variant(&defines);
    }
    assert_variant(&["WITH_DEBUG"]);
}

/// With the not-yet modules taken out (their lines deleted, their calls
/// replaced by no-ops), the rest of the config — every other module,
/// parameter and function call — must check clean today.
#[test]
fn default_config_is_otherwise_clean() {
    let text = std::fs::read_to_string(cfg_path()).unwrap();
    let mut stripped = String::new();
    for line in text.lines() {
        let drops = NOT_YET
            .iter()
            .chain(NOT_YET_TLS)
            .any(|m| line.contains(&format!("\"{m}\"")));
        if drops {
            continue;
        }
        let line = line
            .replace("record_route();", "xlog(\"L_DBG\", \"rr\\n\");")
            .replace("loose_route()", "has_totag()");
        stripped.push_str(&line);
        stripped.push('\n');
    }
    let dir = std::env::temp_dir().join(format!("ser-ops-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ser.cfg");
    std::fs::write(&path, stripped).unwrap();
    for defines in [
        &[][..],
        &["WITH_AUTH", "WITH_USRLOCDB"],
        &["WITH_TCP"],
        &["WITH_TLS", "WITH_AUTH"],
        &["WITH_DEBUG"],
    ] {
        let mut cmd = Command::new(SER);
        cmd.arg("-c").arg("-f").arg(&path);
        for d in defines {
            cmd.arg("-A").arg(d);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{defines:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
