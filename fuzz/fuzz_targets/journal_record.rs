//! `cargo fuzz run journal_record`: see `tearline::fuzz` and `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tearline::fuzz::formats::journal_record(data));
