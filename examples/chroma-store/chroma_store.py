"""A document store over real ChromaDB, built to origins/2's recommended
design ("Solution 1: Two-Phase Commit with Tracking Table"), flaws
included, so that `tearline certify --exec` can show what the design costs
on a real vector database.

Layout (relative to the store's root, the working directory):

    source/<name>      the documents: the truth (written durably: only the
                       dual write is on trial)
    index.db           SQLite: summaries(name, hash, content, vector_id) and
                       pending_vectors(temp_id, payload)
    chroma/            ChromaDB's PersistentClient (its own SQLite and
                       segment files), collection "docs"
    LOCK               the exclusive writer lock

An add follows `create_summary_with_vector_safe` of origins/2 line for line:

    1. INSERT INTO pending_vectors          (in the transaction Python's
                                              sqlite3 opens implicitly)
    2. INSERT OR REPLACE INTO summaries
    3. vector_store.add(...)                 ChromaDB, not transactional
    4. UPDATE summaries SET vector_id = ?
    5. DELETE FROM pending_vectors
    COMMIT
    except: ROLLBACK, delete the vector (best effort), raise

Its flaws, which the certificate should show:

- the tracking row lives in the same uncommitted transaction as the rows it
  tracks: a crash after step 3 rolls all of it back and leaves a vector in
  ChromaDB that nothing names, and nothing on open looks for it (the
  document's "No Recovery" stands): **no-orphan-vectors**;
- a ChromaDB call that times out after applying (`timeout-after-apply`) is
  rolled back in SQLite and "cleaned up" with a delete that may fail too.

Embeddings are passed explicitly (8 floats from the content hash), so no
model is downloaded; telemetry is off.

Run: python3 chroma_store.py   (speaks the protocol on stdin/stdout). Needs
`pip install chromadb` (tested with 1.5.9).
"""

import json
import os
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python-store"))

import docstore  # noqa: E402
from docstore import check_content, check_name, source_path  # noqa: E402
from tearline_driver import (  # noqa: E402
    StoreError,
    fsync_dir,
    log,
    make_dir_durably,
    release_lock,
    remove_durably,
    run,
    sha256_hex,
    take_lock,
    write_durably,
)

INDEX = "index.db"
INDEX_JOURNAL = "index.db-journal"
CHROMA_DIR = "chroma"
COLLECTION = "docs"
LOCK = "LOCK"

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS summaries (name TEXT PRIMARY KEY, hash TEXT NOT NULL, content TEXT NOT NULL, "
    "vector_id TEXT)",
    "CREATE TABLE IF NOT EXISTS pending_vectors (id INTEGER PRIMARY KEY, temp_id TEXT NOT NULL, payload TEXT NOT NULL)",
]

class ChromaVectors(docstore.RemoteFaults):
    """ChromaDB's collection, with the harness's remote faults in front of
    its writes (`docstore.RemoteFaults`)."""

    SERVICE = "ChromaDB"

    def __init__(self):
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.PersistentClient(
            path=CHROMA_DIR,
            settings=Settings(anonymized_telemetry=False, allow_reset=False),
        )
        self.collection = self.client.get_or_create_collection(COLLECTION, embedding_function=None)
        self.fault = "healthy"

    def add(self, vid, content_hash, name):
        self._before(f"add {vid}")
        self.collection.add(
            ids=[vid],
            embeddings=[docstore.embedding(content_hash)],
            metadatas=[{"name": name}],
        )
        self._after(f"add {vid}")

    def delete(self, vid):
        self._before(f"delete {vid}")
        self.collection.delete(ids=[vid])
        self._after(f"delete {vid}")

    def ids(self):
        return set(self.collection.get(include=[])["ids"])


class ChromaStore:
    NAME = "python-chroma"
    CAPABILITIES = {
        "remove": True,
        "vectors": True,
        "exclusive_lock": True,
        "source_files": True,
    }
    SOURCE_DIR = docstore.SOURCE_DIR
    LOCK_FILE = LOCK
    PROTECTED = [INDEX, INDEX_JOURNAL]

    def __init__(self):
        self.conn = None
        self.lock_fd = None
        self.writable = False
        self.vectors = None
        self.fault = "healthy"

    # -- lifecycle ---------------------------------------------------------

    def init(self):
        if os.path.exists(INDEX):
            raise StoreError("a store already exists here")
        self.lock_fd = take_lock(LOCK)
        fsync_dir(".")
        make_dir_durably(docstore.SOURCE_DIR)
        conn = sqlite3.connect(INDEX, isolation_level=None)
        for statement in SCHEMA:
            conn.execute(statement)
        conn.close()
        fsync_dir(".")
        ChromaVectors()  # creates the collection
        fsync_dir(".")

    def open(self, access):
        if access == "writable":
            self.lock_fd = take_lock(LOCK)
            self.writable = True
        # origins/2 recovers nothing on open: pending_vectors is never read.
        mode = "rw" if self.writable else "ro"
        self.conn = sqlite3.connect(f"file:{INDEX}?mode={mode}", uri=True)
        if self.writable:
            # SQLite's own recovery: the first read with write access rolls
            # back a hot journal a crash left.
            self.conn.execute("SELECT COUNT(*) FROM summaries").fetchone()
        self.vectors = ChromaVectors()
        self.vectors.fault = self.fault

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.vectors = None
        if self.lock_fd is not None:
            release_lock(self.lock_fd)
            self.lock_fd = None

    def remote_fault(self, fault):
        self.fault = docstore.RemoteFaults.check(fault)
        if self.vectors is not None:
            self.vectors.fault = fault
        return True

    # -- operations --------------------------------------------------------

    def apply(self, op):
        if not self.writable:
            raise StoreError("the store is open read-only")
        kind = op.get("op")
        if kind == "add":
            self.add(check_name(op.get("name")), op.get("content"))
        elif kind == "remove":
            self.remove(check_name(op.get("name")))
        else:
            raise StoreError(f"unsupported operation {op!r}")

    def add(self, name, content):
        data = check_content(content)
        write_durably(source_path(name), data)
        old = self.conn.execute("SELECT vector_id FROM summaries WHERE name = ?", (name,)).fetchone()
        self.create_summary_with_vector_safe(name, content)
        if old and old[0]:
            try:
                self.vectors.delete(old[0])
            except Exception as e:
                log(f"deleting the old vector {old[0]} failed, continuing: {e}")

    def create_summary_with_vector_safe(self, name, content):
        """origins/2, Solution 1, as written there."""
        content_hash = sha256_hex(content)
        vid = f"{name}.{content_hash[:16]}"
        cursor = self.conn.cursor()
        # 1. Create tracking record in SQLite FIRST
        pending_id = cursor.execute(
            "INSERT INTO pending_vectors (temp_id, payload) VALUES (?, ?)",
            (vid, json.dumps({"name": name, "hash": content_hash})),
        ).lastrowid
        vector_id = None
        try:
            # 2. Insert SQLite record
            cursor.execute(
                "INSERT OR REPLACE INTO summaries (name, hash, content, vector_id) VALUES (?, ?, ?, NULL)",
                (name, content_hash, content),
            )
            # 3. Write to ChromaDB
            self.vectors.add(vid, content_hash, name)
            vector_id = vid
            # 4. Link them
            cursor.execute("UPDATE summaries SET vector_id = ? WHERE name = ?", (vector_id, name))
            # 5. Clean up tracking record
            cursor.execute("DELETE FROM pending_vectors WHERE id = ?", (pending_id,))
            self.conn.commit()
        except Exception as e:
            # Rollback SQLite
            self.conn.rollback()
            # Cleanup ChromaDB write
            if vector_id:
                try:
                    self.vectors.delete(vector_id)
                except Exception:
                    pass  # Best effort cleanup
            raise StoreError(f"DataIntegrityError: Failed to sync summary: {e}") from e

    def remove(self, name):
        row = self.conn.execute("SELECT vector_id FROM summaries WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"{name} is not indexed")
        remove_durably(source_path(name))
        self.conn.execute("DELETE FROM summaries WHERE name = ?", (name,))
        self.conn.commit()
        if row[0]:
            try:
                self.vectors.delete(row[0])
            except Exception as e:
                log(f"deleting vector {row[0]} failed, continuing: {e}")

    # -- observation -------------------------------------------------------

    def observe(self):
        """The state as found on disk: a new read-only SQLite connection, and
        ChromaDB's own listing of what it holds."""
        obs = {
            "indexed": {},
            "sources": {name: sha256_hex(data) for name, data in docstore.read_sources().items()},
            "integrity_ok": True,
            "integrity_detail": "",
            "orphan_vectors": 0,
            "missing_vectors": 0,
            "pending_work": 0,
            "leftover_files": leftovers(),
            "backups": 0,
            "schema": None,
        }
        rows = []
        try:
            conn = sqlite3.connect(f"file:{INDEX}?mode=ro", uri=True, isolation_level=None)
            try:
                result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
                if result != ["ok"]:
                    obs["integrity_ok"] = False
                    obs["integrity_detail"] = "; ".join(result)[:500]
                else:
                    rows = conn.execute("SELECT name, hash, vector_id FROM summaries ORDER BY name").fetchall()
                    obs["pending_work"] += conn.execute("SELECT COUNT(*) FROM pending_vectors").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as e:
            obs["integrity_ok"] = False
            obs["integrity_detail"] = f"{INDEX}: {e}"
        if os.path.exists(INDEX_JOURNAL):
            obs["pending_work"] += 1
        try:
            stored = (self.vectors or ChromaVectors()).ids()
        except Exception as e:
            obs["integrity_ok"] = False
            obs["integrity_detail"] = f"ChromaDB does not open: {type(e).__name__}: {e}"[:500]
            stored = set()
        docstore.count_vectors(obs, rows, stored)
        return obs


def leftovers():
    """Temp files of this store (ChromaDB's own files are its business)."""
    found = []
    for directory in (".", docstore.SOURCE_DIR):
        if os.path.isdir(directory):
            found += [
                os.path.normpath(os.path.join(directory, n)) for n in os.listdir(directory) if n.endswith(".tmp")
            ]
    return sorted(found)


if __name__ == "__main__":
    raise SystemExit(run(ChromaStore()))
