//! A store's files damaged at rest: every file the reference store derives
//! from its sources (`CURRENT`, `CREATED`, `index.db`, vector segments, the
//! lock, the space reserve) and its journals, hurt in arbitrary ways while
//! it is closed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use tearline_refstore::journal::parse_journal;
use tearline_refstore::{RebuildMode, Store, StoreOptions};
use tearline_sim_fs::{Clock, CrashChoice, FileKind, Fs, FsExt, PersistenceModel, SimConfig, SimFs, SimSnapshot};

/// The documents of the fixture store.
const DOCS: [(&str, &str); 3] = [
    ("a.md", "Alpha\n\nThe first document, about crash safety."),
    (
        "b.md",
        "Beta\n\nThe second one, about vector stores and their segments.",
    ),
    ("c.md", "Gamma\n\nThe third, about generations and backups."),
];

/// Names a fuzzed journal may list: the documents, and two that are not.
const NAMES: [&str; 5] = ["a.md", "b.md", "c.md", "d.md", "e.md"];

fn root() -> &'static Path {
    Path::new("/store")
}

fn source_dir() -> PathBuf {
    root().join("source")
}

/// The fixture: a store with three documents, rebuilt once (so a backup
/// generation exists), closed, everything durable.
fn fixture() -> SimSnapshot {
    thread_local! {
        static FIXTURE: SimSnapshot = {
            let sim = SimFs::new(SimConfig::with_seed(11));
            let fs: Arc<dyn Fs> = Arc::new(sim.clone());
            let clock: Arc<dyn Clock> = Arc::new(sim.clock());
            Store::init(Arc::clone(&fs), Arc::clone(&clock), root()).expect("init");
            let mut store = Store::open(fs, clock, root(), StoreOptions::default()).expect("open");
            for (name, text) in DOCS {
                store.add(name, text.as_bytes()).expect("add");
            }
            store.rebuild(RebuildMode::Full, &mut |_| {}).expect("rebuild");
            drop(store);
            sim.snapshot()
        };
    }
    FIXTURE.with(SimSnapshot::clone)
}

/// A journal record built from parts, so the fuzzer reaches the drain's
/// roll-back and roll-forward paths, not only its parser.
#[derive(Arbitrary, Debug)]
struct JournalParts {
    op: u8,
    state: u8,
    paths: Vec<(u8, bool, bool)>,
}

impl JournalParts {
    fn json(&self, id: &str) -> Vec<u8> {
        let op = ["add", "remove", "import"][usize::from(self.op % 3)];
        let state = ["active", "committed", "rolled_back"][usize::from(self.state % 3)];
        let mut seen = BTreeSet::new();
        let paths: Vec<serde_json::Value> = self
            .paths
            .iter()
            .filter(|(name, ..)| seen.insert(name % NAMES.len() as u8))
            .map(|(name, existed, write)| {
                serde_json::json!({
                    "name": NAMES[usize::from(*name) % NAMES.len()],
                    "existed": existed,
                    "action": if *write { "write" } else { "remove" },
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"version": 1, "id": id, "op": op, "state": state, "paths": paths}))
            .expect("json")
    }
}

/// One hurt to the closed store. `file` picks one of the store's files
/// other than its sources, in path order.
#[derive(Arbitrary, Debug)]
enum Hurt {
    /// Bytes written over the file at an offset.
    Overwrite { file: u8, offset: u32, bytes: Vec<u8> },
    /// One bit flipped.
    FlipBit { file: u8, bit: u32 },
    /// Cut to a length.
    Truncate { file: u8, len: u32 },
    /// Replaced by these bytes.
    Replace { file: u8, bytes: Vec<u8> },
    /// Removed.
    Remove { file: u8 },
    /// A sector that reads as `EIO` until rewritten.
    Unreadable { file: u8, offset: u32 },
    /// A journal file of arbitrary bytes.
    RawJournal { id: u8, bytes: Vec<u8> },
    /// A well-formed journal with arbitrary content, and its snapshot of
    /// one name.
    Journal {
        id: u8,
        parts: JournalParts,
        snapshot: Option<(u8, Vec<u8>)>,
    },
}

/// The store's files other than its sources, in path order.
fn derived_files(fs: &SimFs) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs.read_dir_or_empty(&dir).expect("listing the store") {
            let path = dir.join(&entry.name);
            match entry.kind {
                FileKind::Dir if path != source_dir() => dirs.push(path),
                FileKind::File => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    files
}

/// The source files, name to content.
fn sources(fs: &SimFs) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs
        .read_dir_or_empty(&source_dir())
        .expect("listing the sources")
        .into_iter()
        .filter(|e| e.kind == FileKind::File && !e.name.starts_with('.'))
        .map(|e| {
            let bytes = fs.read_file(&source_dir().join(&e.name)).expect("reading a source");
            (e.name, bytes)
        })
        .collect();
    files.sort();
    files
}

fn hurt(sim: &SimFs, files: &[PathBuf], hurt: &Hurt, journaled: &mut BTreeSet<String>) {
    let pick = |file: &u8| &files[usize::from(*file) % files.len()];
    let rewrite = |path: &Path, change: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = sim.read_file(path).unwrap_or_default();
        change(&mut bytes);
        sim.write_file_atomic(path, &bytes).expect("damaging a file");
    };
    let journal = |id: u8| root().join("journal").join(format!("m{id}.json"));
    match hurt {
        Hurt::Overwrite { file, offset, bytes } => rewrite(pick(file), &|b| {
            let at = (*offset as usize).min(b.len());
            let end = (at + bytes.len().min(4096)).min(b.len());
            b[at..end].copy_from_slice(&bytes[..end - at]);
        }),
        Hurt::FlipBit { file, bit } => rewrite(pick(file), &|b| {
            if !b.is_empty() {
                let bit = *bit as usize % (b.len() * 8);
                b[bit / 8] ^= 1 << (bit % 8);
            }
        }),
        Hurt::Truncate { file, len } => rewrite(pick(file), &|b| b.truncate(*len as usize)),
        Hurt::Replace { file, bytes } => rewrite(pick(file), &|b| *b = bytes.clone()),
        Hurt::Remove { file } => {
            let path = pick(file);
            sim.remove_file_if_exists(path).expect("removing a file");
            sim.sync_dir_named(path.parent().expect("a parent")).expect("sync");
        }
        Hurt::Unreadable { file, offset } => {
            // A file an earlier hurt removed has no sector to lose.
            let path = pick(file);
            if let Ok(bytes) = sim.read_file(path) {
                let at = u64::from(*offset) % (bytes.len() as u64).max(1);
                sim.damage_sector(path, at).expect("damaging a sector");
            }
        }
        Hurt::RawJournal { id, bytes } => {
            let path = journal(*id % 4);
            sim.write_file_atomic(&path, bytes).expect("writing a journal");
            if let Ok(record) = parse_journal(&format!("m{}", id % 4), bytes) {
                journaled.extend(record.paths.into_iter().map(|p| p.name));
            }
        }
        Hurt::Journal { id, parts, snapshot } => {
            let id = format!("m{}", id % 4);
            let bytes = parts.json(&id);
            sim.write_file_atomic(&root().join("journal").join(format!("{id}.json")), &bytes)
                .expect("writing a journal");
            if let Some((name, content)) = snapshot {
                let dir = root().join("journal").join(format!("{id}.snap"));
                sim.create_dir_all_durable(&dir).expect("mkdir");
                sim.write_file_atomic(&dir.join(NAMES[usize::from(*name) % NAMES.len()]), content)
                    .expect("writing a snapshot");
            }
            let record = parse_journal(&id, &bytes).expect("a journal built from parts parses");
            journaled.extend(record.paths.into_iter().map(|p| p.name));
        }
    }
}

/// The fixture store, closed, hurt in up to four arbitrary ways at rest.
///
/// - A read-only open serves what the sources say or refuses; it never
///   serves a document list that is not the sources'.
/// - A writable open succeeds (the index is always rebuildable from the
///   sources) and leaves an index that `verify` finds clean and that lists
///   exactly the source files, each with its file's content.
/// - No source file changes, except those a well-formed journal names (a
///   drain rolls those back or forward, as the journal says).
/// - A full rebuild then succeeds and leaves the same documents.
pub fn store_at_rest(data: &[u8]) {
    let Ok(hurts) = Unstructured::new(data).arbitrary::<Vec<Hurt>>() else {
        return;
    };
    let snapshot = fixture();
    let sim = snapshot.boot(
        PersistenceModel::Prefix,
        &CrashChoice::everything(snapshot.pending_ops()),
    );
    let files = derived_files(&sim);
    let before = sources(&sim);
    let mut journaled = BTreeSet::new();
    for h in hurts.iter().take(4) {
        hurt(&sim, &files, h, &mut journaled);
    }
    let fs: Arc<dyn Fs> = Arc::new(sim.clone());
    let clock: Arc<dyn Clock> = Arc::new(sim.clock());
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();

    if let Ok(reader) = Store::open(Arc::clone(&fs), Arc::clone(&clock), root(), StoreOptions::read_only())
        && let Ok(listed) = reader.list()
    {
        assert_eq!(
            listed,
            names(&before),
            "a read-only open of a damaged store lists other documents"
        );
    }
    assert_eq!(sources(&sim), before, "a read-only open changed the sources");

    let store = Store::open(Arc::clone(&fs), Arc::clone(&clock), root(), StoreOptions::default())
        .unwrap_or_else(|e| panic!("a writable open of a store damaged at rest failed: {e}"));
    let after = sources(&sim);
    for (name, content) in &before {
        if !journaled.contains(name) {
            let now = after.iter().find(|(n, _)| n == name).map(|(_, c)| c);
            assert_eq!(now, Some(content), "source {name}, which no journal names, changed");
        }
    }
    // A journal's snapshot may restore bytes that are not text: not a
    // document (the store skips it, and says so).
    let after: Vec<(String, Vec<u8>)> = after
        .into_iter()
        .filter(|(_, content)| std::str::from_utf8(content).is_ok())
        .collect();
    let check = |store: &Store, when: &str| {
        let report = store.verify().unwrap_or_else(|e| panic!("verify {when} failed: {e}"));
        assert!(report.is_clean(), "verify {when} is not clean: {report:?}");
        assert_eq!(
            store.list().expect("list"),
            names(&after),
            "the index {when} lists other documents"
        );
        for (name, content) in &after {
            let doc = store.get(name).expect("get").expect("a listed document");
            assert_eq!(
                doc.content.as_bytes(),
                content.as_slice(),
                "{name} {when} is not its file"
            );
        }
    };
    check(&store, "after the writable open");
    let mut store = store;
    store
        .rebuild(RebuildMode::Full, &mut |_| {})
        .unwrap_or_else(|e| panic!("a full rebuild after the repair failed: {e}"));
    check(&store, "after a full rebuild");
}
