//! The service's rules without HTTP: what readers get when a view cannot
//! be opened after a write, and what a write that panics leaves.

use std::path::Path;
use std::sync::Arc;

use tearline_refstore::Store;
use tearline_service::{Keys, Service, ServiceOptions};
use tearline_sim_fs::{Clock, Fs, RealFs, SystemClock};

fn service(root: &Path) -> Arc<Service> {
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Store::init(Arc::clone(&fs), Arc::clone(&clock), root).unwrap();
    let keys = Keys::parse_list("admin:0123456789abcdef").unwrap();
    Service::open(fs, clock, ServiceOptions::new(root, keys, std::env::temp_dir())).unwrap()
}

#[test]
fn when_no_view_opens_after_a_write_reads_say_so_and_come_back_by_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let service = service(&root);
    service.write_in_place(|store| store.add("a.md", b"a")).unwrap();
    let current = std::fs::read(root.join("CURRENT")).unwrap();
    // A write after which no read-only handle can open (the pointer is
    // damaged under it): readers must not be left on the old view, whose
    // vectors no longer match the files.
    service
        .write_in_place(|store| {
            store.add("b.md", b"b")?;
            std::fs::write(root.join("CURRENT"), b"garbage").unwrap();
            Ok(())
        })
        .unwrap();
    let refused = service.read(|store| store.get("b.md")).unwrap_err();
    assert_eq!(
        (refused.status, refused.kind.as_str()),
        (503, "urn:tearline:problem:reads-unavailable")
    );
    let health = service.health();
    assert_eq!(health.status, "degraded");
    assert!(
        health
            .problem
            .as_deref()
            .is_some_and(|p| p.starts_with("reads are unavailable")),
        "{health:?}"
    );
    // Once a view can open again, the next read opens it.
    std::fs::write(root.join("CURRENT"), current).unwrap();
    let found = service.read(|store| store.get("b.md")).unwrap().expect("b.md");
    assert_eq!(found.content, "b");
    assert_eq!(service.health().status, "ok");
}

#[test]
fn a_write_that_panics_is_an_error_and_the_store_stays_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let service = service(&root);
    service.write_in_place(|store| store.add("a.md", b"a")).unwrap();
    let panicked = service
        .write_in_place(|store| -> Result<(), tearline_refstore::StoreError> {
            store.add("b.md", b"b")?;
            panic!("a bug in the middle of a write");
        })
        .unwrap_err();
    assert_eq!(panicked.status, 500);
    // The writer was reopened (recovering) and readers see a fresh view.
    service.write_in_place(|store| store.add("c.md", b"c")).unwrap();
    let names = service.read(|store| store.list()).unwrap();
    assert_eq!(names, ["a.md", "b.md", "c.md"]);
    assert!(service.read(|store| store.verify()).unwrap().is_clean());
}

#[test]
fn an_import_is_staged_in_a_private_directory_of_its_own_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let staging = tmp.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    // A name that exists (another server's, anyone's) is passed over, not
    // reused; a server's tag is random, so nobody can take its names
    // ahead of it; this one's is fixed to know the first name.
    let taken = ".refstore-import-000000000000002a-000000";
    std::fs::write(staging.join(taken), b"someone else's").unwrap();
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Store::init(Arc::clone(&fs), Arc::clone(&clock), &root).unwrap();
    let keys = Keys::parse_list("admin:0123456789abcdef").unwrap();
    let service = Service::open(
        fs,
        clock,
        ServiceOptions::new(&root, keys, &staging).with_staging_tag(42),
    )
    .unwrap();
    let documents = vec![
        ("a.md".to_string(), "a".to_string()),
        ("b.md".to_string(), "b".to_string()),
    ];
    let stats = service.import(&documents).unwrap();
    assert_eq!(stats.files, 2, "{stats:?}");
    assert_eq!(service.read(|store| store.get("b.md")).unwrap().unwrap().content, "b");
    let left: Vec<String> = std::fs::read_dir(&staging)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![taken.to_string()]);
    assert_eq!(std::fs::read(staging.join(taken)).unwrap(), b"someone else's");
    let keys = Keys::parse_list("admin:0123456789abcdef").unwrap();
    let tags: std::collections::BTreeSet<u64> = (0..8)
        .map(|_| ServiceOptions::new(&root, keys.clone(), &staging).staging_tag)
        .collect();
    assert!(tags.len() > 1, "a server's staging tag is not random: {tags:?}");
    // A refused import leaves nothing either.
    let twice = vec![
        ("c.md".to_string(), "c".to_string()),
        ("c.md".to_string(), "c".to_string()),
    ];
    assert!(service.import(&twice).is_err());
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 1);
}
