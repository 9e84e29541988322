//! The `ser` binary: see [`ser::startup`].
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(ser::startup::run(std::env::args().skip(1).collect()));
}
