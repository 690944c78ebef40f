//! Generations: a complete index and vector store built beside the live one,
//! the one atomic step that makes it live, and the removal of the others.
//!
//! A generation is built in its own directory, made durable (the files by
//! SQLite's and the vector store's syncs, the directories by explicit
//! fsyncs), marked complete by its `CREATED` file (written last, atomically),
//! and only then named by `CURRENT`, which is replaced by temp file + fsync +
//! rename + directory fsync. A crash at any point leaves `CURRENT` naming a
//! complete generation.
//!
//! The other generations are of two kinds (see [`clean_up`]):
//! - **leftovers**, removed by every writable open: generations newer than
//!   the live one (an interrupted rebuild), older ones without a valid
//!   `CREATED` (an interrupted removal: `CREATED` is removed, durably, before
//!   anything else), and anything in `generations/` that is not a
//!   generation;
//! - **backups**, older complete generations, kept or removed by the
//!   [`RetentionPolicy`];
//! - **damaged** generations moved aside by a repair
//!   (`damaged-gen-NNNNNN`, see `crate::repair`), kept for inspection until
//!   their note is older than the policy's `max_age`.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tearline_sim_fs::{Clock, FileHandleExt, FileKind, Fs, FsExt, OpenOptions};

use crate::embed::{Embedder, HashingEmbedder};
use crate::error::{Context, Named, Result, StoreError};
use crate::index::{Index, IndexAccess, IndexedDocument};
use crate::layout::{CREATED_FILE_NAME, DocName, Generation, INDEX_FILE_NAME, Layout};
use crate::lock::WipePermission;
use crate::rebuild::{RebuildProgress, RetentionPolicy};
use crate::repair;
use crate::store::{content_hash, prepare};
use crate::vectors::local::OpenMode;

/// Documents written to the index per SQLite transaction while building.
const BUILD_BATCH: usize = 256;

/// What a build indexed: each document's name and content hash (SHA-256, hex).
pub(crate) type Manifest = BTreeMap<String, String>;

/// Reads a source file and makes its content durable (the index must not
/// describe bytes a power cut could still take back). `None` if it is gone.
fn read_durable(fs: &dyn Fs, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match fs.open(path, &OpenOptions::read_only()) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = usize::try_from(file.len()?).map_err(|_| tearline_sim_fs::errno::efbig())?;
    let mut content = vec![0u8; len];
    let read = file.read_exact_at_most(&mut content, 0)?;
    content.truncate(read);
    file.sync_all()?;
    Ok(Some(content))
}

/// Builds `generation` from the source files `docs` (any earlier directory
/// of that generation is removed first) and makes it durable. Does not make
/// it live.
pub(crate) fn build(
    fs: &Arc<dyn Fs>,
    clock: &Arc<dyn Clock>,
    layout: &Layout,
    generation: Generation,
    permission: &WipePermission<'_>,
    docs: &[DocName],
    progress: &mut dyn FnMut(&RebuildProgress),
) -> Result<Manifest> {
    build_at(
        fs,
        clock,
        layout,
        &layout.generation_dir(generation),
        permission,
        docs,
        progress,
    )
}

/// Builds a generation in `dir` (a directory of `generations/`): see [`build`].
pub(crate) fn build_at(
    fs: &Arc<dyn Fs>,
    clock: &Arc<dyn Clock>,
    layout: &Layout,
    dir: &Path,
    permission: &WipePermission<'_>,
    docs: &[DocName],
    progress: &mut dyn FnMut(&RebuildProgress),
) -> Result<Manifest> {
    if fs.exists(dir).context(|| format!("looking for {}", dir.display()))? {
        permission
            .remove_tree(fs.as_ref(), dir)
            .context(|| format!("removing the leftover {}", dir.display()))?;
    }
    // Vectors kept elsewhere may have outlived their directory (a build
    // that crashed before the directory was made durable): a new
    // generation starts with none.
    remove_vectors(layout, dir)?;
    fs.create_dir_all_durable(dir)
        .context(|| format!("creating {}", dir.display()))?;
    if !docs.is_empty() {
        // The names listed must survive a power cut as long as the index does.
        fs.as_ref().sync_dir_named(&layout.source_dir()).named()?;
    }
    let embedder = HashingEmbedder::default();
    let mut manifest = Manifest::new();
    {
        let mut index = Index::open(
            Arc::clone(fs),
            Arc::clone(clock),
            &dir.join(INDEX_FILE_NAME),
            IndexAccess::ReadWrite,
        )?;
        index.create_schema()?;
        let (mut vectors, _) = layout
            .vector_backend()
            .open(
                fs,
                dir,
                embedder.dimension(),
                OpenMode::ReadWrite,
                layout.vector_options(),
            )
            .context(|| format!("creating the vector store of {}", dir.display()))?;
        let mut batch: Vec<IndexedDocument> = Vec::new();
        for (position, name) in docs.iter().enumerate() {
            let path = layout.source_file(name);
            // A file removed since the listing is simply not indexed, and
            // neither is one the device cannot give back (its sector gone).
            let content = match crate::store::retry_eio(|| read_durable(fs.as_ref(), &path)) {
                Err(e) if crate::store::is_eio(&e) => None,
                result => result.context(|| format!("reading {}", path.display()))?,
            };
            if let Some(content) = content {
                let vector_id = position as u64 + 1;
                let (doc, vector) = prepare(
                    fs.as_ref(),
                    clock.as_ref(),
                    layout,
                    &embedder,
                    name,
                    &content,
                    vector_id,
                )?;
                vectors
                    .upsert(vector_id, &vector)
                    .context(|| format!("storing the vector of {name}"))?;
                manifest.insert(name.as_str().to_string(), content_hash(&content));
                batch.push(doc);
                if batch.len() >= BUILD_BATCH {
                    index.put_batch(&batch)?;
                    batch.clear();
                }
            }
            progress(&RebuildProgress {
                done: position + 1,
                total: docs.len(),
                name: name.as_str().to_string(),
            });
        }
        index.put_batch(&batch)?;
    }
    fs.as_ref().sync_dir_named(dir).named()?;
    // Last: the mark that the generation is complete.
    let created_ms = clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let created = dir.join(CREATED_FILE_NAME);
    fs.write_file_atomic(&created, format!("{created_ms}\n").as_bytes())
        .context(|| format!("writing {}", created.display()))?;
    fs.as_ref().sync_dir_named(&layout.generations_dir()).named()?;
    Ok(manifest)
}

/// What a generation's `CREATED` mark says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// No mark: the generation was never finished, or its removal was
    /// interrupted (`CREATED` goes first): a leftover.
    Absent,
    /// Built at this time (since the Unix epoch): complete.
    Built(Duration),
    /// A mark that does not hold a time, or that the device cannot read
    /// back. `CREATED` is written atomically, so this is damage, not an
    /// unfinished build: the generation may well be complete, and it is
    /// never removed for it.
    Damaged,
}

/// Reads the `CREATED` mark of the generation in `dir` (an `EIO` is tried
/// once more).
pub(crate) fn mark(fs: &dyn Fs, dir: &Path) -> Result<Mark> {
    let path = dir.join(CREATED_FILE_NAME);
    let bytes = match crate::store::retry_eio(|| fs.read_file(&path)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Mark::Absent),
        Err(e) if crate::store::is_eio(&e) => return Ok(Mark::Damaged),
        Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
    };
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.strip_suffix('\n'))
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .map_or(Mark::Damaged, |ms| Mark::Built(Duration::from_millis(ms))))
}

/// Makes `generation` live: one atomic replacement of `CURRENT`.
pub(crate) fn switch_to(fs: &dyn Fs, layout: &Layout, generation: Generation) -> Result<()> {
    let path = layout.current_file();
    fs.write_file_atomic(&path, format!("{}\n", generation.dir_name()).as_bytes())
        .context(|| format!("writing {}", path.display()))
}

/// The generations in `generations/`, ascending (other entries left out).
pub(crate) fn existing(fs: &dyn Fs, layout: &Layout) -> Result<Vec<Generation>> {
    let dir = layout.generations_dir();
    let entries = fs.read_dir(&dir).context(|| format!("listing {}", dir.display()))?;
    let mut generations: Vec<Generation> = entries
        .into_iter()
        .filter(|e| e.kind == FileKind::Dir)
        .filter_map(|e| Generation::parse(&e.name))
        .collect();
    generations.sort();
    Ok(generations)
}

/// Removes the vectors of the generation in `dir` where they are kept
/// elsewhere than in it (nothing for [`crate::vectors::LocalVectors`]).
fn remove_vectors(layout: &Layout, dir: &Path) -> Result<()> {
    layout
        .vector_backend()
        .remove(dir)
        .map_err(|source| StoreError::Vectors {
            context: format!("removing the vectors of {}", dir.display()),
            source,
        })
}

/// Removes one generation's directory so that a crash half-way leaves it
/// recognisably incomplete: `CREATED` goes first, durably.
fn remove_dir(fs: &dyn Fs, layout: &Layout, dir: &Path, permission: &WipePermission<'_>) -> Result<()> {
    let created = dir.join(CREATED_FILE_NAME);
    match fs.remove_file(&created) {
        Ok(()) => fs.sync_dir_named(dir).named()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context(|| format!("removing {}", created.display())),
    }
    remove_vectors(layout, dir)?;
    permission
        .remove_tree(fs, dir)
        .context(|| format!("removing {}", dir.display()))
}

/// Removes `generation` (a failed build), durably. Absent is fine.
pub(crate) fn remove(
    fs: &dyn Fs,
    layout: &Layout,
    generation: Generation,
    permission: &WipePermission<'_>,
) -> Result<()> {
    remove_path(fs, layout, &layout.generation_dir(generation), permission)
}

/// Removes a directory of `generations/` (absent is fine), then makes its
/// removal durable.
pub(crate) fn remove_path(fs: &dyn Fs, layout: &Layout, dir: &Path, permission: &WipePermission<'_>) -> Result<()> {
    if !fs.exists(dir).context(|| format!("looking for {}", dir.display()))? {
        return Ok(());
    }
    remove_dir(fs, layout, dir, permission)?;
    fs.sync_dir_named(&layout.generations_dir()).named()
}

/// What [`clean_up`] removed, by directory name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Leftovers of interrupted rebuilds and removals.
    pub(crate) leftovers: Vec<String>,
    /// Backups the retention policy no longer keeps.
    pub(crate) backups: Vec<String>,
}

/// Removes every leftover (see the module docs), the backups `retention`
/// does not keep (beyond the newest `keep_backups`, or built more than
/// `max_age` before `clock`'s now), and the damaged generations kept aside
/// longer than `max_age`. Never touches `live`.
pub(crate) fn clean_up(
    fs: &dyn Fs,
    clock: &dyn Clock,
    layout: &Layout,
    live: Generation,
    retention: &RetentionPolicy,
    permission: &WipePermission<'_>,
) -> Result<Removed> {
    let dir = layout.generations_dir();
    let entries = fs.read_dir(&dir).context(|| format!("listing {}", dir.display()))?;
    let now = clock.now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut removed = Removed::default();
    let mut backups: Vec<(Generation, Duration)> = Vec::new();
    for entry in entries {
        let path = dir.join(&entry.name);
        if entry.kind == FileKind::Dir && entry.name.starts_with(repair::DAMAGED_PREFIX) {
            // Kept for inspection until the retention policy's max_age.
            if repair::damaged_expired(fs, &path, now, retention)? {
                permission
                    .remove_tree(fs, &path)
                    .context(|| format!("removing {}", path.display()))?;
                removed.backups.push(entry.name);
            }
            continue;
        }
        let generation = Generation::parse(&entry.name).filter(|_| entry.kind == FileKind::Dir);
        match generation {
            Some(generation) if generation == live => continue,
            Some(generation) if generation < live => match mark(fs, &path)? {
                Mark::Built(created) => {
                    backups.push((generation, created));
                    continue;
                }
                Mark::Absent => remove_dir(fs, layout, &path, permission)?,
                // A damaged mark says nothing of the rest: keep it.
                Mark::Damaged => continue,
            },
            Some(_) => remove_dir(fs, layout, &path, permission)?,
            None => match entry.kind {
                FileKind::Dir => remove_dir(fs, layout, &path, permission)?,
                FileKind::File | FileKind::Other => fs
                    .remove_file(&path)
                    .context(|| format!("removing {}", path.display()))?,
            },
        }
        removed.leftovers.push(entry.name);
    }
    backups.sort_by_key(|(generation, _)| std::cmp::Reverse(*generation));
    for (rank, (generation, created)) in backups.into_iter().enumerate() {
        let age = now.saturating_sub(created);
        // The newest backup is never removed for its age alone: a clock
        // stepped forward (or a machine off for a week) must not leave a
        // store without one.
        if rank < retention.keep_backups && (age <= retention.max_age || rank == 0) {
            continue;
        }
        remove_dir(fs, layout, &layout.generation_dir(generation), permission)?;
        removed.backups.push(generation.dir_name());
    }
    if !removed.leftovers.is_empty() || !removed.backups.is_empty() {
        fs.sync_dir_named(&dir).named()?;
    }
    // A switch interrupted between writing the new pointer and renaming it
    // over `CURRENT` leaves its temporary file beside it.
    let pointer_tmp = layout.current_tmp_file();
    if fs
        .exists(&pointer_tmp)
        .context(|| format!("looking for {}", pointer_tmp.display()))?
    {
        fs.remove_file(&pointer_tmp)
            .context(|| format!("removing {}", pointer_tmp.display()))?;
        fs.sync_dir_named(layout.root()).named()?;
        removed.leftovers.push(".CURRENT.tmp".to_string());
    }
    // Vectors kept elsewhere than in the generations' directories, of a
    // generation whose directory is gone (moved aside as damaged): best
    // effort, last, so that a vector server out of reach fails no open
    // (the next open sweeps them).
    let present: Vec<String> = fs
        .read_dir(&dir)
        .context(|| format!("listing {}", dir.display()))?
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    if let Ok(unused) = layout.vector_backend().remove_unused(&present) {
        removed.leftovers.extend(unused);
    }
    Ok(removed)
}
