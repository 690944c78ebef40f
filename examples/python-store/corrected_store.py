"""The origins store (origins_store.py), corrected so that it survives
Tearline's crash tests. Copy this one.

Fault model: the process may be killed at any syscall, and a power cut drops
everything not durable (a file's data needs its fsync; a new, renamed or
removed name needs its directory's fsync). The vector store may fail, or
time out after applying a write. What must hold after a writable reopen:
every acknowledged operation is there, the interrupted one is all or
nothing, the index opens and passes integrity_check, the index and the
vectors agree both ways, nothing temporary is left, and after a full
rebuild the previous index is kept as a backup.

The corrections, each against the flaw of origins_store.py it replaces:

1. Durable writes: every file is written temp + fsync + rename + directory
   fsync (write_durably); every unlink is followed by a directory fsync.
2. SQLite with journal_mode=DELETE and synchronous=EXTRA. FULL, the default,
   does not fsync the directory after deleting the journal, so a power cut
   can bring the journal back and roll the last acknowledged commit back.
3. Two-phase dual write (origins/2's own "Solution 1", with the recovery it
   leaves as a stub done for real): an intent is committed first; then the
   vector and the source file are written durably; then one transaction
   writes the row and deletes the intent. A writable open resolves each
   intent by what is on disk (the source file has the intent's content:
   finish it; otherwise undo it) and sweeps vectors both ways.
4. Shadow rebuild with ONE rename: index.db.new is built and fsynced, a
   backup copy of index.db is made durably, then index.db.new is renamed
   over index.db and the directory fsynced. No instant exists without a
   complete index.db. A writable open removes what an interrupted rebuild
   left.
5. The lock: a writable open takes it (and refuses at once if it is held);
   everything that changes the store needs it; a read-only open takes no
   lock and changes nothing.
"""

import os
import sqlite3

import docstore
from docstore import INDEX, INDEX_JOURNAL, LOCK, SOURCE_DIR, VECTORS_DIR, VectorStore, check_content, check_name, source_path
from tearline_driver import (
    StoreError,
    fsync_dir,
    fsync_file,
    log,
    make_dir_durably,
    release_lock,
    remove_durably,
    run,
    sha256_hex,
    take_lock,
    write_durably,
)

NEW_INDEX = "index.db.new"
BACKUP = "index.db.bak"
# Staging files an interrupted operation may leave; a writable open removes them.
STAGING = (NEW_INDEX, NEW_INDEX + "-journal", f".{BACKUP}.tmp")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS docs (name TEXT PRIMARY KEY, hash TEXT NOT NULL, content TEXT NOT NULL, vector TEXT);"
    "CREATE TABLE IF NOT EXISTS intents (id INTEGER PRIMARY KEY, op TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL);"
)


def connect(path, writable):
    """A SQLite connection in explicit-transaction mode (isolation_level=None:
    we write BEGIN and COMMIT ourselves)."""
    mode = "rw" if writable else "ro"
    conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, isolation_level=None)
    if writable:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=EXTRA")  # FULL loses the last commit on power cut
    return conn


class CorrectedStore(docstore.DocStore):
    NAME = "python-corrected"
    BACKUPS = [BACKUP]

    def __init__(self):
        self.conn = None
        self.lock_fd = None
        self.vectors = VectorStore(durable=True)

    # -- lifecycle ---------------------------------------------------------

    def init(self):
        if os.path.exists(INDEX):
            raise StoreError("a store already exists here")
        make_dir_durably(SOURCE_DIR)
        make_dir_durably(VECTORS_DIR)
        # Even creating the index commits (SQLite unlinks its journal): only
        # the lock holder may touch the index files, so take the lock first.
        lock_fd = take_lock(LOCK)
        try:
            conn = sqlite3.connect(INDEX, isolation_level=None)
            conn.execute("PRAGMA synchronous=EXTRA")
            conn.executescript(SCHEMA)
            conn.close()
            fsync_file(INDEX)
            fsync_dir(".")
        finally:
            release_lock(lock_fd)

    def open(self, access):
        if not os.path.isfile(INDEX):
            raise StoreError(f"no store here: {INDEX} is missing")
        if access == "read-only":
            self.conn = connect(INDEX, writable=False)  # no lock, no recovery, no writes
            return
        self.lock_fd = take_lock(LOCK)
        try:
            self.conn = connect(INDEX, writable=True)  # rolls a hot journal back
            self.conn.executescript(SCHEMA)
            self.recover()
        except BaseException:
            self.close()
            raise

    def _require_lock(self):
        if self.lock_fd is None:
            raise StoreError("the store is open read-only: changes need the writer lock")

    # -- operations --------------------------------------------------------

    def apply(self, op):
        self._require_lock()
        kind = op.get("op")
        if kind == "add":
            self.add(check_name(op.get("name")), op.get("content"))
        elif kind == "remove":
            self.remove(check_name(op.get("name")))
        elif kind == "rebuild" and op.get("kind") == "full":
            self.rebuild_full()
        else:
            raise StoreError(f"unsupported operation {op!r}")

    def _transaction(self, *statements):
        """Runs (sql, params) pairs in one transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self.conn.execute(sql, params)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _row(self, name):
        return self.conn.execute("SELECT hash, vector FROM docs WHERE name = ?", (name,)).fetchone()

    def add(self, name, content):
        data = check_content(content)
        content_hash = sha256_hex(data)
        vid = docstore.vector_id(name, content_hash)
        # Phase 1: the intent, durable before anything else changes.
        self._transaction(("INSERT INTO intents (op, name, hash) VALUES ('add', ?, ?)", (name, content_hash)))
        try:
            # Phase 2: the vector, then the source file, both durable.
            self.vectors.put(vid, content_hash)
            write_durably(source_path(name), data)
        except Exception:
            self._recover_quietly()  # undo now if possible; else the next writable open will
            raise
        # Phase 3: the row and the end of the intent, in one transaction.
        self._link(name, content_hash, content, vid)

    def _link(self, name, content_hash, content, vid):
        old = self._row(name)
        self._transaction(
            ("INSERT OR REPLACE INTO docs (name, hash, content, vector) VALUES (?, ?, ?, ?)", (name, content_hash, content, vid)),
            ("DELETE FROM intents WHERE op = 'add' AND name = ?", (name,)),
        )
        if old and old[1] and old[1] != vid:
            self._delete_vector_quietly(old[1])  # else an orphan the next open sweeps

    def remove(self, name):
        row = self._row(name)
        if row is None:
            raise StoreError(f"{name} is not indexed")
        self._transaction(("INSERT INTO intents (op, name, hash) VALUES ('remove', ?, ?)", (name, row[0])))
        try:
            remove_durably(source_path(name))
            self._transaction(
                ("DELETE FROM docs WHERE name = ?", (name,)),
                ("DELETE FROM intents WHERE op = 'remove' AND name = ?", (name,)),
            )
        except Exception:
            self._recover_quietly()  # finish or forget it by what is on disk
            raise
        self._delete_vector_quietly(row[1])  # else an orphan the next open sweeps

    # -- recovery ----------------------------------------------------------

    def recover(self):
        """Runs on every writable open (and after a failed add): removes
        staging files, resolves intents by what is on disk, sweeps vectors."""
        for path in STAGING:
            remove_durably(path)
        # Opening the connection rolled a hot journal back and deleted it; a
        # journal still here is cold (a power cut while SQLite was creating
        # it, before its header was synced): nothing to roll back, remove it.
        if os.path.exists(INDEX_JOURNAL):
            remove_durably(INDEX_JOURNAL)
            log(f"recovery: removed a cold {INDEX_JOURNAL}")
        for directory in (SOURCE_DIR, VECTORS_DIR):
            for name in os.listdir(directory):
                if name.endswith(".tmp"):
                    remove_durably(os.path.join(directory, name))
        for intent_id, op, name, content_hash in self.conn.execute("SELECT id, op, name, hash FROM intents ORDER BY id").fetchall():
            self._resolve(intent_id, op, name, content_hash)
        self._sweep_vectors()

    def _resolve(self, intent_id, op, name, content_hash):
        path = source_path(name)
        on_disk = None
        if os.path.isfile(path):
            with open(path, "rb") as f:
                on_disk = sha256_hex(f.read())
        if op == "add" and on_disk == content_hash:
            # The source file got its new content: finish the add. Make it
            # durable first (the rename may be in the page cache only).
            fsync_file(path)
            fsync_dir(SOURCE_DIR)
            with open(path, encoding="utf-8") as f:
                content = f.read()
            vid = docstore.vector_id(name, content_hash)
            if not self.vectors.exists(vid):
                self.vectors.put(vid, content_hash)
            self._link(name, content_hash, content, vid)
            log(f"recovery: completed the add of {name}")
        elif op == "remove" and on_disk is None:
            fsync_dir(SOURCE_DIR)
            self._transaction(
                ("DELETE FROM docs WHERE name = ?", (name,)),
                ("DELETE FROM intents WHERE id = ?", (intent_id,)),
            )
            log(f"recovery: completed the removal of {name}")
        else:
            # The add never reached its source file, or the removal never
            # removed it: undo (the sweep deletes a vector the add wrote).
            self._transaction(("DELETE FROM intents WHERE id = ?", (intent_id,)))
            log(f"recovery: undid the {op} of {name}")

    def _sweep_vectors(self):
        """Deletes vectors no row names; recomputes a named vector that is missing."""
        rows = self.conn.execute("SELECT hash, vector FROM docs").fetchall()
        live = {vid for _, vid in rows}
        for vid in sorted(self.vectors.ids() - live):
            self._delete_vector(vid)
        for content_hash, vid in rows:
            if not self.vectors.exists(vid):
                self.vectors.put(vid, content_hash)

    def _delete_vector(self, vid):
        """Deletes a vector; an error counts only if the vector is really still there."""
        try:
            self.vectors.delete(vid)
        except StoreError:
            if self.vectors.exists(vid):
                raise

    def _delete_vector_quietly(self, vid):
        try:
            self._delete_vector(vid)
        except Exception as e:
            log(f"deleting vector {vid} failed; the next writable open sweeps it: {e}")

    def _recover_quietly(self):
        try:
            self.recover()
        except Exception as e:
            log(f"recovery failed; the next writable open retries: {e}")

    # -- full rebuild ------------------------------------------------------

    def rebuild_full(self):
        """A shadow rebuild that goes live with a single rename."""
        self.recover()
        for path in STAGING:
            remove_durably(path)
        # Opening the connection rolled a hot journal back and deleted it; a
        # journal still here is cold (a power cut while SQLite was creating
        # it, before its header was synced): nothing to roll back, remove it.
        if os.path.exists(INDEX_JOURNAL):
            remove_durably(INDEX_JOURNAL)
            log(f"recovery: removed a cold {INDEX_JOURNAL}")
        fsync_dir(SOURCE_DIR)  # the names we index must outlive a power cut
        sources = docstore.read_sources()
        try:
            new = sqlite3.connect(NEW_INDEX, isolation_level=None)
            try:
                new.execute("PRAGMA synchronous=EXTRA")
                new.executescript(SCHEMA)
                new.execute("BEGIN")
                for name, data in sources.items():
                    fsync_file(source_path(name))  # never index bytes a power cut can take back
                    content_hash = sha256_hex(data)
                    vid = docstore.vector_id(name, content_hash)
                    if not self.vectors.exists(vid):
                        self.vectors.put(vid, content_hash)
                    new.execute(
                        "INSERT INTO docs (name, hash, content, vector) VALUES (?, ?, ?, ?)",
                        (name, content_hash, data.decode("utf-8"), vid),
                    )
                new.execute("COMMIT")
                if new.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise StoreError("the new index fails integrity_check")
            finally:
                new.close()
            fsync_file(NEW_INDEX)
            # Keep the live index as the backup (a durable copy; the live
            # index.db is never renamed away).
            self.conn.close()
            self.conn = None
            with open(INDEX, "rb") as f:
                write_durably(BACKUP, f.read())
        except BaseException:
            remove_durably(NEW_INDEX)
            if self.conn is None:
                self.conn = connect(INDEX, writable=True)
            raise
        # The switch: one atomic rename, then the directory fsync that makes
        # it durable. If either fails, whichever index.db is there (old or
        # new, both complete) is the live one.
        try:
            os.rename(NEW_INDEX, INDEX)
            fsync_dir(".")
        finally:
            self.conn = connect(INDEX, writable=True)
        try:
            self._sweep_vectors()
        except Exception as e:
            log(f"rebuild: sweeping vectors failed; the next writable open retries: {e}")


if __name__ == "__main__":
    raise SystemExit(run(CorrectedStore))
