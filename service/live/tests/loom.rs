//! Every interleaving of readers with the writers of a [`Live`] view,
//! explored by loom. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p tearline-live --release --test loom`
//! (`.ci/run` does; without `--cfg loom` this file is empty).
//!
//! The model: a store generation is two files that must agree (an index and
//! its vectors; a value in each). An in-place write changes one, then the
//! other; a shadow write builds a new generation and switches to it. A read
//! that sees the two files disagree has seen half a write.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use tearline_live::Live;

/// One generation's two files.
#[derive(Debug, Default)]
struct Generation {
    index: AtomicUsize,
    vectors: AtomicUsize,
}

impl Generation {
    fn holding(value: usize) -> Self {
        let generation = Generation::default();
        generation.index.store(value, Ordering::SeqCst);
        generation.vectors.store(value, Ordering::SeqCst);
        generation
    }

    /// An in-place write: two steps, each visible on its own.
    fn write_in_place(&self) {
        self.index.fetch_add(1, Ordering::SeqCst);
        self.vectors.fetch_add(1, Ordering::SeqCst);
    }
}

/// What readers read: the generation the view was opened on.
#[derive(Debug)]
struct View {
    generation: Arc<Generation>,
}

/// One read: both files, which must agree. Returns what it read.
fn read(live: &Live<View>) -> usize {
    let view = live.read();
    let index = view.generation.index.load(Ordering::SeqCst);
    let vectors = view.generation.vectors.load(Ordering::SeqCst);
    assert_eq!(
        index, vectors,
        "a read saw half a write: index {index}, vectors {vectors}"
    );
    index
}

fn live_at(value: usize) -> Arc<Live<View>> {
    Arc::new(Live::new(View {
        generation: Arc::new(Generation::holding(value)),
    }))
}

#[test]
fn a_reader_never_sees_a_full_rebuild_or_its_switch_half_done() {
    loom::model(|| {
        let live = live_at(1);
        let writer = {
            let live = Arc::clone(&live);
            thread::spawn(move || {
                // Built beside the live generation, in steps nobody sees...
                let next = Arc::new(Generation::default());
                next.write_in_place();
                next.write_in_place();
                // ...then switched to.
                live.publish(View { generation: next });
            })
        };
        let first = read(&live);
        let second = read(&live);
        assert!(second >= first, "a later read went back in time: {first} then {second}");
        writer.join().unwrap();
        assert_eq!(read(&live), 2, "the switch was lost");
    });
}

#[test]
fn two_in_place_writers_and_a_reader_never_interleave() {
    loom::model(|| {
        let live = live_at(0);
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let live = Arc::clone(&live);
                thread::spawn(move || {
                    let gate = live.exclusive();
                    gate.current().generation.write_in_place();
                })
            })
            .collect();
        read(&live);
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(read(&live), 2, "a write was lost");
    });
}

/// The deliberately broken swap: a writer that changes the live generation
/// in place without the gate (as a rebuild that writes into the generation
/// readers use would). Loom must find the read that sees half of it.
#[test]
#[should_panic(expected = "a read saw half a write")]
fn a_write_without_the_gate_is_caught() {
    loom::model(|| {
        let live = live_at(0);
        let writer = {
            let live = Arc::clone(&live);
            thread::spawn(move || live.snapshot().generation.write_in_place())
        };
        read(&live);
        writer.join().unwrap();
    });
}
