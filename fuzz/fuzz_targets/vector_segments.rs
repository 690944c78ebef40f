//! `cargo fuzz run vector_segments`: see `tearline::fuzz` and `fuzz/README.md`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tearline::fuzz::formats::vector_segments(data));
