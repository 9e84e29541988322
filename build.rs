//! Build information for `ser -V` and `core.info` (read with `option_env!`
//! in src/version.rs): `SER_GIT_ID` (short commit, `unknown` outside a git
//! work tree), `SER_RUSTC_VERSION`, `SER_BUILD_DATE` (UTC; honours
//! `SOURCE_DATE_EPOCH` for reproducible builds).

use std::path::Path;
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let git_id =
        output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["-V"]).unwrap_or_else(|| "rustc (unknown version)".into());
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => output(
            "date",
            &["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%d %H:%M:%S UTC"],
        ),
        Err(_) => output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
    }
    .unwrap_or_else(|| "unknown date".into());
    println!("cargo:rustc-env=SER_GIT_ID={git_id}");
    println!("cargo:rustc-env=SER_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=SER_BUILD_DATE={date}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit moves the branch ref that HEAD names.
    if let Some(git_dir) = output("git", &["rev-parse", "--git-dir"]) {
        let head = Path::new(&git_dir).join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        if let Some(r) = std::fs::read_to_string(&head)
            .ok()
            .and_then(|h| h.trim().strip_prefix("ref: ").map(str::to_owned))
        {
            // A missing file would make cargo rerun this on every build.
            let branch = Path::new(&git_dir).join(r);
            if branch.exists() {
                println!("cargo:rerun-if-changed={}", branch.display());
            }
        }
    }
}
