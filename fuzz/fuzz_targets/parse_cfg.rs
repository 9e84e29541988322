//! The config parser (preprocessor, lexer, grammar) over arbitrary text:
//! every input must end in `Ok` or diagnostics, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Includes read files (a fuzzer-made `include_file "/dev/stdin"` would
    // block): the file-following path is not what this target explores.
    let lower = text.to_ascii_lowercase();
    if lower.contains("include") || lower.contains("import") {
        return;
    }
    let opts = ser_parser::ParseOptions::default();
    let _ = ser_parser::parse_str("/nonexistent/fuzz.cfg", text, &opts);
});
