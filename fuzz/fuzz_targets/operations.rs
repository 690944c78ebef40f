//! `cargo fuzz run operations`: see `tearline::fuzz` and `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tearline::fuzz::operations::operations(data));
