//! `cargo fuzz run repro_line`: see `tearline::fuzz` and `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tearline::fuzz::lines::repro_line(data));
