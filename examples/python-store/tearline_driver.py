"""A Tearline black-box driver: the protocol loop a store in Python copies.

`tearline certify --exec "python3 my_store.py"` starts this process for an
open of the store (or an `init`, a `stamp-schema`), with the store's root as
its working directory; a process whose store was given as a class is reused
for later ones after a `reset`. The harness and the store talk over
stdin/stdout, one JSON object per line (see blackbox/PROTOCOL.md):

    child  -> {"hello":"tearline/1","name":...,"capabilities":{...},...}
    parent -> {"request":"open","access":"writable"}
    child  -> {"ok":true}
    ...

Rules this file enforces so a store does not have to think about them:

- stdout carries protocol lines and nothing else. `sys.stdout` is pointed at
  stderr before the store runs, so a stray `print` goes to the log (which
  the harness keeps and shows in the certificate) instead of corrupting the
  conversation.
- Every request gets exactly one answer line, flushed at once. An exception
  from the store becomes `{"ok":false,"error":"..."}`: a clean failure,
  which the harness accepts as long as the state is one its model allows.
- End of input means `close`.

Fault model, from the store's side: the harness may SIGKILL this process at
any syscall and drop everything not made durable. Durable means: the file's
data was fsynced, and for a new or renamed name, its directory was fsynced
too. The helpers at the bottom (`write_durably`, `fsync_dir`, ...) are the
few primitives a store needs to get that right.

A store is an object with these methods (the optional ones may be absent):

    NAME, CAPABILITIES (dict of the nine flags), SOURCE_DIR, LOCK_FILE, PROTECTED
    init()                      create an empty store in the working directory
    open(access)                "writable" (take the lock, recover) or "read-only"
    apply(op)                   op is the operation's dict, e.g. {"op":"add",...}
    observe() -> dict           the Observation (see PROTOCOL.md)
    remote_fault(fault) -> bool optional; False if the store has no remote
    stamp_schema(stamp) -> bool optional; False if no versioned schema
    close()                     release everything
"""

import errno
import fcntl
import hashlib
import json
import os
import sys
import traceback

PROTOCOL = "tearline/1"

# The nine capability flags; the hello line must carry every one of them.
CAPABILITY_NAMES = (
    "remove",
    "import",
    "full_rebuild",
    "incremental_rebuild",
    "reconcile",
    "vectors",
    "schema_version",
    "exclusive_lock",
    "source_files",
)


class StoreError(Exception):
    """A clean, expected failure: answered as {"ok":false,"error":message}."""


def log(message):
    """Logs to stderr (kept by the harness; never on the protocol channel)."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The protocol loop
# ---------------------------------------------------------------------------


def _hello(store, reusable):
    capabilities = {name: bool(store.CAPABILITIES.get(name, False)) for name in CAPABILITY_NAMES}
    return {
        "hello": PROTOCOL,
        "name": store.NAME,
        "capabilities": capabilities,
        "source_dir": store.SOURCE_DIR,
        "lock_file": store.LOCK_FILE,
        "protected": list(store.PROTECTED),
        "reusable": reusable,
    }


def _handle(store, request):
    """Performs one request; returns the answer's dict (without "ok")."""
    if not isinstance(request, dict):
        raise StoreError("a request must be a JSON object")
    kind = request.get("request")
    if kind == "init":
        store.init()
        return {}
    if kind == "open":
        access = request.get("access")
        if access not in ("writable", "read-only"):
            raise StoreError(f"unknown access {access!r}")
        store.open(access)
        return {}
    if kind == "apply":
        operation = request.get("operation")
        if not isinstance(operation, dict):
            raise StoreError("apply needs an operation object")
        store.apply(operation)
        return {}
    if kind == "observe":
        return {"observation": store.observe()}
    if kind == "remote-fault":
        hook = getattr(store, "remote_fault", None)
        return {"supported": bool(hook(request.get("fault"))) if hook else False}
    if kind == "stamp-schema":
        hook = getattr(store, "stamp_schema", None)
        return {"supported": bool(hook(request.get("stamp"))) if hook else False}
    raise StoreError(f"unknown request {kind!r}")


def run(store):
    """Speaks the protocol on stdin/stdout until `close` or end of input.

    Call it from the store's `if __name__ == "__main__":`, with the store's
    class (or any callable that makes a fresh store): the process then says
    it is reusable, and on `reset` it closes the store and makes a new one
    for the next conversation, so the harness need not start a new process
    (and a new interpreter) for every open. A store object instead of a
    callable serves one conversation and is never reused.
    """
    make = store if callable(store) else None
    if make is not None:
        store = make()
    out = sys.stdout
    sys.stdout = sys.stderr  # a stray print must never reach the harness

    def answer(message):
        out.write(json.dumps(message, separators=(",", ":")) + "\n")
        out.flush()

    answer(_hello(store, make is not None))
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as e:
            answer({"ok": False, "error": f"not JSON: {e}"})
            continue
        if isinstance(request, dict) and request.get("request") == "close":
            _close_quietly(store)
            answer({"ok": True})
            return 0
        if isinstance(request, dict) and request.get("request") == "reset" and make is not None:
            # Everything of this conversation goes: files, locks, connections
            # and every attribute of the store (its remote fault, say).
            _close_quietly(store)
            store = make()
            answer({"ok": True})
            continue
        try:
            answer({"ok": True, **_handle(store, request)})
        except StoreError as e:
            log(f"{request.get('request') if isinstance(request, dict) else '?'}: {e}")
            answer({"ok": False, "error": str(e)})
        except Exception as e:  # any other failure is still one clean answer
            log(traceback.format_exc())
            answer({"ok": False, "error": f"{type(e).__name__}: {e}"})
    _close_quietly(store)  # end of input means close
    return 0


def _close_quietly(store):
    try:
        store.close()
    except Exception:
        log(traceback.format_exc())


# ---------------------------------------------------------------------------
# Helpers every store needs (all paths relative to the store's root)
# ---------------------------------------------------------------------------


def sha256_hex(text):
    """The content hash the harness uses: SHA-256 of the UTF-8 bytes, lower-case hex."""
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def fsync_file(path):
    """Makes a file's data durable (not its name: see fsync_dir)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    """Makes a directory's entries durable: needed after creating, renaming or
    unlinking a name in it, or a power cut may take the change back."""
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path, data):
    """Replaces `path` with `data` atomically and durably: temp file, fsync,
    rename over, fsync the directory. A power cut at any point leaves either
    the old file or the new one (plus, at worst, a `.tmp` file that recovery
    removes). The temp name is `<dir>/.<name>.tmp`."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(directory)


def make_dir_durably(path):
    """Creates a directory (if missing) and makes its name durable."""
    if not os.path.isdir(path):
        os.mkdir(path)
        fsync_dir(os.path.dirname(path.rstrip("/")))


def remove_durably(path):
    """Unlinks `path` (if present) and makes the removal durable."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path))


def take_lock(path):
    """Takes the store's exclusive lock: `lockf` on the whole file, exclusive,
    non-blocking (the simulated filesystem passes it to the harness, which
    reads who holds it off the trace). Returns the descriptor: keep it open
    while the lock is held, and release with `release_lock`. Raises
    StoreError at once if another process holds it.

    POSIX record locks belong to the process and are dropped when *any*
    descriptor of the file is closed, so never open the lock file elsewhere.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EACCES, errno.EAGAIN):
            raise StoreError(f"{path} is held by another process: the store is open for writing elsewhere") from e
        raise
    return fd


def release_lock(fd):
    """Releases a lock taken with take_lock."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
