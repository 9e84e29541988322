//! Reading the config file (through `ser_parser`) and rendering its
//! diagnostics for `-c` and start-up.

use std::path::Path;

use ser_parser::ast::{Item, RouteKind};
use ser_parser::{render, Diagnostic, ParseOptions, Parsed, SourceMap};

/// Parses `path` with the `-A` defines. `Err` holds the rendered
/// diagnostics (errors, then warnings), ready to print. Warnings of a good
/// parse are logged.
pub fn parse(path: &Path, defines: &[(String, Option<String>)]) -> Result<Parsed, String> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(format!("cannot open config file {}: {e}\n", path.display()));
    }
    let opts = ParseOptions {
        defines: defines.to_vec(),
        ..ParseOptions::default()
    };
    let report = ser_parser::parse_file_report(path, &opts);
    let rendered = report.render();
    match report.into_result() {
        Ok(parsed) => {
            for w in &parsed.warnings {
                log::warn!("{}", w.headline(&parsed.sources));
            }
            Ok(parsed)
        }
        Err(_) => Err(rendered),
    }
}

/// Renders diagnostics one after another.
pub fn render_all(sources: &SourceMap, diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| render(sources, d)).collect()
}

/// One line describing a parsed config, for `-c`.
pub fn summary(parsed: &Parsed) -> String {
    let items = parsed.config.items();
    let count = |f: &dyn Fn(&Item) -> bool| items.iter().filter(|i| f(i)).count();
    let settings = count(&|i| matches!(i, Item::Assign { .. } | Item::CustomParam { .. }));
    let modules = count(&|i| matches!(i, Item::LoadModule { .. }));
    let routes = count(&|i| matches!(i, Item::Route(_)));
    let request = count(&|i| matches!(i, Item::Route(r) if r.kind == RouteKind::Request));
    format!(
        "config file ok, exiting... ({settings} settings, {modules} modules, {routes} route \
         blocks, {request} request routes, {} warnings)",
        parsed.warnings.len()
    )
}
