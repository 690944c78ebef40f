//! A damaged live generation: how every open finds it before it changes
//! anything, how a writable open rebuilds it from the source files, and how
//! a read-only open refuses it.
//!
//! # Fault model
//!
//! The files a generation is made of are derived from `source/`, and can be
//! damaged at rest, outside any syscall the store makes: bytes of `index.db`
//! overwritten (a bad page, a misdirected write), a zero-length or
//! table-less `index.db`, garbage in the middle of a vector segment (bit
//! rot), `CURRENT` holding garbage or naming a generation that does not
//! exist, a live generation's `CREATED` damaged. What the store must do: never
//! serve an answer read from damaged bytes (a read-only open refuses with
//! [`StoreError::Damaged`], naming the file), and bring itself back from the
//! source files, the truth, without an operator editing files, and without
//! deleting anything before it has something complete to serve.
//!
//! A read that fails (`EIO`) is an error, not damage: the open fails and
//! changes nothing.
//!
//! # What is checked, before anything is removed or changed
//!
//! 1. `CURRENT` parses as a generation name (a missing `CURRENT` is a store
//!    that was never initialised, as before), and names a directory of
//!    `generations/` whose `CREATED` holds a time.
//! 2. Its `index.db` exists, opens, passes SQLite's `PRAGMA integrity_check`
//!    (every page, each checked against its checksum as it is read, every
//!    b-tree and record format, and every index against its table: a page
//!    a misdirected write left stale shows there) and has tables, and every
//!    row the store serves reads back. Its version is left to the schema
//!    plan (an older or newer schema is not damage).
//! 3. Its `vectors/` exists and every record of every segment passes its
//!    CRC (a torn tail is repaired as it always was; damage elsewhere is
//!    corruption, see `crate::vectors::local`).
//!
//! # Repair (a writable open, under the lock)
//!
//! 1. Build generation *n + 1* (one past every generation that exists or
//!    that `CURRENT` names) from the source files, and verify it read back
//!    from disk: the same build and verification as a full rebuild.
//! 2. If the damaged generation's directory exists, write a note
//!    (`DAMAGED`: when, which file, what) into it and rename it
//!    `generations/damaged-gen-NNNNNN` (then fsync `generations/`), before
//!    the switch: a damaged generation must never be taken for a backup.
//! 3. Switch `CURRENT` to the new generation (temp + fsync + rename +
//!    directory fsync).
//!
//! The open then goes on as any writable open: recovery, the journal drain
//! (which brings every name a mutation touched in line with its file, so
//! the generation may be built from sources a mutation left half published:
//! the drain restores them and reindexes), the audit, and last, once all of
//! that succeeded, the cleanup: leftovers go, backups as the retention
//! policy says. So a writable open that fails has removed nothing but the
//! generation it was building (failed-open-changes-nothing).
//!
//! A crash at any step leaves either the damaged generation named by
//! `CURRENT` (repaired again by the next writable open, which builds the
//! new generation again in the same place), or `CURRENT` naming a
//! generation moved aside (damage again: repaired again), or the new
//! generation live. The backups are only touched by the cleanup at the end
//! of a successful open.
//!
//! # Kept damaged generations
//!
//! `generations/damaged-*` directories are neither backups nor leftovers:
//! the cleanup leaves them for inspection until their note is older than
//! the retention policy's `max_age` (7 days by default), then removes them
//! (reported with the removed backups). One without a readable note is
//! kept until an operator removes it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use tearline_sim_fs::{Clock, Fs, FsExt};

use crate::error::{Context, Named, Result, StoreError};
use crate::generation;
use crate::index::{Index, IndexAccess};
use crate::layout::{CREATED_FILE_NAME, Generation, INDEX_FILE_NAME, Layout};
use crate::lock::WipePermission;
use crate::rebuild::RetentionPolicy;
use crate::store::source_names;
use crate::vectors::VectorError;
use crate::vectors::VectorStore;
use crate::vectors::local::{LocalOptions, OpenMode, OpenReport as VectorOpenReport};

/// The prefix of a damaged generation's directory once it is moved aside
/// (`generations/damaged-gen-000002`).
pub(crate) const DAMAGED_PREFIX: &str = "damaged-";

/// The note a damaged generation gets before it is moved aside: the time
/// (ms since the Unix epoch) on its first line, then the damaged file and
/// what was wrong.
pub(crate) const DAMAGED_NOTE: &str = "DAMAGED";

/// What a writable open repaired, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Repair {
    /// The damaged file (or directory) found.
    pub damaged: PathBuf,
    /// What was wrong with it.
    pub detail: String,
    /// Where the damaged generation was moved for inspection, relative to
    /// the root (`generations/damaged-gen-000002`); `None` when there was no
    /// generation to move (`CURRENT` was the damage).
    pub kept_aside: Option<String>,
    /// The generation rebuilt from the source files, now live.
    pub generation: u64,
}

/// Damage found in the live generation.
#[derive(Debug)]
pub(crate) struct Damage {
    /// The damaged file.
    pub(crate) path: PathBuf,
    /// What is wrong with it.
    pub(crate) detail: String,
    /// The generation `CURRENT` names, if it parses.
    pub(crate) named: Option<Generation>,
    /// Whether that generation's directory exists (and is moved aside on repair).
    pub(crate) dir_exists: bool,
}

impl Damage {
    /// The error an open that does not repair returns.
    pub(crate) fn into_error(self) -> StoreError {
        StoreError::Damaged {
            path: self.path,
            detail: self.detail,
        }
    }
}

/// The live generation, checked and open.
pub(crate) struct Live {
    /// Which generation.
    pub(crate) generation: Generation,
    /// Its index.
    pub(crate) index: Index,
    /// Its vector store.
    pub(crate) vectors: Box<dyn VectorStore>,
    /// What opening the vector store repaired (a torn tail).
    pub(crate) vector_report: VectorOpenReport,
}

/// What [`check_live`] found.
pub(crate) enum Checked {
    /// Sound, and open.
    Sound(Box<Live>),
    /// Damaged: nothing was served from it.
    Damaged(Damage),
}

/// SQLite's own failure inside a store error, if that is what it is.
fn sqlite_failure(error: &StoreError) -> Option<&rusqlite::ffi::Error> {
    match error {
        StoreError::Sqlite {
            source: rusqlite::Error::SqliteFailure(failure, _),
            ..
        } => Some(failure),
        _ => None,
    }
}

/// The SQLite error codes that mean the file is not a sound database: not a
/// database, malformed, a page whose checksum does not match
/// (`SQLITE_IOERR_DATA`, from the bridge's page checksums), or a page the
/// device cannot read (`SQLITE_IOERR_CORRUPTFS`: `EIO` on a read, a latent
/// sector error).
pub(crate) fn sqlite_damage(error: &StoreError) -> bool {
    use rusqlite::{ErrorCode, ffi};
    sqlite_failure(error).is_some_and(|failure| {
        matches!(failure.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
            || matches!(
                failure.extended_code,
                ffi::SQLITE_IOERR_DATA | ffi::SQLITE_IOERR_CORRUPTFS
            )
    })
}

/// What SQLite's damage error means, in words a person can act on.
fn sqlite_damage_detail(error: &StoreError) -> String {
    use rusqlite::ffi;
    match sqlite_failure(error).map(|failure| failure.extended_code) {
        Some(ffi::SQLITE_IOERR_DATA) => {
            format!("a page does not match its checksum (bit rot, or a write that landed elsewhere): {error}")
        }
        Some(ffi::SQLITE_IOERR_CORRUPTFS) => format!("the device cannot read a page (a bad sector): {error}"),
        _ => error.to_string(),
    }
}

/// Checks the live generation and opens it (see the module docs), writing
/// nothing but what opening always writes in `writable` mode (SQLite's
/// rollback of a hot journal, the vector store's torn-tail repair). `trust`
/// (the known-bad `Flaw::TrustsIndex`) skips every check but the parse of
/// `CURRENT`. Errors that are not damage (`EIO`, a locked index) are
/// returned as errors.
pub(crate) fn check_live(
    fs: &Arc<dyn Fs>,
    clock: &Arc<dyn Clock>,
    layout: &Layout,
    writable: bool,
    vector_options: LocalOptions,
    trust: bool,
) -> Result<Checked> {
    let current = layout.current_file();
    let bytes = match crate::store::retry_eio(|| fs.read_file(&current)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // No pointer, but generations: a store whose `CURRENT` was
            // removed (by hand, by a cleaning tool), not one never made.
            let generations = fs
                .read_dir_or_empty(&layout.generations_dir())
                .context(|| format!("listing {}", layout.generations_dir().display()))?;
            if generations.is_empty() || trust {
                return Err(StoreError::NotInitialized {
                    root: layout.root().to_path_buf(),
                });
            }
            return Ok(Checked::Damaged(Damage {
                path: current,
                detail: format!(
                    "it is missing, though {} holds {} generation(s)",
                    layout.generations_dir().display(),
                    generations.len()
                ),
                named: None,
                dir_exists: false,
            }));
        }
        Err(e) if crate::store::is_eio(&e) && !trust => {
            return Ok(Checked::Damaged(Damage {
                path: current,
                detail: format!("it cannot be read: {e}"),
                named: None,
                dir_exists: false,
            }));
        }
        Err(e) => return Err(e).context(|| format!("reading {}", current.display())),
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(live) = Generation::parse(&text) else {
        let detail = format!("it holds {text:?}, not a generation name");
        if trust {
            return Err(StoreError::Corrupt {
                what: format!("{} {detail}", current.display()),
            });
        }
        return Ok(Checked::Damaged(Damage {
            path: current,
            detail,
            named: None,
            dir_exists: false,
        }));
    };
    let dir = layout.generation_dir(live);
    let exists = |path: &Path| fs.exists(path).context(|| format!("looking for {}", path.display()));
    let damage = |path: PathBuf, detail: String, dir_exists: bool| {
        Ok(Checked::Damaged(Damage {
            path,
            detail,
            named: Some(live),
            dir_exists,
        }))
    };
    if !trust {
        if !exists(&dir)? {
            return damage(
                current,
                format!("it names {}, which does not exist", live.dir_name()),
                false,
            );
        }
        match generation::mark(fs.as_ref(), &dir)? {
            generation::Mark::Built(_) => {}
            generation::Mark::Absent => {
                return damage(
                    dir.join(CREATED_FILE_NAME),
                    "missing: the generation is not known to be complete".to_string(),
                    true,
                );
            }
            generation::Mark::Damaged => {
                return damage(
                    dir.join(CREATED_FILE_NAME),
                    "unreadable, or not a time: the generation is not known to be complete".to_string(),
                    true,
                );
            }
        }
    }
    let index_path = dir.join(INDEX_FILE_NAME);
    if !trust && !exists(&index_path)? {
        return damage(index_path, "missing".to_string(), true);
    }
    let access = if writable {
        IndexAccess::ReadWrite
    } else {
        IndexAccess::ReadOnly
    };
    let opened = Index::open(Arc::clone(fs), Arc::clone(clock), &index_path, access).and_then(|index| {
        let (_, has_tables) = index.version()?;
        // integrity_check, not quick_check: it also cross-checks every index
        // with its table, which finds a page a misdirected write left stale.
        let check = if trust {
            "ok".to_string()
        } else {
            index.integrity_check()?
        };
        if !trust && has_tables && check == "ok" {
            // A stale page that is a sound page of its own (the page a
            // misdirected write left behind) can pass the check: reading
            // every row the store serves finds more of them.
            index.files()?;
        }
        Ok((index, has_tables, check))
    });
    let index = match opened {
        Ok((_, _, check)) if check != "ok" => {
            return damage(index_path, format!("SQLite's integrity_check: {check}"), true);
        }
        Ok((_, false, _)) if !trust => {
            return damage(
                index_path,
                "it holds no tables (an empty or truncated file)".to_string(),
                true,
            );
        }
        Ok((index, _, _)) => index,
        Err(e) if !trust && sqlite_damage(&e) => return damage(index_path, sqlite_damage_detail(&e), true),
        Err(e) => return Err(e),
    };
    let vectors_dir = layout.vectors_dir(live);
    let files = layout.vector_backend().keeps_files();
    if !trust && files && !exists(&vectors_dir)? {
        return damage(vectors_dir, "missing".to_string(), true);
    }
    match open_vectors(fs, layout, live, writable, vector_options) {
        Ok((vectors, vector_report)) => Ok(Checked::Sound(Box::new(Live {
            generation: live,
            index,
            vectors,
            vector_report,
        }))),
        Err(VectorError::Corrupt { file, offset, reason }) if !trust => {
            damage(file, format!("corrupt at byte {offset}: {reason}"), true)
        }
        // A segment the device cannot read back (a latent sector error).
        Err(VectorError::Io(e)) if !trust && files && crate::store::is_eio(&e) => {
            damage(vectors_dir, format!("a segment cannot be read: {e}"), true)
        }
        Err(source) => Err(StoreError::Vectors {
            context: format!("opening the vector store of {}", live.dir_name()),
            source,
        }),
    }
}

/// Opens a generation's vector store.
pub(crate) fn open_vectors(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    generation: Generation,
    writable: bool,
    options: LocalOptions,
) -> std::result::Result<(Box<dyn VectorStore>, VectorOpenReport), VectorError> {
    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::ReadOnly
    };
    let dimension = crate::embed::HashingEmbedder::DEFAULT_DIMENSION;
    layout
        .vector_backend()
        .open(fs, &layout.generation_dir(generation), dimension, mode, options)
}

/// Rebuilds the live generation from the source files (steps 1 to 3 of the
/// module docs; the open cleans up last). On `Err` the generation it was
/// building is removed (best effort) and nothing else was removed.
pub(crate) fn repair(
    fs: &Arc<dyn Fs>,
    clock: &Arc<dyn Clock>,
    layout: &Layout,
    damage: Damage,
    permission: &WipePermission<'_>,
) -> Result<Repair> {
    let failed = |damage: &Damage, doing: String, cause: StoreError| StoreError::Damaged {
        path: damage.path.clone(),
        detail: format!("{}; {doing} failed: {cause}", damage.detail),
    };
    let docs = source_names(fs.as_ref(), layout)
        .map_err(|cause| failed(&damage, "listing the source files".to_string(), cause))?;
    // The generation after the one `CURRENT` names: a leftover there (an
    // earlier repair or rebuild interrupted before its switch) is
    // replaced, never kept beside the new one where it would pass for a
    // backup whose mark may not even be durable. With no name to go by,
    // one past every generation there is.
    let next = match damage.named {
        Some(named) => named.next(),
        None => generation::existing(fs.as_ref(), layout)
            .map_err(|cause| failed(&damage, "listing the generations".to_string(), cause))?
            .into_iter()
            .max()
            .map_or(Generation(1), |g| g.next()),
    };
    let doing = format!("rebuilding it from the source files as {}", next.dir_name());
    let built = generation::build(fs, clock, layout, next, permission, &docs, &mut |_| {}).and_then(|manifest| {
        crate::rebuild::check_built(
            fs,
            clock,
            layout,
            &layout.generation_dir(next),
            &next.dir_name(),
            &manifest,
        )
    });
    let abandon = |cause: StoreError, doing: &str| {
        let _ = generation::remove(fs.as_ref(), layout, next, permission);
        failed(&damage, doing.to_string(), cause)
    };
    if let Err(cause) = built {
        return Err(abandon(cause, &doing));
    }
    let kept_aside = match (damage.named, damage.dir_exists) {
        (Some(old), true) => match move_aside(fs.as_ref(), clock.as_ref(), layout, old, &damage) {
            Ok(name) => Some(name),
            Err(cause) => return Err(abandon(cause, &format!("moving {} aside", old.dir_name()))),
        },
        _ => None,
    };
    if let Err(cause) = generation::switch_to(fs.as_ref(), layout, next) {
        // If the new pointer got through (its directory fsync failed), the
        // new generation may be live: keep it.
        if crate::store::read_current(fs.as_ref(), layout).ok().flatten() != Some(next) {
            return Err(abandon(cause, &format!("switching CURRENT to {}", next.dir_name())));
        }
        return Err(failed(
            &damage,
            format!("switching CURRENT to {}", next.dir_name()),
            cause,
        ));
    }
    Ok(Repair {
        damaged: damage.path,
        detail: damage.detail,
        kept_aside,
        generation: next.0,
    })
}

/// Writes the note into the damaged generation `old` and renames it aside
/// (durably); returns where it went, relative to the root.
fn move_aside(fs: &dyn Fs, clock: &dyn Clock, layout: &Layout, old: Generation, damage: &Damage) -> Result<String> {
    let dir = layout.generation_dir(old);
    let now_ms = clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let note = dir.join(DAMAGED_NOTE);
    let text = format!("{now_ms}\n{}: {}\n", damage.path.display(), damage.detail);
    fs.write_file_atomic(&note, text.as_bytes())
        .context(|| format!("writing {}", note.display()))?;
    let generations = layout.generations_dir();
    let base = format!("{DAMAGED_PREFIX}{}", old.dir_name());
    let mut name = base.clone();
    let mut n = 1;
    while fs
        .exists(&generations.join(&name))
        .context(|| format!("looking for {}", generations.join(&name).display()))?
    {
        n += 1;
        name = format!("{base}-{n}");
    }
    let target = generations.join(&name);
    fs.rename(&dir, &target)
        .context(|| format!("moving {} aside to {}", dir.display(), target.display()))?;
    fs.sync_dir_named(&generations).named()?;
    Ok(format!("generations/{name}"))
}

/// Whether the kept damaged generation in `dir` is past `retention`'s
/// `max_age` (by its note; `false` if it has no readable note).
pub(crate) fn damaged_expired(fs: &dyn Fs, dir: &Path, now: Duration, retention: &RetentionPolicy) -> Result<bool> {
    let note = dir.join(DAMAGED_NOTE);
    let bytes = match fs.read_file(&note) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).context(|| format!("reading {}", note.display())),
    };
    let noted = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.lines().next())
        .and_then(|first| first.parse::<u64>().ok())
        .map(Duration::from_millis);
    Ok(noted.is_some_and(|noted| now.saturating_sub(noted) > retention.max_age))
}
