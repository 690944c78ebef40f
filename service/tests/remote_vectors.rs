//! The remote vector store over loopback: a real `vector-server` process
//! on its own directory, and the store's client for it,
//! `RemoteVectorStore`. It must answer as the local store does, keep what
//! it acknowledged through a SIGKILL, retry an answer that was lost, and
//! report the ambiguous outcome (applied, answer lost) when it may not
//! retry.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::VectorServer;
use tearline_refstore::vectors::{LocalVectorStore, OpenMode, VectorError, VectorId, VectorStore};
use tearline_service::vectors::{RemoteOptions, RemoteVectorStore, VectorServerClient};
use tearline_sim_fs::{Fs, RealFs};

const DIMENSION: usize = 8;

/// A vector derived from `seed` (components in [-1, 1]).
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..DIMENSION)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn connect(url: &str, collection: &str, options: RemoteOptions) -> RemoteVectorStore {
    RemoteVectorStore::connect(url, collection, DIMENSION, options).expect("connect")
}

fn local(dir: &Path) -> LocalVectorStore {
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    LocalVectorStore::open(fs, dir, DIMENSION, OpenMode::ReadWrite)
        .expect("local store")
        .0
}

#[test]
fn a_remote_collection_answers_as_the_local_store_does() {
    let tmp = tempfile::tempdir().unwrap();
    let server = VectorServer::start(&tmp.path().join("server"), &[]);
    let mut remote = connect(&server.url, "gen-000001", RemoteOptions::default());
    let mut local = local(&tmp.path().join("local"));
    for store in [&mut remote as &mut dyn VectorStore, &mut local] {
        (1..=40).for_each(|id| store.upsert(id, &vector(id)).expect("upsert"));
        (1..=40).step_by(4).for_each(|id| store.delete(id).expect("delete"));
        // 1..=10 replaced, and 1, 5 and 9 back after their deletion.
        (1..=10).for_each(|id| store.upsert(id, &vector(id + 100)).expect("replace"));
    }

    assert_eq!(remote.ids().unwrap(), local.ids().unwrap());
    assert_eq!(remote.ids().unwrap().len(), 33);
    for id in 0..=41 {
        assert_eq!(remote.get(id).unwrap(), local.get(id).unwrap(), "vector {id}");
    }
    for query in 0..5 {
        let q = vector(1_000 + query);
        assert_eq!(remote.nearest(&q, 7).unwrap(), local.nearest(&q, 7).unwrap());
    }

    // What the store cannot hold is refused at once, and nothing is applied.
    assert!(matches!(remote.upsert(99, &[1.0; 3]), Err(VectorError::Invalid(_))));
    assert!(matches!(
        remote.upsert(99, &[f32::NAN; DIMENSION]),
        Err(VectorError::Invalid(_))
    ));
    assert_eq!(remote.get(99).unwrap(), None);
    // Collections are separate, and one keeps its dimension.
    let other = connect(&server.url, "gen-000002", RemoteOptions::default());
    assert!(other.ids().unwrap().is_empty());
    let wrong = RemoteVectorStore::connect(&server.url, "gen-000001", 4, RemoteOptions::default());
    assert!(matches!(wrong, Err(VectorError::Invalid(_))), "{wrong:?}");
    // A name that tries to leave the server's root reaches it (encoded)
    // and is refused by name, not by a missing route.
    match RemoteVectorStore::connect(&server.url, "../escape", DIMENSION, RemoteOptions::default()) {
        Err(VectorError::Invalid(why)) => assert!(why.contains("ASCII letters"), "{why}"),
        other => panic!("expected the name refused, got {other:?}"),
    }
    // So is a dimension no collection can have, and it leaves nothing behind.
    let client = VectorServerClient::new(&server.url, RemoteOptions::default());
    assert!(matches!(client.create("empty", 0), Err(VectorError::Invalid(_))));
    assert_eq!(client.collections().unwrap(), ["gen-000001", "gen-000002"]);
}

#[test]
fn acknowledged_upserts_survive_a_killed_vector_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("server");
    let server = VectorServer::start(&root, &[]);
    let options = RemoteOptions {
        timeout: Duration::from_secs(2),
        retries: 2,
        backoff: Duration::from_millis(10),
    };
    let mut remote = connect(&server.url, "gen-000001", options);
    for id in 1..=30 {
        remote.upsert(id, &vector(id)).expect("upsert");
    }
    drop(server); // SIGKILL

    // Nothing answers: the bounded retries end in Unavailable (nothing
    // could be sent, so nothing was applied), not in a hang.
    let started = Instant::now();
    let refused = remote.upsert(31, &vector(31));
    assert!(matches!(refused, Err(VectorError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    let restarted = VectorServer::start(&root, &[]);
    let remote = connect(&restarted.url, "gen-000001", options);
    assert_eq!(remote.ids().unwrap(), (1..=30).collect::<Vec<VectorId>>());
    for id in 1..=30 {
        assert_eq!(remote.get(id).unwrap(), Some(vector(id)), "vector {id}");
    }
}

/// A server that answers every `every`th write 10 s late, after applying
/// it; clients whose attempts time out after 1 s never see those answers.
fn slow_server(root: &Path, every: &str) -> VectorServer {
    VectorServer::start(root, &["--slow-every", every, "--slow-ms", "10000"])
}

const IMPATIENT: Duration = Duration::from_secs(1);

/// Collection `gen-000001` created by a patient client (creating is not a
/// write the server slows), then used by an impatient one.
fn impatient(server: &VectorServer, retries: u32) -> RemoteVectorStore {
    connect(&server.url, "gen-000001", RemoteOptions::default());
    let options = RemoteOptions {
        timeout: IMPATIENT,
        retries,
        backoff: Duration::from_millis(10),
    };
    connect(&server.url, "gen-000001", options)
}

/// A count from the server's `/v1/stats`.
fn stat(server: &VectorServer, field: &str) -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let stats: serde_json::Value = agent
        .get(format!("{}/v1/stats", server.url))
        .call()
        .expect("stats")
        .body_mut()
        .read_json()
        .expect("JSON");
    stats[field].as_u64().expect("a count")
}

#[test]
fn a_lost_answer_is_retried_and_the_write_stands() {
    let tmp = tempfile::tempdir().unwrap();
    // Writes 0, 2, 4, ... are answered late: each upsert's first attempt
    // times out after it was applied, and its retry is answered.
    let server = slow_server(&tmp.path().join("server"), "2");
    let mut remote = impatient(&server, 2);
    for id in 1..=2 {
        remote.upsert(id, &vector(id)).expect("the retry is answered");
    }
    assert!(
        stat(&server, "writes_applied") >= 4,
        "every upsert was applied twice: once unanswered, once retried"
    );
    assert_eq!(remote.ids().unwrap(), vec![1, 2]);
    for id in 1..=2 {
        assert_eq!(remote.get(id).unwrap(), Some(vector(id)));
    }
}

#[test]
fn without_retries_a_lost_answer_is_the_ambiguous_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let server = slow_server(&tmp.path().join("server"), "1");
    let mut remote = impatient(&server, 0);
    let outcome = remote.upsert(7, &vector(7));
    assert!(matches!(outcome, Err(VectorError::Timeout)), "{outcome:?}");
    // Told "timed out", yet applied: the caller must look before it trusts
    // either (once the server has taken the write).
    while stat(&server, "writes_applied") < 1 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let patient = connect(&server.url, "gen-000001", RemoteOptions::default());
    assert_eq!(patient.get(7).unwrap(), Some(vector(7)));
}

#[test]
fn a_damaged_collection_is_reported_at_once_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("server");
    let server = VectorServer::start(&root, &[]);
    let mut remote = connect(&server.url, "gen-000001", RemoteOptions::default());
    for id in 1..=10 {
        remote.upsert(id, &vector(id)).expect("upsert");
    }
    drop(server);
    // Garbage in the middle of the segment, with records after it: damage
    // a torn-tail repair must not cut away.
    let segment = root.join("gen-000001").join("seg-000001.vec");
    let mut bytes = std::fs::read(&segment).expect("the segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, bytes).expect("damaged");

    let restarted = VectorServer::start(&root, &[]);
    let patient = RemoteOptions {
        timeout: Duration::from_secs(2),
        retries: 3,
        backoff: Duration::from_secs(5),
    };
    let started = Instant::now();
    let damaged = RemoteVectorStore::connect(&restarted.url, "gen-000001", DIMENSION, patient);
    let elapsed = started.elapsed();
    match damaged {
        Err(VectorError::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with("gen-000001/seg-000001.vec"), "{}", file.display());
            assert!(offset > 0 && offset <= middle as u64, "{offset} (damaged at {middle})");
        }
        other => panic!("expected the damage reported, got {other:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(4),
        "retried damage ({elapsed:?}): another attempt reads the same bytes"
    );
}

#[test]
fn collections_are_listed_looked_up_without_creating_and_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    // What a drop cut short by a crash left aside is removed at start.
    let root = tmp.path().join("server");
    std::fs::create_dir_all(root.join(".dropped-gen-000009")).unwrap();
    std::fs::write(root.join(".dropped-gen-000009").join("seg-000001.vec"), b"old").unwrap();
    let server = VectorServer::start(&root, &[]);
    assert!(!root.join(".dropped-gen-000009").exists());
    let client = VectorServerClient::new(&server.url, RemoteOptions::default());
    assert!(client.collections().unwrap().is_empty());
    // Looking a collection up never creates it.
    assert!(client.open("gen-000002").unwrap().is_none());
    assert!(client.collections().unwrap().is_empty());

    let mut second = client.create("gen-000002", DIMENSION).unwrap();
    client.create("gen-000001", DIMENSION).unwrap();
    assert_eq!(client.collections().unwrap(), ["gen-000001", "gen-000002"]);
    second.upsert(5, &vector(5)).unwrap();
    let found = client.open("gen-000002").unwrap().expect("it exists");
    assert_eq!((found.name(), found.dimension()), ("gen-000002", DIMENSION));
    assert_eq!(found.get(5).unwrap(), Some(vector(5)));

    client.drop_collection("gen-000002").unwrap();
    client
        .drop_collection("gen-000002")
        .expect("dropping an absent collection is fine");
    assert_eq!(client.collections().unwrap(), ["gen-000001"]);
    assert!(client.open("gen-000002").unwrap().is_none());
    // A new collection of the old name starts empty: nothing is adopted.
    let again = client.create("gen-000002", DIMENSION).unwrap();
    assert!(again.ids().unwrap().is_empty());
}

#[test]
fn a_write_that_reaches_its_collection_after_its_budget_is_never_applied() {
    let tmp = tempfile::tempdir().unwrap();
    // Every write reaches its collection 3 s after it was received (stuck
    // behind others); the client's budget is 1 s.
    let server = VectorServer::start(
        &tmp.path().join("server"),
        &["--slow-every", "1", "--slow-ms", "3000", "--slow-before-apply"],
    );
    let mut remote = impatient(&server, 0);
    let outcome = remote.upsert(7, &vector(7));
    assert!(matches!(outcome, Err(VectorError::Timeout)), "{outcome:?}");
    let patient = connect(&server.url, "gen-000001", RemoteOptions::default());
    assert_eq!(patient.get(7).unwrap(), None, "not applied when the client gave up");
    // The server gets to it after the client gave up: refused, not applied.
    let started = Instant::now();
    while stat(&server, "writes_expired") + stat(&server, "writes_applied") < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server never took the write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        (stat(&server, "writes_expired"), stat(&server, "writes_applied")),
        (1, 0),
        "the write was applied after its budget"
    );
    assert_eq!(patient.get(7).unwrap(), None, "a write given up on landed later");
}
