//! The ser core library.
#![forbid(unsafe_code)]
