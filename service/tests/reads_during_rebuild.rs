//! Zero downtime: clients read continuously from a real `refstore serve`
//! while it fully rebuilds a store of thousands of documents and switches
//! generations. Every read must succeed and see a whole index: the right
//! content for every document, a full page of hits for every search.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{ADMIN, READER, Server, WRITER};

const DOCUMENTS: usize = 3_000;
const READERS: usize = 3;

fn content(i: usize) -> String {
    format!(
        "document {i} of the zero-downtime test: crash safety, shadow rebuilds and atomic switches, part {}",
        i % 7
    )
}

#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    during_rebuild: AtomicU64,
    failures: AtomicU64,
    slowest_micros: AtomicU64,
}

/// What the readers saw while `server` rebuilt `documents` documents.
struct Seen {
    reads: u64,
    during_rebuild: u64,
    failures: u64,
}

/// Imports `documents` documents into a fresh server (started with
/// `extra`), then fully rebuilds while readers read; checks the rebuild
/// and the switch, and returns what the readers saw.
fn read_through_a_full_rebuild(documents: usize, extra: &[&str]) -> Seen {
    let tmp = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(&tmp.path().join("store"), extra));
    let documents_json: Vec<_> = (0..documents)
        .map(|i| json!({"name": format!("doc-{i:05}.md"), "content": content(i)}))
        .collect();
    let (status, stats) = server.call(
        "POST",
        "/v1/import",
        Some(WRITER),
        Some(json!({ "documents": documents_json })),
    );
    assert_eq!(
        (status, stats["files"].as_u64()),
        (200, Some(documents as u64)),
        "{stats}"
    );

    let rebuilding = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let (server, rebuilding, stop, tally) = (
                Arc::clone(&server),
                Arc::clone(&rebuilding),
                Arc::clone(&stop),
                Arc::clone(&tally),
            );
            std::thread::spawn(move || {
                let mut next = reader as u64 * 7919 + 1;
                while !stop.load(Ordering::SeqCst) {
                    next = next.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let i = (next >> 33) as usize % documents;
                    let started = Instant::now();
                    let whole = if next.is_multiple_of(4) {
                        let (status, found) =
                            server.call("GET", "/v1/search?q=shadow+rebuilds&k=10", Some(READER), None);
                        status == 200 && found["hits"].as_array().is_some_and(|hits| hits.len() == 10)
                    } else {
                        let (status, found) =
                            server.call("GET", &format!("/v1/documents/doc-{i:05}.md"), Some(READER), None);
                        status == 200 && found["content"] == content(i).as_str()
                    };
                    let micros = started.elapsed().as_micros() as u64;
                    tally.slowest_micros.fetch_max(micros, Ordering::SeqCst);
                    tally.reads.fetch_add(1, Ordering::SeqCst);
                    if rebuilding.load(Ordering::SeqCst) {
                        tally.during_rebuild.fetch_add(1, Ordering::SeqCst);
                    }
                    if !whole {
                        tally.failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(200));
    rebuilding.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let (status, accepted) = server.call("POST", "/v1/rebuild", Some(ADMIN), Some(json!({"mode": "full"})));
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_for_job(accepted["job_id"].as_u64().unwrap());
    let rebuild_time = started.elapsed();
    rebuilding.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().unwrap();
    }

    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["stats"]["indexed"].as_u64(), Some(documents as u64), "{job}");
    let (_, health) = server.call("GET", "/v1/health", None, None);
    assert_eq!(
        health["generation"], job["stats"]["generation"],
        "reads moved to the new generation: {health}"
    );
    let reads = tally.reads.load(Ordering::SeqCst);
    let during = tally.during_rebuild.load(Ordering::SeqCst);
    let failures = tally.failures.load(Ordering::SeqCst);
    eprintln!(
        "full rebuild of {documents} documents: {:.1} s; {READERS} readers: {reads} reads, {during} during the rebuild, \
         {failures} failed or partial, slowest {:.1} ms",
        rebuild_time.as_secs_f64(),
        tally.slowest_micros.load(Ordering::SeqCst) as f64 / 1000.0
    );
    Seen {
        reads,
        during_rebuild: during,
        failures,
    }
}

#[test]
fn reads_never_fail_or_see_a_partial_index_during_a_full_rebuild() {
    let seen = read_through_a_full_rebuild(DOCUMENTS, &[]);
    assert_eq!(
        seen.failures, 0,
        "reads failed or saw a partial index during the rebuild"
    );
    assert!(
        seen.during_rebuild >= 100,
        "only {} of {} reads overlapped the rebuild: it proves nothing",
        seen.during_rebuild,
        seen.reads
    );
}

#[test]
fn a_service_that_answers_503_while_it_rebuilds_is_caught() {
    let seen = read_through_a_full_rebuild(1_000, &["--flaw", "unavailable-while-rebuilding"]);
    assert!(
        seen.failures > 0,
        "the zero-downtime check missed 503s during the rebuild"
    );
}

#[test]
fn a_service_over_a_store_that_rebuilds_in_place_is_caught() {
    // origins/1's rebuild empties the live index and refills it: the
    // service, which keeps readers on the live view during a full rebuild,
    // then answers them from the index being built.
    let seen = read_through_a_full_rebuild(1_000, &["--flaw", "store:drop-and-reindex"]);
    assert!(
        seen.failures > 0,
        "the zero-downtime check missed reads of a half-built index"
    );
}
