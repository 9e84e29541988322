//! Generates the LR(1) parser from `src/cfg.lalrpop` into `OUT_DIR`.
fn main() {
    println!("cargo:rerun-if-changed=src/cfg.lalrpop");
    if let Err(e) = lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .process()
    {
        eprintln!("lalrpop failed: {e}");
        std::process::exit(1);
    }
}
