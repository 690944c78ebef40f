//! [`LocalVectorStore`]: a [`VectorStore`] in one directory of an [`Fs`], as
//! append-only, checksummed segment files.
//!
//! # On-disk format
//!
//! The directory holds segments named `seg-NNNNNN.vec` (the number in decimal,
//! at least six digits, starting at 1), read in numeric order. Only the
//! highest-numbered segment (the *active* one) is ever written; the others are
//! *sealed*. All integers are little-endian.
//!
//! ```text
//! header  (20 bytes)  magic "TLVECSEG" | version u32 = 1 | dimension u32 | crc32 u32 of the 16 bytes before
//! record  (repeated)  body_len u32 | kind u8 | id u64 | vector | crc32 u32 of body_len..vector
//!     upsert:  kind 1, vector = dimension × f32, body_len = 9 + 4·dimension
//!     delete:  kind 2, no vector,                body_len = 9 (a tombstone)
//! ```
//!
//! Replaying every record in order gives the live vectors; the in-memory index
//! (`id → vector`) is rebuilt that way on open.
//!
//! # Reads
//!
//! Every record's CRC is checked when it is read from disk, which is at open
//! (the whole directory is replayed); `get`, `ids` and `nearest` answer from
//! that checked copy. So a read never returns a vector whose bytes changed
//! on disk: damage present at open makes the open fail with
//! [`VectorError::Corrupt`] naming the file and offset (unless it is a torn
//! tail, see below), and damage that happens later is not read by this
//! handle (the next open finds it).
//!
//! # Write protocol
//!
//! - `upsert`/`delete` append one record at the end of the active segment and
//!   sync it before returning `Ok`: by default with `sync_data`, which relies
//!   on `fdatasync` making the file's new length durable along with the
//!   bytes, as Linux does ([`tearline_sim_fs::SyncDataPolicy::Linux`]); with
//!   [`AppendSync::All`], `sync_all`, for a filesystem that promises only
//!   what POSIX does ([`tearline_sim_fs::SyncDataPolicy::SizeNotDurable`]).
//! - A new segment is created (`seg-N+1`), its header written and `sync_all`ed
//!   and the directory `sync_dir`ed before any record goes in. The active
//!   segment is sealed, and a new one started, at the first append after it
//!   holds [`LocalOptions::segment_target_bytes`] or more.
//! - If an append fails (the write or its sync), the store cuts the segment
//!   back to its last acknowledged byte (`set_len` + `sync_all`) before
//!   returning the error, so the failed write is not applied, in memory or on
//!   disk. If that cut fails too, it is retried before the next write (and
//!   before a `delete` of an absent id reports success); until then the tail
//!   may hold the failed record.
//! - Open in [`OpenMode::ReadWrite`] creates the directory if it is missing,
//!   syncs it and every ancestor up to the root, and `sync_all`s the last
//!   segment: what a crashed process (or an earlier failed open) left in the
//!   page cache is made durable before anything is built on it.
//! - One writer per directory: the caller serialises processes (the reference
//!   store holds the write lock on its root directory).
//!
//! # Fault model and repair rules
//!
//! What can go wrong: a power cut at any syscall, after which any subset of
//! the unsynced writes may have reached the disk, each possibly torn at sector
//! granularity; a process crash; `EIO` or `ENOSPC` from any call. Because
//! every record is synced before the next is written, and a segment's header
//! and name are durable before its first record, the only damage those faults
//! can leave is at the end of the last segment. Open tells that damage apart
//! from corruption, and never panics:
//!
//! - **Torn tail** (repaired): in the last segment, a record that is cut
//!   short, fails its checksum or has an impossible length or kind, with no
//!   valid record starting anywhere after it (so: trailing zeros, a torn or
//!   half-written final record). The tail from that record on is dropped.
//! - **Torn header** (repaired): a last segment of at most 20 bytes that is
//!   a strict prefix of the header this store writes, or all zeros (including
//!   a 0-byte file: created, but the header never reached the disk). It is
//!   rewritten as a fresh header with no records, and the bytes it had are
//!   counted as dropped. A short file that is not such a prefix is not the
//!   store's: corruption.
//! - **Corruption** (refused): a bad record followed by a valid one, any
//!   damage in a sealed segment, a wrong magic, an unknown format version, or
//!   a dimension other than the store's. Open returns
//!   [`VectorError::Corrupt`] naming the file and the offset of the first bad
//!   byte, and writes nothing.
//!
//! In [`OpenMode::ReadWrite`] a repair is applied on disk (`set_len` or a
//! header rewrite, then `sync_all`); in [`OpenMode::ReadOnly`] the damaged
//! tail is only left out of memory. Both report the same [`OpenReport`].
//! Directory entries that are not segment files (other names, directories)
//! are ignored, never removed, and listed in [`OpenReport::ignored`]: the
//! store creates no temporary files, so anything else belongs to someone else.

mod format;
mod recovery;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tearline_sim_fs::{FileHandle, FileHandleExt, Fs, FsExt, OpenOptions};

use super::search::nearest;
use super::{Neighbour, VectorError, VectorId, VectorStore, check_vector};
use format::{HEADER_LEN, encode_delete, encode_header, encode_upsert, upsert_len};
use recovery::{Recovered, segment_name};

/// The largest dimension a store accepts (so every record fits its length field).
pub const MAX_DIMENSION: usize = 1 << 16;

/// Whether [`LocalVectorStore::open`] may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenMode {
    /// Create the directory if missing, repair a torn tail on disk, accept writes.
    ReadWrite,
    /// Write nothing, ever: a torn tail is left out of memory only, and every
    /// write fails with `ErrorKind::ReadOnlyFilesystem`.
    ReadOnly,
}

/// Settings of a [`LocalVectorStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalOptions {
    /// Start a new segment at the first append after the active one holds at
    /// least this many bytes (header included). Default 4 MiB; at least 1 (a
    /// value no larger than the 20-byte header gives one record per segment).
    pub segment_target_bytes: u64,
    /// How each append is made durable. Default [`AppendSync::Data`].
    pub append_sync: AppendSync,
    /// A known-bad design to run with (see [`crate::flawed::Flaw`]). Default none.
    #[cfg(feature = "flawed-variants")]
    pub flaw: Option<crate::flawed::Flaw>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            segment_target_bytes: 4 << 20,
            append_sync: AppendSync::Data,
            #[cfg(feature = "flawed-variants")]
            flaw: None,
        }
    }
}

/// The sync that makes an appended record durable. Every append extends the
/// file, so the sync must cover the new length as well as the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AppendSync {
    /// `fdatasync`: enough where it makes a new length durable too (Linux).
    #[default]
    Data,
    /// `fsync`: enough everywhere POSIX holds; one more metadata write per
    /// append where `fdatasync` would do.
    All,
}

/// What [`LocalVectorStore::open`] found, and what it repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Segment files read.
    pub segments: usize,
    /// Whole, valid records replayed.
    pub records_read: u64,
    /// Vectors live after the replay.
    pub live_vectors: usize,
    /// Damaged records dropped from a torn tail (0 when the dropped bytes are
    /// all zeros, or only a torn header was dropped).
    pub dropped_records: u64,
    /// Bytes dropped from a torn tail or a torn header.
    pub dropped_bytes: u64,
    /// Segments cut back to their last whole record (or, for a torn header,
    /// rewritten empty). In [`OpenMode::ReadOnly`]: the ones that would be.
    pub truncated: Vec<PathBuf>,
    /// Directory entries that are not segments, left alone.
    pub ignored: Vec<PathBuf>,
}

impl OpenReport {
    /// `true` if open found damage to repair.
    pub fn repaired(&self) -> bool {
        !self.truncated.is_empty()
    }
}

/// A [`VectorStore`] of append-only segment files on an [`Fs`]. See the module
/// docs for the format and the repair rules.
pub struct LocalVectorStore {
    dir: PathBuf,
    dimension: usize,
    vectors: BTreeMap<VectorId, Vec<f32>>,
    /// `None` in [`OpenMode::ReadOnly`].
    writer: Option<Writer>,
}

impl fmt::Debug for LocalVectorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalVectorStore")
            .field("dir", &self.dir)
            .field("dimension", &self.dimension)
            .field("live_vectors", &self.vectors.len())
            .field("writer", &self.writer)
            .finish()
    }
}

impl LocalVectorStore {
    /// Opens (in [`OpenMode::ReadWrite`], creating) the store in `dir` with
    /// the default [`LocalOptions`]. See [`LocalVectorStore::open_with`].
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        dimension: usize,
        mode: OpenMode,
    ) -> Result<(Self, OpenReport), VectorError> {
        Self::open_with(fs, dir, dimension, mode, LocalOptions::default())
    }

    /// Opens the store in `dir`, replaying every segment and repairing a torn
    /// tail (see the module docs). `Invalid` for a dimension of 0 or above
    /// [`MAX_DIMENSION`] or a zero segment size; `Corrupt` for damage that is
    /// not a torn tail; `Io` if the filesystem fails (in `ReadOnly` mode,
    /// `NotFound` if `dir` is missing).
    pub fn open_with(
        fs: Arc<dyn Fs>,
        dir: &Path,
        dimension: usize,
        mode: OpenMode,
        options: LocalOptions,
    ) -> Result<(Self, OpenReport), VectorError> {
        if dimension == 0 || dimension > MAX_DIMENSION {
            return Err(VectorError::Invalid(format!(
                "dimension {dimension} is outside 1..={MAX_DIMENSION}"
            )));
        }
        if options.segment_target_bytes == 0 {
            return Err(VectorError::Invalid("segment_target_bytes must be at least 1".into()));
        }
        if mode == OpenMode::ReadWrite {
            fs.create_dir_all_durable(dir)?;
        }
        let checksums = if flaw!(options.flaw, TrustsIndex) {
            format::Checksums::Trust
        } else {
            format::Checksums::Verify
        };
        let recovered = recovery::recover(&*fs, dir, dimension, checksums)?;
        let report = report_of(&recovered);
        let writer = match mode {
            OpenMode::ReadOnly => None,
            OpenMode::ReadWrite => Some(Writer::resume(fs, dir, dimension, options, &recovered)?),
        };
        let store = Self {
            dir: dir.to_path_buf(),
            dimension,
            vectors: recovered.vectors,
            writer,
        };
        Ok((store, report))
    }

    fn writer(&mut self) -> Result<&mut Writer, VectorError> {
        self.writer.as_mut().ok_or_else(|| {
            VectorError::Io(io::Error::new(
                io::ErrorKind::ReadOnlyFilesystem,
                "the vector store was opened read-only",
            ))
        })
    }
}

fn report_of(recovered: &Recovered) -> OpenReport {
    let repair = recovered.repair.as_ref();
    OpenReport {
        segments: recovered.segments,
        records_read: recovered.records_read,
        live_vectors: recovered.vectors.len(),
        dropped_records: repair.map_or(0, |r| r.dropped_records),
        dropped_bytes: repair.map_or(0, |r| r.dropped_bytes),
        truncated: repair.map(|r| r.path.clone()).into_iter().collect(),
        ignored: recovered.ignored.clone(),
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct ActiveSegment {
    file: Box<dyn FileHandle>,
    /// Bytes acknowledged: where the next record goes.
    len: u64,
}

/// The write side of a store opened read-write.
struct Writer {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    header: [u8; HEADER_LEN as usize],
    segment_target_bytes: u64,
    append_sync: AppendSync,
    /// `None` until the first segment is created.
    active: Option<ActiveSegment>,
    next_number: u64,
    /// [`crate::flawed::Flaw::SegmentNameReused`].
    #[cfg(feature = "flawed-variants")]
    reuses_name: bool,
    /// A failed append may have left bytes past `active.len` that could not
    /// be cut off yet.
    tail_unknown: bool,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("active_len", &self.active.as_ref().map(|a| a.len))
            .field("next_number", &self.next_number)
            .field("tail_unknown", &self.tail_unknown)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Takes over the last segment: applies its repair and makes what was
    /// read durable (the names were synced before they were read). A
    /// segment that holds no record is written afresh, as a new one is: its
    /// header may be the one whose sync failed in the process that created
    /// it, and Linux marked those bytes clean without writing them, so no
    /// later sync would make them durable.
    fn resume(
        fs: Arc<dyn Fs>,
        dir: &Path,
        dimension: usize,
        options: LocalOptions,
        recovered: &Recovered,
    ) -> io::Result<Writer> {
        let header = encode_header(u32::try_from(dimension).expect("open caps the dimension"));
        let mut active = None;
        let mut next_number = 1;
        if let Some(last) = &recovered.last {
            let file = fs.open(&last.path, &OpenOptions::read_write())?;
            match &recovered.repair {
                _ if last.valid_len <= HEADER_LEN => {
                    file.set_len(0)?;
                    file.write_all_at(&header, 0)?;
                }
                // KNOWN BAD (Flaw::RepairOneByteShort): cuts the last whole
                // record's final byte too.
                Some(repair) if flaw!(options.flaw, RepairOneByteShort) => file.set_len(repair.keep_len - 1)?,
                Some(repair) => file.set_len(repair.keep_len)?,
                None => {}
            }
            file.sync_all()?;
            active = Some(ActiveSegment {
                file,
                len: last.valid_len,
            });
            next_number = last.number + 1;
        }
        Ok(Writer {
            fs,
            dir: dir.to_path_buf(),
            header,
            segment_target_bytes: options.segment_target_bytes,
            append_sync: options.append_sync,
            active,
            next_number,
            #[cfg(feature = "flawed-variants")]
            reuses_name: options.flaw == Some(crate::flawed::Flaw::SegmentNameReused),
            tail_unknown: false,
        })
    }

    /// Appends one encoded record and syncs it. On failure the segment is cut
    /// back to its acknowledged length, so the record is not applied.
    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        self.settle()?;
        let append_sync = self.append_sync;
        let segment = self.segment_with_room()?;
        let written = segment
            .file
            .write_all_at(record, segment.len)
            .and_then(|()| match append_sync {
                AppendSync::Data => segment.file.sync_data(),
                AppendSync::All => segment.file.sync_all(),
            });
        match written {
            Ok(()) => {
                segment.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.tail_unknown = true;
                // The caller needs the append's error; a failed cut is
                // retried by `settle` before the next write.
                let _ = self.settle();
                Err(e)
            }
        }
    }

    /// Cuts off whatever a failed append may have left, if that is pending.
    fn settle(&mut self) -> io::Result<()> {
        if !self.tail_unknown {
            return Ok(());
        }
        if let Some(segment) = &self.active {
            segment.file.set_len(segment.len)?;
            segment.file.sync_all()?;
        }
        self.tail_unknown = false;
        Ok(())
    }

    /// The active segment, after starting a new one if it is full (or there
    /// is none yet).
    fn segment_with_room(&mut self) -> io::Result<&mut ActiveSegment> {
        let segment = match self.active.take() {
            Some(segment) if segment.len < self.segment_target_bytes => segment,
            _ => self.create_segment()?,
        };
        Ok(self.active.insert(segment))
    }

    /// Creates the next segment durably: header synced, name synced. A
    /// leftover from an earlier failed attempt under the same name (never
    /// acknowledged, never written past its header) is truncated and reused.
    fn create_segment(&mut self) -> io::Result<ActiveSegment> {
        let path = self.dir.join(segment_name(self.next_number));
        let file = self.fs.open(&path, &OpenOptions::create_truncate())?;
        file.write_all_at(&self.header, 0)?;
        file.sync_all()?;
        self.fs.sync_dir(&self.dir)?;
        #[cfg(feature = "flawed-variants")]
        if self.reuses_name {
            // KNOWN BAD (Flaw::SegmentNameReused): the counter stays, so the
            // next segment truncates this one.
            return Ok(ActiveSegment { file, len: HEADER_LEN });
        }
        self.next_number += 1;
        Ok(ActiveSegment { file, len: HEADER_LEN })
    }
}

impl VectorStore for LocalVectorStore {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn upsert(&mut self, id: VectorId, vector: &[f32]) -> Result<(), VectorError> {
        check_vector(self.dimension, vector)?;
        let mut record = Vec::with_capacity(upsert_len(self.dimension));
        encode_upsert(id, vector, &mut record);
        self.writer()?.append(&record)?;
        self.vectors.insert(id, vector.to_vec());
        Ok(())
    }

    fn delete(&mut self, id: VectorId) -> Result<(), VectorError> {
        let present = self.vectors.contains_key(&id);
        let writer = self.writer()?;
        if !present {
            // Nothing to delete, unless a failed upsert of it is still on disk.
            writer.settle()?;
            return Ok(());
        }
        let mut record = Vec::new();
        encode_delete(id, &mut record);
        writer.append(&record)?;
        self.vectors.remove(&id);
        Ok(())
    }

    fn get(&self, id: VectorId) -> Result<Option<Vec<f32>>, VectorError> {
        Ok(self.vectors.get(&id).cloned())
    }

    fn ids(&self) -> Result<Vec<VectorId>, VectorError> {
        Ok(self.vectors.keys().copied().collect())
    }

    fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, VectorError> {
        check_vector(self.dimension, query)?;
        Ok(nearest(
            self.vectors.iter().map(|(id, v)| (*id, v.as_slice())),
            query,
            k,
        ))
    }
}
