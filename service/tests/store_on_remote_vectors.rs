//! The reference store with its vectors on a real `vector-server` over
//! loopback ([`RemoteVectors`]): a collection per generation, created,
//! switched and dropped with it, and the two-phase dual write and its
//! recovery, unchanged, against a remote write whose outcome is unknown.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{ADMIN, READER, Server, VectorServer, WRITER, refstore};
use tearline_refstore::{RebuildMode, Store, StoreOptions, VerifyReport};
use tearline_service::vectors::{RemoteOptions, RemoteVectors, VectorServerClient};
use tearline_sim_fs::{Clock, Fs, RealFs, SystemClock};

fn real() -> (Arc<dyn Fs>, Arc<dyn Clock>) {
    (Arc::new(RealFs), Arc::new(SystemClock))
}

fn on(server: &str, options: RemoteOptions) -> StoreOptions {
    let client = VectorServerClient::new(server, options);
    StoreOptions {
        vector_backend: Arc::new(RemoteVectors::new(client, "docs-")),
        ..StoreOptions::default()
    }
}

/// A new store at `root` on the real disk, its vectors on the vector
/// server at `server` (called with `options`), opened writable.
fn new_store(root: &std::path::Path, server: &str, options: RemoteOptions) -> Store {
    let (fs, clock) = real();
    Store::init_with(Arc::clone(&fs), Arc::clone(&clock), root, &on(server, options)).unwrap();
    Store::open(fs, clock, root, on(server, options)).unwrap()
}

fn collections(server: &str) -> Vec<String> {
    VectorServerClient::new(server, RemoteOptions::default())
        .collections()
        .expect("collections")
}

/// The ids in collection `name`.
fn ids(server: &str, name: &str) -> Vec<u64> {
    use tearline_refstore::vectors::VectorStore;
    let client = VectorServerClient::new(server, RemoteOptions::default());
    let collection = client.open(name).expect("open").expect("the collection exists");
    collection.ids().expect("ids")
}

/// A count from the vector server's `/v1/stats`.
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

/// Whether `report` finds index, vectors and sources in agreement.
fn agrees(report: &VerifyReport) -> bool {
    report.integrity == "ok"
        && report.orphan_vectors.is_empty()
        && report.missing_vectors.is_empty()
        && report.unindexed_sources.is_empty()
        && report.missing_sources.is_empty()
        && report.stale.is_empty()
        && report.pending_intents == 0
}

/// The same writes and rebuilds on a store with local vectors and on one
/// with remote ones: the same documents, the same search results, every
/// generation's vectors in its own collection (and none on the store's
/// disk), and a removed generation's collection dropped with it.
#[test]
fn a_store_keeps_each_generations_vectors_in_a_collection_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let server = VectorServer::start(&tmp.path().join("vectors"), &[]);
    let (fs, clock) = real();
    let (local_root, remote_root) = (tmp.path().join("local"), tmp.path().join("remote"));
    let remote_options = || on(&server.url, RemoteOptions::default());
    Store::init(Arc::clone(&fs), Arc::clone(&clock), &local_root).unwrap();
    Store::init_with(Arc::clone(&fs), Arc::clone(&clock), &remote_root, &remote_options()).unwrap();
    assert_eq!(collections(&server.url), ["docs-gen-000001"]);

    let mut local = Store::open(
        Arc::clone(&fs),
        Arc::clone(&clock),
        &local_root,
        StoreOptions::default(),
    )
    .unwrap();
    let mut remote = Store::open(Arc::clone(&fs), Arc::clone(&clock), &remote_root, remote_options()).unwrap();
    for store in [&mut local, &mut remote] {
        for (name, content) in [
            ("alpha.md", "crash consistency of a document index"),
            ("bravo.md", "vectors in a separate store, written in two phases"),
            ("charlie.md", "a shadow rebuild switched in by one rename"),
            ("delta.md", "a torn write at the end of a segment"),
        ] {
            store.add(name, content.as_bytes()).expect("add");
        }
        store.remove("bravo.md").expect("remove");
        store
            .add("alpha.md", b"crash consistency, second version")
            .expect("replace");
    }
    assert_eq!(ids(&server.url, "docs-gen-000001").len(), 3);
    let searched = |store: &Store| -> Vec<(String, String)> {
        let hits = store.search("a rebuild switched by a rename", 3).expect("search");
        hits.into_iter()
            .map(|hit| (hit.name, format!("{:.5}", hit.score)))
            .collect()
    };
    assert_eq!(searched(&remote), searched(&local));
    assert_eq!(remote.dump().unwrap(), local.dump().unwrap());

    // Each full rebuild builds the next generation's collection and
    // switches to it; the retention policy keeps one backup, and the
    // generation it drops takes its collection with it.
    for store in [&mut local, &mut remote] {
        store.rebuild(RebuildMode::Full, &mut |_| {}).expect("first rebuild");
    }
    assert_eq!(collections(&server.url), ["docs-gen-000001", "docs-gen-000002"]);
    for store in [&mut local, &mut remote] {
        store.rebuild(RebuildMode::Full, &mut |_| {}).expect("second rebuild");
    }
    // A collection of this store's whose generation has no directory (as
    // a repair leaves one it moved aside) is dropped by the next writable
    // open; another store's, on the same server, is not.
    let client = VectorServerClient::new(&server.url, RemoteOptions::default());
    for stray in ["docs-gen-000009", "other-gen-000001"] {
        client.create(stray, 64).expect("a stray collection");
    }
    drop(remote);
    let remote = Store::open(Arc::clone(&fs), Arc::clone(&clock), &remote_root, remote_options()).unwrap();
    assert_eq!(remote.open_report().removed_generations, ["collection docs-gen-000009"]);
    client.drop_collection("other-gen-000001").expect("drop");
    assert_eq!(collections(&server.url), ["docs-gen-000002", "docs-gen-000003"]);
    assert_eq!(ids(&server.url, "docs-gen-000003").len(), 3);
    assert_eq!(searched(&remote), searched(&local));
    assert_eq!(remote.dump().unwrap(), local.dump().unwrap());
    assert!(agrees(&remote.verify().unwrap()), "{:?}", remote.verify().unwrap());
    let generation = remote_root.join("generations/gen-000003");
    assert!(generation.join("index.db").exists());
    assert!(
        !generation.join("vectors").exists(),
        "the vectors are remote, not on the store's disk"
    );
}

/// A vector write whose answer never comes (applied, or refused for its
/// spent budget, the client cannot tell): the add fails, and the store's
/// recovery, run by the next writable open, settles it either way: no
/// orphan vector, no document without its vector, no intent left.
#[test]
fn a_vector_write_with_an_unknown_outcome_is_settled_by_recovery() {
    // Every write answered 3 s late, after applying it or before.
    for before_apply in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let vectors = tmp.path().join("vectors");
        let root = tmp.path().join("store");
        let (fs, clock) = real();
        let server = VectorServer::start(&vectors, &[]);
        let mut store = new_store(&root, &server.url, RemoteOptions::default());
        store
            .add("kept.md", b"written before the vector server slowed")
            .unwrap();
        drop(store);
        drop(server);

        let mut slow = vec!["--slow-every", "1", "--slow-ms", "3000"];
        if before_apply {
            slow.push("--slow-before-apply");
        }
        let server = VectorServer::start(&vectors, &slow);
        let impatient = RemoteOptions {
            timeout: Duration::from_millis(500),
            retries: 0,
            backoff: Duration::from_millis(10),
        };
        let mut store = Store::open(Arc::clone(&fs), Arc::clone(&clock), &root, on(&server.url, impatient)).unwrap();
        let failed = store.add("unsure.md", b"its vector's write timed out");
        assert!(failed.is_err(), "the upsert's answer never came, yet the add succeeded");
        drop(store);
        // Past the slow answer: the server has applied it or never will,
        // and which one it did is the budget's doing.
        std::thread::sleep(Duration::from_millis(3500));
        let (applied, expired) = (stat(&server, "writes_applied"), stat(&server, "writes_expired"));
        // (The add's clean-up after the timeout is a write, slowed too.)
        if before_apply {
            assert!(
                applied == 0 && expired >= 1,
                "reached after the budget, so refused: {applied} {expired}"
            );
        } else {
            assert!(
                applied >= 1 && expired == 0,
                "applied, its answer too late: {applied} {expired}"
            );
        }
        drop(server);

        let server = VectorServer::start(&vectors, &[]);
        let store = Store::open(
            Arc::clone(&fs),
            Arc::clone(&clock),
            &root,
            on(&server.url, RemoteOptions::default()),
        )
        .unwrap();
        let report = store.verify().unwrap();
        assert!(agrees(&report), "before_apply {before_apply}: {report:?}");
        let names: Vec<String> = store.dump().unwrap().documents.into_iter().map(|d| d.name).collect();
        assert!(names.contains(&"kept.md".to_string()), "{names:?}");
        // One vector per document, whichever way the add was settled.
        assert_eq!(
            ids(&server.url, "docs-gen-000001").len(),
            names.len(),
            "before_apply {before_apply}: {names:?}"
        );
    }
}

/// `refstore --vectors URL`: every command keeps the vectors on the
/// server, `verify` included, and a store whose server is down refuses
/// writes with a clear error and keeps what it had.
#[test]
fn the_cli_keeps_a_stores_vectors_on_the_server_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let server = VectorServer::start(&tmp.path().join("vectors"), &[]);
    let root = tmp.path().join("store");
    let doc = tmp.path().join("note.md");
    std::fs::write(&doc, "a note whose vector lives on the server").unwrap();
    let with = |args: &[&str]| {
        let mut all = vec!["--vectors", server.url.as_str(), "--vectors-prefix", "cli-"];
        all.extend_from_slice(args);
        refstore(&root, &all)
    };
    let doc_arg = doc.to_str().unwrap();
    for args in [&["init"][..], &["add", doc_arg], &["rebuild", "--full"], &["verify"]] {
        let out = with(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(collections(&server.url), ["cli-gen-000001", "cli-gen-000002"]);
    assert_eq!(ids(&server.url, "cli-gen-000002").len(), 1);
    let found = with(&["search", "a note on the server"]);
    assert!(String::from_utf8_lossy(&found.stdout).contains("note.md"));
    // Opened without its vector server (reading, or writing, which must
    // not rebuild the store with files instead), the store refuses and
    // says where its vectors are.
    for args in [&["verify"][..], &["add", doc_arg]] {
        let without = refstore(&root, args);
        assert!(!without.status.success(), "{args:?}");
        let said = String::from_utf8_lossy(&without.stderr);
        assert!(
            said.contains("keeps its vectors in vector-server collections"),
            "{said}"
        );
    }
    assert!(!root.join("generations/gen-000002/vectors").exists());
    assert!(!root.join("generations/gen-000003").exists());

    drop(server);
    std::fs::write(&doc, "a second version, while the server is down").unwrap();
    let refused = refstore(&root, &["--vectors", "http://127.0.0.1:9", "add", doc_arg]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("vector"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    let kept = std::fs::read_to_string(root.join("source/note.md")).unwrap();
    assert_eq!(
        kept, "a note whose vector lives on the server",
        "refused, so nothing changed"
    );
}

/// `refstore serve --vectors URL`: the service's writes, imports and full
/// rebuilds keep the vectors on the server; what it serves is searched
/// there.
#[test]
fn the_service_serves_a_store_whose_vectors_are_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let vectors = VectorServer::start(&tmp.path().join("vectors"), &[]);
    let root = tmp.path().join("store");
    let init = refstore(&root, &["--vectors", &vectors.url, "init"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let server = Server::start(&root, &["--vectors", &vectors.url]);
    let put = |name: &str, content: &str| {
        let body = serde_json::json!({ "content": content });
        let (status, answer) = server.call("PUT", &format!("/v1/documents/{name}"), Some(WRITER), Some(body));
        assert!((200..300).contains(&status), "{status} {answer}");
    };
    put("one.md", "the first document, about crash recovery");
    put("two.md", "the second document, about vector databases");
    let import = serde_json::json!({ "documents": [
        { "name": "three.md", "content": "imported, about shadow rebuilds" },
        { "name": "four.md", "content": "imported, about torn writes" },
    ]});
    let (status, answer) = server.call("POST", "/v1/import", Some(WRITER), Some(import));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ids(&vectors.url, "gen-000001").len(), 4);

    let (status, job) = server.call(
        "POST",
        "/v1/rebuild",
        Some(ADMIN),
        Some(serde_json::json!({ "mode": "full" })),
    );
    assert_eq!(status, 202, "{job}");
    let done = server.wait_for_job(job["job_id"].as_u64().expect("a job id"));
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(collections(&vectors.url), ["gen-000001", "gen-000002"]);
    assert_eq!(ids(&vectors.url, "gen-000002").len(), 4);

    let (status, found) = server.call("GET", "/v1/search?q=vector%20databases&k=1", Some(READER), None);
    assert_eq!(status, 200, "{found}");
    assert!(found.to_string().contains("two.md"), "{found}");
    drop(server);
    let verify = refstore(&root, &["--vectors", &vectors.url, "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

/// A reader needs the vector server only to search: with it down (found
/// first by the network scenarios, `net-remote-vectors:0:rpc5:
/// vector-partition-after-apply@0`, where the view a rebuild published
/// could not open and reads answered 503), a read-only open still serves
/// the documents, and a search says the vector store is unavailable.
#[test]
fn a_store_opens_for_reading_while_its_vector_server_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let server = VectorServer::start(&tmp.path().join("vectors"), &[]);
    let (fs, clock) = real();
    let root = tmp.path().join("store");
    let quick = RemoteOptions {
        timeout: Duration::from_millis(300),
        retries: 0,
        backoff: Duration::from_millis(10),
    };
    let url = server.url.clone();
    let mut store = new_store(&root, &url, quick);
    store.add("alpha.md", b"served without its vectors").expect("add");
    drop(store);
    drop(server);
    let read_only = StoreOptions {
        access: tearline_refstore::Access::ReadOnly,
        ..on(&url, quick)
    };
    let reader = Store::open(Arc::clone(&fs), Arc::clone(&clock), &root, read_only).expect("a read-only open");
    let document = reader.get("alpha.md").expect("a read").expect("the document");
    assert_eq!(document.content, "served without its vectors");
    let searched = reader
        .search("served", 1)
        .expect_err("a search needs the vector server");
    assert!(searched.to_string().contains("unavailable"), "{searched}");
}

/// The vector server's copy of a collection damaged on its real disk
/// (garbage in the middle of a segment, records after it), found when it
/// restarts: the store's next writable open takes the server's word that
/// it is damaged, rebuilds the generation from the source files into a new
/// collection, and serves and searches as before (found first by
/// `net-damaged-vectors`).
#[test]
fn a_store_rebuilds_a_collection_its_vector_server_found_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let vectors = tmp.path().join("vectors");
    let server = VectorServer::start(&vectors, &[]);
    let (fs, clock) = real();
    let root = tmp.path().join("store");
    let mut store = new_store(&root, &server.url, RemoteOptions::default());
    for (name, content) in [
        ("alpha.md", "crash consistency of a document index"),
        ("bravo.md", "vectors in a separate store, written in two phases"),
        ("charlie.md", "a shadow rebuild switched in by one rename"),
    ] {
        store.add(name, content.as_bytes()).expect("add");
    }
    let searched_before = store.search("a rebuild switched by a rename", 1).expect("search");
    drop(store);
    drop(server);
    let segment = vectors.join("docs-gen-000001").join("seg-000001.vec");
    let mut bytes = std::fs::read(&segment).expect("the segment");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle - 8..middle + 8] {
        *byte ^= 0xA5;
    }
    std::fs::write(&segment, bytes).expect("damaged");

    let restarted = VectorServer::start(&vectors, &[]);
    let store = Store::open(
        Arc::clone(&fs),
        Arc::clone(&clock),
        &root,
        on(&restarted.url, RemoteOptions::default()),
    )
    .expect("the writable open rebuilds what the vector server found damaged");
    let repaired = store.open_report().repaired.as_ref().expect("a repair");
    assert!(
        format!("{repaired:?}").contains("docs-gen-000001/seg-000001.vec"),
        "{repaired:?}"
    );
    assert!(store.open_report().generation > 1);
    assert_eq!(
        store.get("bravo.md").unwrap().expect("bravo.md").content,
        "vectors in a separate store, written in two phases"
    );
    let searched = store.search("a rebuild switched by a rename", 1).expect("search");
    assert_eq!(searched[0].name, searched_before[0].name);
    assert!(agrees(&store.verify().unwrap()), "{:?}", store.verify().unwrap());
}
