//! Fuzz targets: every byte the store reads back after a crash and every
//! line the harness reads, fed arbitrary input.
//!
//! Each target is a plain function of a byte slice that panics when it
//! finds something (a panic of the code under test, a broken property, an
//! invariant violation), so the same function runs
//!
//! - under libFuzzer, from the cargo-fuzz binaries in `fuzz/` (its own
//!   cargo workspace; see `fuzz/README.md` for the commands), and
//! - in `cargo test`, which replays every committed corpus file of
//!   `fuzz/corpus/<target>/` through it on the stable toolchain
//!   (`tests/fuzz_corpora.rs`).
//!
//! The inputs are decoded with [`arbitrary`], so a saved input is the
//! whole reproduction: `cargo fuzz run <target> <file>` or the corpus test
//! replays it exactly.
//!
//! | target | reads | must hold |
//! |---|---|---|
//! | `journal_record` | a journal file | parse errs or gives a record that round-trips |
//! | `vector_segments` | segment files | open refuses (writing nothing) or repairs idempotently |
//! | `store_at_rest` | any derived file of a store, damaged; new journal files | a writable open brings the index back from the sources |
//! | `repro_line` | a repro line | parse errs or round-trips; every case round-trips |
//! | `blackbox_answer` | a black-box child's answer line | a clean failure, never a panic |
//! | `blackbox_child` | a black-box child's whole stdout | a clean error within the timeout |
//! | `operations` | operations, edits behind the store's back, and a fault | every invariant, on the reference store |

pub mod at_rest;
pub mod child;
pub mod formats;
pub mod lines;
pub mod operations;

/// A fuzz target: its name (its binary and corpus directory in `fuzz/`)
/// and the function libFuzzer and the corpus test call.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The cargo-fuzz target name and corpus directory.
    pub name: &'static str,
    /// Runs one input; panics on a finding.
    pub run: fn(&[u8]),
}

/// Every target, in the order `fuzz/README.md` lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "journal_record",
        run: formats::journal_record,
    },
    Target {
        name: "vector_segments",
        run: formats::vector_segments,
    },
    Target {
        name: "store_at_rest",
        run: at_rest::store_at_rest,
    },
    Target {
        name: "repro_line",
        run: lines::repro_line,
    },
    Target {
        name: "blackbox_answer",
        run: lines::blackbox_answer,
    },
    Target {
        name: "blackbox_child",
        run: child::blackbox_child,
    },
    Target {
        name: "operations",
        run: operations::operations,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}
