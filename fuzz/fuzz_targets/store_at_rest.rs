//! `cargo fuzz run store_at_rest`: see `tearline::fuzz` and `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tearline::fuzz::at_rest::store_at_rest(data));
