"""A store built LITERALLY to the designs of the origin documents
(/work/shared/origins/*.md, "origins/N" below), flaws included, so that
`tearline certify` can show what each flaw costs. Do not copy this store;
copy corrected_store.py.

What it does, and where each step comes from:

- Source files under source/ are the truth and the index can be rebuilt
  from them (origins/3, Context: "the database is a rebuildable index, and
  the filesystem is the source of truth").
- `add` publishes the source file by staging and renaming it, then writes
  the index row and the vector in one SQLite transaction, where a failed
  vector write is logged and ignored (origins/2, "Current Implementation
  Pattern" and the quoted comment "ChromaDB failed but SQLite record was
  created - this is acceptable").
- A full rebuild is either the drop-and-reindex of origins/1's "Failure
  Scenario" (ORIGINS_REBUILD=drop), or, by default, origins/1's recommended
  "Solution 1: Shadow Rebuild with Atomic Swap", whose
  `_atomic_swap_databases` is two renames and no fsync.
- SQLite runs with its defaults (journal_mode=DELETE, synchronous=FULL):
  none of the documents says otherwise.
- A writable open takes the exclusive lock (origins/4: "exclusive KB lock
  acquisition"), and recovers nothing: there are no intents or journals to
  drain (origins/2, "Why It Matters": "No Recovery: No mechanism to identify
  or fix orphaned records").

Run: python3 origins_store.py   (speaks the protocol on stdin/stdout)
"""

import os
import sqlite3

import docstore
from docstore import INDEX, LOCK, SOURCE_DIR, VECTORS_DIR, VectorStore, check_content, check_name, source_path
from tearline_driver import (
    StoreError,
    fsync_dir,
    log,
    make_dir_durably,
    run,
    sha256_hex,
    take_lock,
)

NEW_INDEX = "index.db.new"
# origins/1 names the previous database `{current}{backup_suffix}` with a
# timestamp; a fixed name keeps runs deterministic. It is the design's backup.
OLD_INDEX = "index.db.old"

SCHEMA = "CREATE TABLE IF NOT EXISTS docs (name TEXT PRIMARY KEY, hash TEXT NOT NULL, content TEXT NOT NULL, vector TEXT)"


class OriginsStore(docstore.DocStore):
    NAME = "python-origins"
    BACKUPS = [OLD_INDEX]

    def __init__(self, rebuild_mode=None):
        self.rebuild_mode = rebuild_mode or os.environ.get("ORIGINS_REBUILD", "swap")
        if self.rebuild_mode not in ("swap", "drop"):
            raise SystemExit(f"ORIGINS_REBUILD must be swap or drop, not {self.rebuild_mode!r}")
        self.conn = None
        self.lock_fd = None
        self.writable = False
        # The vector store is a separate, non-transactional service; nothing
        # in origins/2 makes its writes durable or ties them to the index.
        self.vectors = VectorStore(durable=False)

    # -- lifecycle ---------------------------------------------------------

    def init(self):
        # Creating the empty store is not what the documents are about: it is
        # done durably so that only their designs are on trial.
        if os.path.exists(INDEX):
            raise StoreError("a store already exists here")
        make_dir_durably(SOURCE_DIR)
        make_dir_durably(VECTORS_DIR)
        conn = sqlite3.connect(INDEX, isolation_level=None)
        conn.execute(SCHEMA)
        conn.close()
        os.close(os.open(LOCK, os.O_WRONLY | os.O_CREAT, 0o644))
        fsync_dir(".")

    def open(self, access):
        if access == "writable":
            self.lock_fd = take_lock(LOCK)
            self.writable = True
        # No recovery here: nothing resolves a half-done add, removes staging
        # files or sweeps vectors (origins/2, "No Recovery").
        self._connect()

    def _connect(self):
        mode = "rw" if self.writable else "ro"
        try:
            self.conn = sqlite3.connect(f"file:{INDEX}?mode={mode}", uri=True, isolation_level=None)
        except sqlite3.Error as e:
            # The index may be gone (a power cut between the two renames of
            # the swap). The design has no way back; observe reports it.
            log(f"open: cannot open {INDEX}: {e}")
            self.conn = None

    # -- operations --------------------------------------------------------

    def apply(self, op):
        if not self.writable:
            raise StoreError("the store is open read-only")
        if self.conn is None:
            raise StoreError(f"{INDEX} is missing: the store cannot serve")
        kind = op.get("op")
        if kind == "add":
            self.add(check_name(op.get("name")), op.get("content"))
        elif kind == "remove":
            self.remove(check_name(op.get("name")))
        elif kind == "rebuild" and op.get("kind") == "full":
            self.rebuild_drop() if self.rebuild_mode == "drop" else self.rebuild_swap()
        else:
            raise StoreError(f"unsupported operation {op!r}")

    def add(self, name, content):
        data = check_content(content)
        # origins/4, "What changed": "staged artifact publishing with atomic
        # rename + EXDEV copy fallback". Staged and renamed: but neither the
        # file nor source/ is fsynced, so an acknowledged add can vanish in
        # a power cut (same device here, so the EXDEV copy never runs).
        staged = os.path.join(SOURCE_DIR, f".{name}.tmp")
        with open(staged, "wb") as f:
            f.write(data)
        os.rename(staged, source_path(name))
        self._index_document(name, content)

    def _index_document(self, name, content):
        """origins/2, "Current Implementation Pattern" (sqlite_store.py:731-796):

            with self.conn:
                cursor.execute(...)            # 1. insert the SQLite record
                vector_store.add_summary(...)  # 2. add to ChromaDB  (MAY FAIL)
                cursor.execute("UPDATE ... SET vector_id = ?")  # 3. link
        """
        content_hash = sha256_hex(content)
        old = self.conn.execute("SELECT vector FROM docs WHERE name = ?", (name,)).fetchone()
        vid = docstore.vector_id(name, content_hash)
        self.conn.execute("BEGIN")
        try:
            self.conn.execute(
                "INSERT OR REPLACE INTO docs (name, hash, content, vector) VALUES (?, ?, ?, NULL)",
                (name, content_hash, content),
            )
            try:
                # The vector is written before the transaction commits: a
                # crash here leaves a vector no row refers to (origins/2, Data
                # Integrity Guardian: "we get orphaned vectors with no SQLite
                # record").
                self.vectors.put(vid, content_hash)
                self.conn.execute("UPDATE docs SET vector = ? WHERE name = ?", (vid, name))
            except Exception as e:
                # origins/2: "ChromaDB failed but SQLite record was created -
                # this is acceptable" / "Current code logs error but continues".
                log(f"add {name}: vector write failed, continuing (deemed acceptable): {e}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        if old and old[0] and old[0] != vid:
            self._drop_vector(old[0])

    def _drop_vector(self, vid):
        try:
            self.vectors.delete(vid)
        except Exception as e:
            log(f"deleting vector {vid} failed, continuing: {e}")

    def remove(self, name):
        row = self.conn.execute("SELECT vector FROM docs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"{name} is not indexed")
        try:
            os.remove(source_path(name))  # no directory fsync: it may come back
        except FileNotFoundError:
            pass
        self.conn.execute("DELETE FROM docs WHERE name = ?", (name,))
        if row[0]:
            self._drop_vector(row[0])

    # -- full rebuild, the two designs of origins/1 ------------------------

    def rebuild_drop(self):
        """origins/1, "Failure Scenario": "System drops all tables: DROP TABLE
        symbols; DROP TABLE edges;" then "starts indexing 10,000 files",
        committing as it goes. Interrupted, the index holds part of the
        documents (or no table at all), and there is "No backup of previous
        state"."""
        for vid in sorted(self.vectors.ids()):
            self._drop_vector(vid)
        self.conn.execute("DROP TABLE IF EXISTS docs")
        self.conn.execute(SCHEMA)
        for name, data in docstore.read_sources().items():
            self._index_document(name, data.decode("utf-8"))

    def rebuild_swap(self):
        """origins/1, "Solution 1: Shadow Rebuild with Atomic Swap"
        (IndexRebuilder.rebuild_full): build the new index in a separate
        database, verify it, then `_atomic_swap_databases`."""
        sources = docstore.read_sources()
        try:
            if os.path.exists(NEW_INDEX):
                os.remove(NEW_INDEX)
            new = sqlite3.connect(NEW_INDEX, isolation_level=None)
            try:
                new.execute(SCHEMA)
                new.execute("BEGIN")
                for name, data in sources.items():
                    content_hash = sha256_hex(data)
                    vid = docstore.vector_id(name, content_hash)
                    if not self.vectors.exists(vid):
                        self.vectors.put(vid, content_hash)
                    new.execute(
                        "INSERT INTO docs (name, hash, content, vector) VALUES (?, ?, ?, ?)",
                        (name, content_hash, data.decode("utf-8"), vid),
                    )
                new.execute("COMMIT")
                # origins/1, `_verify_index`: "if symbol_count == 0: raise
                # IntegrityError('No symbols indexed')". Taken literally, a
                # store whose source files are all gone can never rebuild.
                if new.execute("SELECT COUNT(*) FROM docs").fetchone()[0] == 0:
                    raise StoreError("IntegrityError: No symbols indexed")
                if new.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise StoreError("IntegrityError: Built index failed verification")
            finally:
                new.close()
        except Exception as e:
            # origins/1, step 6: "Rollback: Clean up failed rebuild ... Delete
            # incomplete new database". (A crash, unlike an exception, skips
            # this: index.db.new is left behind and no open removes it.)
            if os.path.exists(NEW_INDEX):
                os.remove(NEW_INDEX)
            raise StoreError(f"RebuildFailedError: Rebuild failed: {e}") from e
        self.conn.close()
        self.conn = None
        self._atomic_swap_databases(INDEX, NEW_INDEX, OLD_INDEX)
        self._connect()
        # Vectors of documents no longer indexed; origins/1 step 5 schedules
        # this "async". Not durable, and a crash before it leaves orphans.
        live = {r[0] for r in self.conn.execute("SELECT vector FROM docs")}
        for vid in sorted(self.vectors.ids() - live):
            self._drop_vector(vid)

    @staticmethod
    def _atomic_swap_databases(current, new, backup):
        """origins/1, `_atomic_swap_databases`, line for line:

            if os.path.exists(current):
                os.rename(current, f"{current}{backup_suffix}")   # 1.
            os.rename(new, current)                               # 2.
            if not os.path.exists(current): ... rename back

        Two renames with a gap between them, and no fsync of the directory:
        a power cut after the first (or with only the first made durable by
        a later, unrelated directory sync) leaves no index.db at all.
        """
        if os.path.exists(current):
            os.rename(current, backup)
        os.rename(new, current)
        if not os.path.exists(current):
            if os.path.exists(backup):
                os.rename(backup, current)
            raise StoreError("Database swap failed, rolled back")


if __name__ == "__main__":
    raise SystemExit(run(OriginsStore))
