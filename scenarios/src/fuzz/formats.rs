//! The store's own file formats: the journal record and the vector segments.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use tearline_refstore::journal::parse_journal;
use tearline_refstore::vectors::{LocalVectorStore, OpenMode, VectorError, VectorStore};
use tearline_sim_fs::{Fs, FsExt, SimConfig, SimFs};

/// A journal file `journal/<id>.json` holding arbitrary bytes: the parser
/// refuses it with a reason or returns a record that names the file's id,
/// lists only valid document names, each once, and reads back unchanged
/// after the store writes it again.
pub fn journal_record(data: &[u8]) {
    let mut input = Unstructured::new(data);
    // Half the time the file is named after the id the bytes claim, so the
    // fuzzer reaches the checks past the name.
    let own_name = input.arbitrary::<bool>().unwrap_or(false);
    let named: String = input.arbitrary().unwrap_or_default();
    let bytes = input.take_rest();
    let id = if own_name {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_string)))
            .unwrap_or(named)
    } else {
        named
    };
    let Ok(record) = parse_journal(&id, bytes) else {
        return;
    };
    assert_eq!(record.id, id, "a journal accepted under another file's name");
    let written = serde_json::to_vec(&record).expect("a parsed journal serialises");
    let again = parse_journal(&id, &written)
        .unwrap_or_else(|e| panic!("a journal the parser accepted does not read back once written: {e}"));
    assert_eq!(again, record, "a journal changes when written and read back");
}

/// One piece of a segment file: what the store writes, or raw bytes.
#[derive(Arbitrary, Debug)]
enum Piece {
    /// The header of a segment of this dimension.
    Header(u8),
    /// An upsert record of a vector (components cycled to the dimension).
    Upsert(u16, Vec<f32>),
    /// A delete record.
    Delete(u16),
    /// Bytes as they are.
    Raw(Vec<u8>),
    /// The previous pieces' bytes cut to this many.
    Cut(u16),
}

/// The segment files of a vector store directory, and its dimension.
#[derive(Arbitrary, Debug)]
struct Segments {
    dimension: u8,
    files: Vec<(u8, Vec<Piece>)>,
}

/// Encodes one record as the format in `vectors/local.rs` says (written
/// here from the documentation, not with the store's encoder).
fn record(kind: u8, id: u64, vector: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    let body_len = 9 + 4 * vector.len() as u32;
    out.extend_from_slice(&body_len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    for c in vector {
        out.extend_from_slice(&c.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn header(dimension: u32) -> Vec<u8> {
    let mut out = b"TLVECSEG".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&dimension.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

impl Segments {
    fn dimension(&self) -> usize {
        usize::from(self.dimension % 4) + 1
    }

    /// `(file name, bytes)` of each segment.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        let dimension = self.dimension();
        let mut files = std::collections::BTreeMap::new();
        for (number, pieces) in self.files.iter().take(4) {
            let mut bytes = Vec::new();
            for piece in pieces.iter().take(64) {
                match piece {
                    Piece::Header(d) => bytes.extend(header(if *d == 0 { dimension as u32 } else { u32::from(*d) })),
                    Piece::Upsert(id, components) => {
                        let vector: Vec<f32> = (0..dimension)
                            .map(|i| components.get(i).copied().unwrap_or(i as f32 + 0.5))
                            .collect();
                        record(1, u64::from(*id), &vector, &mut bytes);
                    }
                    Piece::Delete(id) => record(2, u64::from(*id), &[], &mut bytes),
                    Piece::Raw(raw) => bytes.extend(raw.iter().take(256)),
                    Piece::Cut(len) => bytes.truncate(usize::from(*len)),
                }
            }
            files.insert(format!("seg-{:06}.vec", u32::from(*number % 5) + 1), bytes);
        }
        files.into_iter().collect()
    }
}

/// What a store holds: every live id with its vector's bits.
fn contents(store: &LocalVectorStore) -> Vec<(u64, Vec<u32>)> {
    let ids = store.ids().expect("ids of an open store");
    ids.into_iter()
        .map(|id| {
            let vector = store.get(id).expect("get").expect("a listed id has a vector");
            (id, vector.iter().map(|c| c.to_bits()).collect())
        })
        .collect()
}

fn read_all(fs: &SimFs, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut entries = fs.read_dir_or_empty(dir).expect("listing the segments");
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
        .into_iter()
        .map(|e| {
            let bytes = fs.read_file(&dir.join(&e.name)).expect("reading a segment");
            (e.name, bytes)
        })
        .collect()
}

/// A vector store directory holding arbitrary segment files (built from
/// what the store writes: headers, records, cuts, and raw bytes): a
/// read-only open and a writable open agree on whether it opens and on
/// what it holds; a refusal is `Corrupt` or `Invalid` and writes nothing;
/// a repair leaves only records that pass their CRC (a second open
/// repairs nothing and reads the same), and the repaired store takes a
/// new write that the next open reads.
pub fn vector_segments(data: &[u8]) {
    let Ok(segments) = Unstructured::new(data).arbitrary::<Segments>() else {
        return;
    };
    let dimension = segments.dimension();
    let sim = SimFs::new(SimConfig::with_seed(1));
    let dir = PathBuf::from("/vectors");
    sim.create_dir_all_durable(&dir).expect("mkdir");
    for (name, bytes) in segments.files() {
        sim.write_file_atomic(&dir.join(name), &bytes)
            .expect("writing a segment");
    }
    let before = read_all(&sim, &dir);
    let fs: Arc<dyn Fs> = Arc::new(sim.clone());
    let read_only = LocalVectorStore::open(Arc::clone(&fs), &dir, dimension, OpenMode::ReadOnly);
    // A read-only open writes nothing, ever.
    assert_eq!(read_all(&sim, &dir), before, "a read-only open changed the segments");
    let writable = LocalVectorStore::open(Arc::clone(&fs), &dir, dimension, OpenMode::ReadWrite);
    match (&read_only, &writable) {
        (Err(e), _) | (_, Err(e)) => {
            assert!(
                matches!(e, VectorError::Corrupt { .. } | VectorError::Invalid(_)),
                "an open failed with neither Corrupt nor Invalid on a healthy device: {e}"
            );
            assert!(
                read_only.is_err() && writable.is_err(),
                "the read-only and the writable open disagree: read-only {:?}, writable {:?}",
                read_only.as_ref().err().map(ToString::to_string),
                writable.as_ref().err().map(ToString::to_string)
            );
            assert_eq!(
                read_all(&sim, &dir),
                before,
                "an open that refused changed the segments"
            );
        }
        (Ok((read_only, _)), Ok((writable, _))) => {
            let held = contents(writable);
            assert_eq!(
                contents(read_only),
                held,
                "read-only and writable opens read different vectors"
            );
            let (again, report) = LocalVectorStore::open(Arc::clone(&fs), &dir, dimension, OpenMode::ReadWrite)
                .expect("a repaired store opens again");
            assert!(!report.repaired(), "a second open repaired again: {report:?}");
            assert_eq!(contents(&again), held, "a second open reads different vectors");
            drop(again);
            let mut writer = LocalVectorStore::open(Arc::clone(&fs), &dir, dimension, OpenMode::ReadWrite)
                .expect("reopen")
                .0;
            let new = vec![0.25f32; dimension];
            writer.upsert(1 << 40, &new).expect("a write to a repaired store");
            drop(writer);
            let (after, _) =
                LocalVectorStore::open(fs, &dir, dimension, OpenMode::ReadOnly).expect("a store opens after a write");
            assert_eq!(
                after.get(1 << 40).expect("get"),
                Some(new),
                "an acknowledged write is lost"
            );
        }
    }
}
