//! The SQLite index of one generation: files, chunks, summaries with their
//! vector ids, and the dual-write intents.
//!
//! SQLite runs on the store's [`Fs`] through the VFS bridge, in rollback-journal
//! mode with `synchronous=EXTRA`: Tearline's SQLite matrix shows that `FULL`
//! can lose the last acknowledged commit (the journal's unlink is never made
//! durable), and `EXTRA` survives every power cut.
//!
//! Every page carries a checksum of its content and page number (the
//! bridge's page checksums, reserved when the schema is created), so a page
//! that rots or a write that lands on the wrong page is an error, which a
//! writable open answers by rebuilding from the source files.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tearline_sim_fs::{Clock, Fs, SqliteVfs, VfsOptions, reserve_page_checksum_bytes};

use crate::error::{Context, Result};
use crate::schema;
use crate::vectors::VectorId;

/// How an index is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexAccess {
    /// Read and write; create the file if missing.
    ReadWrite,
    /// Read only: nothing on disk is changed.
    ReadOnly,
}

/// What the index knows about one source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub hash: String,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// What an intent was recorded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntentOp {
    /// A document is being added or replaced: its vector is `vector_id`, and
    /// its source will have content hash `hash`.
    Add,
    /// A document is being removed; its vector is `vector_id`.
    Remove,
    /// The vector `vector_id` is no longer referenced and must be deleted.
    Drop,
}

impl IntentOp {
    fn as_str(&self) -> &'static str {
        match self {
            IntentOp::Add => "add",
            IntentOp::Remove => "remove",
            IntentOp::Drop => "drop",
        }
    }

    fn parse(text: &str) -> Option<IntentOp> {
        match text {
            "add" => Some(IntentOp::Add),
            "remove" => Some(IntentOp::Remove),
            "drop" => Some(IntentOp::Drop),
            _ => None,
        }
    }
}

/// A pending dual-write step, committed before the vector store is touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Intent {
    pub(crate) id: i64,
    pub(crate) op: IntentOp,
    pub(crate) path: String,
    pub(crate) hash: String,
    pub(crate) vector_id: VectorId,
}

/// Everything the index holds for one document, ready to be written.
#[derive(Clone, Debug)]
pub(crate) struct IndexedDocument {
    pub(crate) path: String,
    pub(crate) row: FileRow,
    pub(crate) chunks: Vec<String>,
    pub(crate) summary: String,
    pub(crate) vector_id: VectorId,
    pub(crate) indexed_at_ms: i64,
}

/// One generation's SQLite index.
#[derive(Debug)]
pub(crate) struct Index {
    // Declared before the VFS so the connection closes first.
    conn: Connection,
    _vfs: SqliteVfs,
}

fn vector_id(value: i64) -> VectorId {
    VectorId::try_from(value).unwrap_or(0)
}

fn sql_id(id: VectorId) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl Index {
    /// Opens the index at `path`. Sets no PRAGMA that writes: the version can
    /// be checked before anything on disk changes.
    pub(crate) fn open(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, path: &Path, access: IndexAccess) -> Result<Index> {
        // Page checksums: a page that rots or lands in the wrong place reads
        // as an error (and fails the integrity check), never as data.
        let options = VfsOptions {
            page_checksums: true,
            ..VfsOptions::default()
        };
        let vfs = SqliteVfs::register(fs, clock, options)
            .context(|| format!("registering the SQLite VFS for {}", path.display()))?;
        let flags = match access {
            IndexAccess::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            IndexAccess::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        };
        let conn = vfs
            .open(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .context(|| format!("opening the index {}", path.display()))?;
        // Connection-level settings only: neither writes to the file.
        conn.execute_batch("PRAGMA synchronous=EXTRA; PRAGMA busy_timeout=5000;")
            .context(|| format!("configuring the index {}", path.display()))?;
        // Room for every statement the store runs (about 25): a cache
        // smaller than that evicts them in turn, and each is parsed again.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Index { conn, _vfs: vfs })
    }

    /// `PRAGMA user_version`, and whether any table exists.
    pub(crate) fn version(&self) -> Result<(u32, bool)> {
        let version: u32 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .context(|| "reading the index's schema version".to_string())?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| {
                r.get(0)
            })
            .context(|| "reading the index's tables".to_string())?;
        Ok((version, tables > 0))
    }

    /// Creates the schema on a fresh index, with room reserved in every page
    /// for its checksum.
    pub(crate) fn create_schema(&mut self) -> Result<()> {
        reserve_page_checksum_bytes(&self.conn).context(|| "reserving room for page checksums".to_string())?;
        schema::create(&mut self.conn).context(|| "creating the index schema".to_string())
    }

    /// Applies in-place migration steps.
    pub(crate) fn migrate(&mut self, steps: &[schema::Migration]) -> Result<()> {
        schema::migrate(&mut self.conn, steps).context(|| "migrating the index schema in place".to_string())
    }

    /// KNOWN BAD: see [`schema::migrate_stamp_first`].
    #[cfg(feature = "flawed-variants")]
    pub(crate) fn migrate_stamp_first(&mut self, steps: &[schema::Migration]) -> Result<()> {
        schema::migrate_stamp_first(&mut self.conn, steps)
            .context(|| "migrating the index schema in place (stamp first)".to_string())
    }

    /// The columns of the `files` table, in order (none if it does not exist).
    #[cfg(feature = "tearline-contract")]
    pub(crate) fn files_columns(&self) -> Result<Vec<String>> {
        let context = || "reading the columns of the files table".to_string();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM pragma_table_info('files')")
            .context(context)?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context(context)
    }

    /// Whether the stored schema really is the one its version stamp claims
    /// (see [`schema::stamp_matches`]). Only the contract adapter observes it.
    #[cfg(feature = "tearline-contract")]
    pub(crate) fn schema_matches_stamp(&self) -> Result<bool> {
        let (version, _) = self.version()?;
        Ok(schema::stamp_matches(version, &self.files_columns()?))
    }

    /// KNOWN BAD (origins/5, [`crate::flawed::Flaw::WipeWithoutLock`]):
    /// deletes the index file at `path` (and its rollback journal) and
    /// creates a fresh one, whoever holds the lock.
    #[cfg(feature = "flawed-variants")]
    pub(crate) fn wipe_and_create(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, path: &Path) -> Result<Index> {
        let journal = path.with_file_name(format!(
            "{}-journal",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        ));
        for file in [path, journal.as_path()] {
            match fs.remove_file(file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(|| format!("wiping {}", file.display())),
            }
        }
        let mut index = Index::open(fs, clock, path, IndexAccess::ReadWrite)?;
        index.create_schema()?;
        Ok(index)
    }

    /// KNOWN BAD (origins/5, [`crate::flawed::Flaw::TruncateWithoutLock`]):
    /// truncates the index file at `path` to nothing (`O_TRUNC`) and
    /// recreates its tables, whoever holds the lock.
    #[cfg(feature = "flawed-variants")]
    pub(crate) fn truncate_and_create(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, path: &Path) -> Result<Index> {
        let options = tearline_sim_fs::OpenOptions {
            write: true,
            truncate: true,
            ..tearline_sim_fs::OpenOptions::read_only()
        };
        drop(
            fs.open(path, &options)
                .context(|| format!("truncating {}", path.display()))?,
        );
        let mut index = Index::open(fs, clock, path, IndexAccess::ReadWrite)?;
        index.create_schema()?;
        Ok(index)
    }

    /// KNOWN BAD (origins/1, [`crate::flawed::Flaw::DropAndReindex`]): deletes
    /// every document's rows in one transaction (the "drop tables" of the
    /// review; the schema stays). Returns the vectors they referred to.
    #[cfg(feature = "flawed-variants")]
    pub(crate) fn drop_all_documents(&mut self) -> Result<Vec<VectorId>> {
        let context = || "dropping every document from the index".to_string();
        let vectors = self.summary_vectors()?.into_iter().map(|(_, id)| id).collect();
        let tx = self.conn.transaction().context(context)?;
        for table in ["files", "chunks", "summaries"] {
            execute_cached(&tx, &format!("DELETE FROM {table}"), []).context(context)?;
        }
        tx.commit().context(context)?;
        Ok(vectors)
    }

    /// KNOWN BAD (origins/2, [`crate::flawed::Flaw::NoIntents`]): takes the
    /// next vector id without recording any intent for it.
    #[cfg(feature = "flawed-variants")]
    pub(crate) fn take_vector_id(&mut self) -> Result<VectorId> {
        let context = || "allocating a vector id".to_string();
        let tx = self.conn.transaction().context(context)?;
        let next = allocate_vector_id(&tx).context(context)?;
        tx.commit().context(context)?;
        Ok(next)
    }

    /// `PRAGMA integrity_check`, all its lines joined.
    pub(crate) fn integrity_check(&self) -> Result<String> {
        let mut stmt = self
            .conn
            .prepare_cached("PRAGMA integrity_check")
            .context(|| "checking the index".to_string())?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context(|| "checking the index".to_string())?;
        Ok(lines.join("; "))
    }

    /// Every indexed file, by path.
    pub(crate) fn files(&self) -> Result<Vec<(String, FileRow)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT path, size, hash, mtime_ns FROM files ORDER BY path")
            .context(|| "listing indexed files".to_string())?;
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                FileRow {
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    hash: r.get(2)?,
                    mtime_ns: r.get(3)?,
                },
            ))
        })
        .and_then(|rows| rows.collect())
        .context(|| "listing indexed files".to_string())
    }

    /// A document's summary and vector id.
    pub(crate) fn summary(&self, path: &str) -> Result<Option<(String, VectorId)>> {
        query_row_cached(
            &self.conn,
            "SELECT summary, vector_id FROM summaries WHERE path = ?1",
            [path],
            |r| Ok((r.get(0)?, vector_id(r.get(1)?))),
        )
        .optional()
        .context(|| format!("reading the summary of {path}"))
    }

    /// The document a vector belongs to, with its summary.
    pub(crate) fn summary_of_vector(&self, id: VectorId) -> Result<Option<(String, String)>> {
        query_row_cached(
            &self.conn,
            "SELECT path, summary FROM summaries WHERE vector_id = ?1",
            [sql_id(id)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .context(|| format!("looking up vector {id}"))
    }

    /// Every (path, vector id) of the summaries, by path.
    pub(crate) fn summary_vectors(&self) -> Result<Vec<(String, VectorId)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT path, vector_id FROM summaries ORDER BY path")
            .context(|| "listing summaries".to_string())?;
        stmt.query_map([], |r| Ok((r.get(0)?, vector_id(r.get(1)?))))
            .and_then(|rows| rows.collect())
            .context(|| "listing summaries".to_string())
    }

    /// Every vector id an intent still refers to.
    pub(crate) fn intent_vectors(&self) -> Result<BTreeSet<VectorId>> {
        Ok(self.intents()?.into_iter().map(|i| i.vector_id).collect())
    }

    /// The pending intents, oldest first.
    pub(crate) fn intents(&self) -> Result<Vec<Intent>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, op, path, hash, vector_id FROM intents ORDER BY id")
            .context(|| "listing intents".to_string())?;
        let rows: Vec<(i64, String, String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(|rows| rows.collect())
            .context(|| "listing intents".to_string())?;
        rows.into_iter()
            .map(|(id, op, path, hash, vid)| {
                let op = IntentOp::parse(&op).ok_or_else(|| crate::error::StoreError::Corrupt {
                    what: format!("intent {id} has an unknown operation {op:?}"),
                })?;
                Ok(Intent {
                    id,
                    op,
                    path,
                    hash,
                    vector_id: vector_id(vid),
                })
            })
            .collect()
    }

    /// Commits an intent; for an `Add`, allocates its new vector id in the
    /// same transaction. Returns the intent.
    pub(crate) fn begin(&mut self, op: IntentOp, path: &str, hash: &str, vector: Option<VectorId>) -> Result<Intent> {
        let context = || format!("recording the {} intent for {path}", op.as_str());
        let tx = self.conn.transaction().context(context)?;
        let vector_id = match vector {
            Some(id) => id,
            None => allocate_vector_id(&tx).context(context)?,
        };
        execute_cached(
            &tx,
            "INSERT INTO intents(op, path, hash, vector_id) VALUES (?1, ?2, ?3, ?4)",
            params![op.as_str(), path, hash, sql_id(vector_id)],
        )
        .context(context)?;
        let id = tx.last_insert_rowid();
        tx.commit().context(context)?;
        Ok(Intent {
            id,
            op,
            path: path.to_string(),
            hash: hash.to_string(),
            vector_id,
        })
    }

    /// In one transaction: writes the document's rows (replacing any), clears
    /// `intent`, and if the document had another vector, records a `Drop`
    /// intent for it. Returns that intent.
    pub(crate) fn link(&mut self, intent: &Intent, doc: &IndexedDocument) -> Result<Option<Intent>> {
        self.link_rows(intent, doc, true)
    }

    /// [`Index::link`] without clearing `intent`: the rows point at a vector
    /// the intent still owes (the vector store is down). Whether a `Drop`
    /// intent was recorded for an older vector.
    pub(crate) fn link_keeping_intent(&mut self, intent: &Intent, doc: &IndexedDocument) -> Result<bool> {
        self.link_rows(intent, doc, false).map(|dropped| dropped.is_some())
    }

    fn link_rows(&mut self, intent: &Intent, doc: &IndexedDocument, clear_intent: bool) -> Result<Option<Intent>> {
        let context = || format!("linking {} to vector {}", doc.path, doc.vector_id);
        let tx = self.conn.transaction().context(context)?;
        let old: Option<i64> = query_row_cached(
            &tx,
            "SELECT vector_id FROM summaries WHERE path = ?1",
            [&doc.path],
            |r| r.get(0),
        )
        .optional()
        .context(context)?;
        write_rows(&tx, doc).context(context)?;
        if clear_intent {
            execute_cached(&tx, "DELETE FROM intents WHERE id = ?1", [intent.id]).context(context)?;
        }
        let dropped = match old.map(vector_id) {
            Some(old) if old != doc.vector_id => {
                execute_cached(
                    &tx,
                    "INSERT INTO intents(op, path, hash, vector_id) VALUES ('drop', ?1, '', ?2)",
                    params![doc.path, sql_id(old)],
                )
                .context(context)?;
                Some(Intent {
                    id: tx.last_insert_rowid(),
                    op: IntentOp::Drop,
                    path: doc.path.clone(),
                    hash: String::new(),
                    vector_id: old,
                })
            }
            _ => None,
        };
        tx.commit().context(context)?;
        Ok(dropped)
    }

    /// Writes documents' rows without any intent, all in one transaction
    /// (building a generation that is not live yet: one commit, and so one
    /// round of syncs, per batch instead of per document).
    pub(crate) fn put_batch(&mut self, docs: &[IndexedDocument]) -> Result<()> {
        let (Some(first), Some(last)) = (docs.first(), docs.last()) else {
            return Ok(());
        };
        let context = || format!("indexing {} to {}", first.path, last.path);
        let tx = self.conn.transaction().context(context)?;
        for doc in docs {
            write_rows(&tx, doc).context(|| format!("indexing {}", doc.path))?;
            execute_cached(
                &tx,
                "UPDATE meta SET value = max(value, ?1 + 1) WHERE key = 'next_vector_id'",
                [sql_id(doc.vector_id)],
            )
            .context(|| format!("indexing {}", doc.path))?;
        }
        tx.commit().context(context)
    }

    /// In one transaction: removes a document's rows and, if given, an intent.
    pub(crate) fn unlink(&mut self, path: &str, intent: Option<&Intent>) -> Result<()> {
        let context = || format!("removing {path} from the index");
        let tx = self.conn.transaction().context(context)?;
        for table in ["files", "chunks", "summaries"] {
            execute_cached(&tx, &format!("DELETE FROM {table} WHERE path = ?1"), [path]).context(context)?;
        }
        if let Some(intent) = intent {
            execute_cached(&tx, "DELETE FROM intents WHERE id = ?1", [intent.id]).context(context)?;
        }
        tx.commit().context(context)
    }

    /// Deletes an intent.
    pub(crate) fn clear(&mut self, intent: &Intent) -> Result<()> {
        execute_cached(&self.conn, "DELETE FROM intents WHERE id = ?1", [intent.id])
            .map(drop)
            .context(|| format!("clearing intent {}", intent.id))
    }

    /// A document's chunks, in order.
    pub(crate) fn chunks(&self, path: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM chunks WHERE path = ?1 ORDER BY ord")
            .context(|| format!("reading the chunks of {path}"))?;
        stmt.query_map([path], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context(|| format!("reading the chunks of {path}"))
    }

    /// The number of chunks of a document.
    pub(crate) fn chunk_count(&self, path: &str) -> Result<u64> {
        query_row_cached(&self.conn, "SELECT count(*) FROM chunks WHERE path = ?1", [path], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n.max(0) as u64)
        .context(|| format!("counting the chunks of {path}"))
    }
}

/// Takes the next vector id from `meta`, in `tx`.
fn allocate_vector_id(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<VectorId> {
    let next: i64 = query_row_cached(tx, "SELECT value FROM meta WHERE key = 'next_vector_id'", [], |r| {
        r.get(0)
    })?;
    execute_cached(tx, "UPDATE meta SET value = value + 1 WHERE key = 'next_vector_id'", [])?;
    Ok(vector_id(next))
}

fn write_rows(tx: &rusqlite::Transaction<'_>, doc: &IndexedDocument) -> rusqlite::Result<()> {
    execute_cached(
        tx,
        "INSERT OR REPLACE INTO files(path, size, hash, mtime_ns, indexed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            doc.path,
            i64::try_from(doc.row.size).unwrap_or(i64::MAX),
            doc.row.hash,
            doc.row.mtime_ns,
            doc.indexed_at_ms
        ],
    )?;
    execute_cached(tx, "DELETE FROM chunks WHERE path = ?1", [&doc.path])?;
    for (ord, body) in doc.chunks.iter().enumerate() {
        execute_cached(
            tx,
            "INSERT INTO chunks(path, ord, body) VALUES (?1, ?2, ?3)",
            params![doc.path, ord as i64, body],
        )?;
    }
    execute_cached(
        tx,
        "INSERT OR REPLACE INTO summaries(path, summary, vector_id) VALUES (?1, ?2, ?3)",
        params![doc.path, doc.summary, sql_id(doc.vector_id)],
    )?;
    Ok(())
}

/// `Connection::execute` through the connection's statement cache: the store
/// runs the same few statements on every open, every document and every
/// chunk, and parsing them again each time was a fifth of its CPU time.
fn execute_cached(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `Connection::query_row` through the statement cache ([`execute_cached`]).
fn query_row_cached<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, row)
}
