//! `cargo fuzz run blackbox_child`: see `tearline::fuzz` and `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tearline::fuzz::child::blackbox_child(data));
