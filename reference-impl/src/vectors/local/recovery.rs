//! Reading a store's directory back: which files are segments, what each
//! holds, and whether damage is a torn tail (repairable) or corruption (not).
//! Nothing here writes; [`super::LocalVectorStore::open`] applies the repair
//! this module decides on. The rules are stated in the parent module's docs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tearline_sim_fs::{FileKind, Fs, FsExt};

use super::format::{Checksums, HEADER_LEN, Record, RecordError, decode_header, decode_record, encode_header};
use crate::vectors::{VectorError, VectorId};

/// The file name of segment `number`.
pub(crate) fn segment_name(number: u64) -> String {
    format!("seg-{number:06}.vec")
}

/// The number of a segment file name, or `None` for any other name.
fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".vec")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How the last segment must be cut back to be whole again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TailRepair {
    /// The segment to repair.
    pub(crate) path: PathBuf,
    /// Bytes to keep; `0` means the header itself was torn and must be
    /// written again.
    pub(crate) keep_len: u64,
    /// Bytes dropped after `keep_len`.
    pub(crate) dropped_bytes: u64,
    /// Damaged records dropped: 1, or 0 if the dropped bytes are all zeros.
    pub(crate) dropped_records: u64,
}

/// The last segment, as the writer will continue it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LastSegment {
    /// Its number.
    pub(crate) number: u64,
    /// Its path.
    pub(crate) path: PathBuf,
    /// Its length once repaired: where the next record goes.
    pub(crate) valid_len: u64,
}

/// Everything read from a store's directory.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The live vectors.
    pub(crate) vectors: BTreeMap<VectorId, Vec<f32>>,
    /// Segment files read.
    pub(crate) segments: usize,
    /// Whole, valid records read.
    pub(crate) records_read: u64,
    /// The last segment, if there is one.
    pub(crate) last: Option<LastSegment>,
    /// The repair the last segment needs, if any.
    pub(crate) repair: Option<TailRepair>,
    /// Entries of the directory that are not segments.
    pub(crate) ignored: Vec<PathBuf>,
}

/// Reads every segment under `dir` in order, replaying its records (each
/// one's CRC checked, unless `checksums` says to trust them).
pub(crate) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    dimension: usize,
    checksums: Checksums,
) -> Result<Recovered, VectorError> {
    let mut numbered = Vec::new();
    let mut recovered = Recovered::default();
    for entry in fs.read_dir(dir)? {
        match segment_number(&entry.name) {
            Some(number) if entry.kind == FileKind::File => numbered.push((number, dir.join(&entry.name))),
            _ => recovered.ignored.push(dir.join(&entry.name)),
        }
    }
    // Names sort by string; segments are ordered by number (a seventh digit
    // sorts wrong as text).
    numbered.sort();
    let count = numbered.len();
    for (i, (number, path)) in numbered.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let bytes = fs.read_file(&path)?;
        let parsed = parse_segment(&path, &bytes, dimension, is_last, checksums)?;
        recovered.segments += 1;
        recovered.records_read += parsed.records.len() as u64;
        for record in parsed.records {
            match record {
                Record::Upsert { id, vector } => {
                    recovered.vectors.insert(id, vector);
                }
                Record::Delete { id } => {
                    recovered.vectors.remove(&id);
                }
            }
        }
        if is_last {
            let valid_len = parsed.repair.as_ref().map_or(bytes.len() as u64, |r| r.keep_len);
            recovered.repair = parsed.repair;
            recovered.last = Some(LastSegment {
                number,
                path,
                valid_len: valid_len.max(HEADER_LEN),
            });
        }
    }
    Ok(recovered)
}

/// One segment's records, and the repair its tail needs.
struct ParsedSegment {
    records: Vec<Record>,
    repair: Option<TailRepair>,
}

fn corrupt(path: &Path, offset: u64, reason: String) -> VectorError {
    VectorError::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason,
    }
}

/// Parses one segment. Damage is repairable only in the last segment and
/// only where no valid record follows it.
fn parse_segment(
    path: &Path,
    bytes: &[u8],
    dimension: usize,
    is_last: bool,
    checksums: Checksums,
) -> Result<ParsedSegment, VectorError> {
    let file_len = bytes.len() as u64;
    if is_last && is_torn_header(bytes, dimension) {
        return Ok(ParsedSegment {
            records: Vec::new(),
            repair: Some(TailRepair {
                path: path.to_path_buf(),
                keep_len: 0,
                dropped_bytes: file_len,
                dropped_records: 0,
            }),
        });
    }
    match decode_header(bytes) {
        Ok(found) if usize::try_from(found).ok() == Some(dimension) => {}
        Ok(found) => {
            return Err(corrupt(
                path,
                0,
                format!("segment holds {found}-dimensional vectors, the store is {dimension}-dimensional"),
            ));
        }
        Err(e) => return Err(corrupt(path, 0, e.to_string())),
    }
    let mut records = Vec::new();
    let mut pos = HEADER_LEN as usize;
    while pos < bytes.len() {
        match decode_record(&bytes[pos..], dimension, checksums) {
            Ok((record, used)) => {
                records.push(record);
                pos += used;
            }
            Err(e) => {
                let repair = damaged_tail(path, bytes, pos, dimension, is_last, &e, checksums)?;
                return Ok(ParsedSegment {
                    records,
                    repair: Some(repair),
                });
            }
        }
    }
    Ok(ParsedSegment { records, repair: None })
}

/// `true` for a header that never fully reached the disk: the segment was
/// being created when the power went, so nothing can follow it. Its bytes
/// are a strict prefix of the header this store writes, or zeros (a write
/// whose sector was lost while the length survived). Anything else, even
/// short, is not this store's and is left alone.
fn is_torn_header(bytes: &[u8], dimension: usize) -> bool {
    let Ok(dimension) = u32::try_from(dimension) else {
        return false;
    };
    let expected = encode_header(dimension);
    bytes.len() <= expected.len() && bytes != expected && (expected.starts_with(bytes) || bytes.iter().all(|&b| b == 0))
}

/// Decides what a bad record at `pos` is: a torn tail (the last segment, and
/// no valid record anywhere after it) or corruption.
fn damaged_tail(
    path: &Path,
    bytes: &[u8],
    pos: usize,
    dimension: usize,
    is_last: bool,
    error: &RecordError,
    checksums: Checksums,
) -> Result<TailRepair, VectorError> {
    if !is_last {
        return Err(corrupt(path, pos as u64, format!("{error} in a sealed segment")));
    }
    if let Some(next) = (pos + 1..bytes.len()).find(|&at| decode_record(&bytes[at..], dimension, checksums).is_ok()) {
        return Err(corrupt(
            path,
            pos as u64,
            format!("{error}, followed by a valid record at byte {next}"),
        ));
    }
    let tail = &bytes[pos..];
    Ok(TailRepair {
        path: path.to_path_buf(),
        keep_len: pos as u64,
        dropped_bytes: tail.len() as u64,
        dropped_records: u64::from(tail.iter().any(|&b| b != 0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segment_names_parse() {
        assert_eq!(segment_number(&segment_name(1)), Some(1));
        assert_eq!(segment_number(&segment_name(1_234_567)), Some(1_234_567));
        for other in [
            "seg-.vec",
            "seg-12a.vec",
            "seg-000001.vec.tmp",
            "x-000001.vec",
            "seg-+1.vec",
        ] {
            assert_eq!(segment_number(other), None, "{other}");
        }
    }
}
