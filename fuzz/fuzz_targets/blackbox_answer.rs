//! `cargo fuzz run blackbox_answer`: see `tearline::fuzz` and `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tearline::fuzz::lines::blackbox_answer(data));
