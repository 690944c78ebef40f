"""What both example stores share: the layout, the names, a toy embedding,
the "remote" vector store, and an honest observation.

Layout (relative to the store's root, the working directory):

    source/<name>              the documents: the truth
    index.db                   the SQLite index: docs(name, hash, content, vector)
    vectors/<name>.<h16>.vec   one vector per indexed version of a document
    LOCK                       the exclusive writer lock

A vector's file name carries the first 16 hex digits of the content hash it
was computed from, so a vector left behind by an older version is an
orphan the observation can see, not a silently stale one.
"""

import json
import os
import sqlite3

from tearline_driver import StoreError, fsync_dir, log, release_lock, sha256_hex, write_durably

SOURCE_DIR = "source"
VECTORS_DIR = "vectors"
INDEX = "index.db"
INDEX_JOURNAL = "index.db-journal"
LOCK = "LOCK"

# Temporary and staging files, reported as leftovers (unless the store
# counts one as a backup): `*.tmp` anywhere; in the root also the staging
# index (`*.new`, its `*.new-journal`) and a renamed-away index (`*.old`).
# Under source/ only `.tmp` counts: a document may well be named `x.old`.
TEMP_SUFFIX = ".tmp"
ROOT_LEFTOVER_SUFFIXES = (TEMP_SUFFIX, ".new", ".new-journal", ".old")


def check_name(name):
    """A document name is flat (`d0.md`): no directory, no hidden or temp name."""
    if not isinstance(name, str) or not name:
        raise StoreError(f"bad document name {name!r}")
    if "/" in name or "\0" in name or name.startswith(".") or name.endswith(".tmp"):
        raise StoreError(f"bad document name {name!r}: names are flat, not hidden, not .tmp")
    if len(name.encode("utf-8", "replace")) > 200:
        raise StoreError("bad document name: longer than 200 bytes")
    return name


def check_content(content):
    """The document's bytes: UTF-8 text."""
    if not isinstance(content, str):
        raise StoreError("content must be a string")
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError as e:
        raise StoreError(f"content is not UTF-8 text: {e}") from e


def source_path(name):
    return os.path.join(SOURCE_DIR, name)


def vector_id(name, content_hash):
    """The vector file of one version of one document."""
    return f"{name}.{content_hash[:16]}.vec"


def embedding(content_hash):
    """A tiny deterministic "embedding": 8 floats in [0, 1) from the hash."""
    raw = bytes.fromhex(content_hash)
    return [int.from_bytes(raw[i * 4:(i + 1) * 4], "big") / 2**32 for i in range(8)]


def read_sources():
    """name -> bytes of every source file (temp files excluded)."""
    found = {}
    if not os.path.isdir(SOURCE_DIR):
        return found
    for name in sorted(os.listdir(SOURCE_DIR)):
        if name.startswith(".") or name.endswith(".tmp"):
            continue
        path = source_path(name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                found[name] = f.read()
    return found


class RemoteFaults:
    """The harness's `remote-fault` switch in front of a vector store's
    writes. `fault` makes the writes misbehave as the request asks:

    - "unavailable", "timeout-before-apply": writes fail, nothing applied;
    - "timeout-after-apply": writes are applied, then fail (the caller
      cannot tell);
    - "healthy": writes go through.

    A write calls `_before` and `_after` around itself. Reads always work:
    they stand for "look at what is really there", which is how recovery
    resolves an ambiguous write. `SERVICE` names the store in errors.
    """

    FAULTS = ("healthy", "unavailable", "timeout-before-apply", "timeout-after-apply")
    SERVICE = "vector store"
    fault = "healthy"

    @classmethod
    def check(cls, fault):
        """`fault`, if it is one of FAULTS; StoreError otherwise."""
        if fault not in cls.FAULTS:
            raise StoreError(f"unknown remote fault {fault!r}")
        return fault

    def _before(self, what):
        if self.fault in ("unavailable", "timeout-before-apply"):
            raise StoreError(f"{self.SERVICE}: {what}: {self.fault}")

    def _after(self, what):
        if self.fault == "timeout-after-apply":
            raise StoreError(f"{self.SERVICE}: {what}: timed out (it may have been applied)")


class VectorStore(RemoteFaults):
    """A non-transactional vector store (one file per vector under vectors/),
    standing in for a remote service such as ChromaDB, with the remote
    faults of `RemoteFaults`. Reads (`exists`, `ids`) always work."""

    def __init__(self, durable):
        self.durable = durable
        self.fault = "healthy"

    def put(self, vid, content_hash):
        self._before(f"put {vid}")
        path = os.path.join(VECTORS_DIR, vid)
        data = json.dumps(embedding(content_hash))
        if self.durable:
            write_durably(path, data)
        else:
            with open(path, "w") as f:  # no fsync, no directory fsync
                f.write(data)
        self._after(f"put {vid}")

    def delete(self, vid):
        self._before(f"delete {vid}")
        try:
            os.remove(os.path.join(VECTORS_DIR, vid))
        except FileNotFoundError:
            pass
        if self.durable:
            fsync_dir(VECTORS_DIR)
        self._after(f"delete {vid}")

    def exists(self, vid):
        return os.path.isfile(os.path.join(VECTORS_DIR, vid))

    def ids(self):
        if not os.path.isdir(VECTORS_DIR):
            return set()
        return {n for n in os.listdir(VECTORS_DIR) if n.endswith(".vec") and not n.startswith(".")}


def _leftovers(backup_names):
    found = []
    for directory, _, files in os.walk("."):
        for name in files:
            rel = os.path.relpath(os.path.join(directory, name), ".")
            if rel in backup_names:
                continue
            suffixes = ROOT_LEFTOVER_SUFFIXES if directory == "." else (TEMP_SUFFIX,)
            if name.endswith(suffixes):
                found.append(rel)
    return sorted(found)


def observe(backup_names):
    """The store's state as found on disk, for both designs alike.

    It reads the disk afresh (a new read-only SQLite connection), so what it
    reports is what a reopen would find, not what this process believes.
    `backup_names` are the files the design keeps as earlier generations.
    """
    obs = {
        "indexed": {},
        "sources": {name: sha256_hex(data) for name, data in read_sources().items()},
        "integrity_ok": True,
        "integrity_detail": "",
        "orphan_vectors": 0,
        "missing_vectors": 0,
        "pending_work": 0,
        "leftover_files": _leftovers(backup_names),
        "backups": sum(1 for name in backup_names if os.path.isfile(name)),
        "schema": None,
    }
    rows = []
    if not os.path.isfile(INDEX):
        obs["integrity_ok"] = False
        obs["integrity_detail"] = f"{INDEX} is missing"
    else:
        try:
            conn = sqlite3.connect(f"file:{INDEX}?mode=ro", uri=True, isolation_level=None)
            try:
                result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if result != ["ok"]:
                    obs["integrity_ok"] = False
                    obs["integrity_detail"] = "; ".join(result)[:500]
                elif "docs" not in tables:
                    obs["integrity_ok"] = False
                    obs["integrity_detail"] = f"{INDEX} has no docs table"
                else:
                    rows = conn.execute("SELECT name, hash, vector FROM docs ORDER BY name").fetchall()
                if "intents" in tables:
                    obs["pending_work"] += conn.execute("SELECT COUNT(*) FROM intents").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as e:
            obs["integrity_ok"] = False
            obs["integrity_detail"] = f"{INDEX}: {e}"
    if os.path.exists(INDEX_JOURNAL):
        obs["pending_work"] += 1  # a hot journal: a transaction not yet rolled back
    count_vectors(obs, rows, VectorStore(durable=False).ids())
    return obs


def count_vectors(obs, rows, stored):
    """Fills `obs` from the index's `rows` (name, hash, vector id) and the
    vector ids `stored`: what is indexed, vectors no row names (orphans) and
    rows whose vector is not stored (missing), said on stderr if any."""
    referenced = set()
    for name, content_hash, vid in rows:
        obs["indexed"][name] = content_hash
        if vid is None or vid not in stored:
            obs["missing_vectors"] += 1
        else:
            referenced.add(vid)
    obs["orphan_vectors"] = len(stored - referenced)
    if obs["missing_vectors"] or obs["orphan_vectors"]:
        log(f"observe: {obs['missing_vectors']} missing, {obs['orphan_vectors']} orphan vectors")


class DocStore:
    """What both designs declare and do alike: the hello's fields, closing,
    the remote fault switch, and the observation (with each design's own
    backup names in BACKUPS). A design sets NAME and BACKUPS and keeps
    `conn`, `lock_fd` and `vectors`."""

    CAPABILITIES = {
        "remove": True,
        "full_rebuild": True,
        "vectors": True,
        "exclusive_lock": True,
        "source_files": True,
    }
    SOURCE_DIR = SOURCE_DIR
    LOCK_FILE = LOCK
    PROTECTED = [INDEX, INDEX_JOURNAL]
    BACKUPS = []

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.lock_fd is not None:
            release_lock(self.lock_fd)
            self.lock_fd = None

    def remote_fault(self, fault):
        self.vectors.fault = RemoteFaults.check(fault)
        return True

    def observe(self):
        return observe(backup_names=self.BACKUPS)
