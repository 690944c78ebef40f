"""Speaks the black-box protocol to both example stores, each a real child
process in a real temporary directory (no FUSE, no faults from the
filesystem): the conversation, the observations, the lock, and, for the
corrected store, recovery from states planted by hand as a crash would
leave them.

Run: cd examples/python-store && python3 -m unittest -v
"""

import json
import os
import select
import sqlite3
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tearline_driver import CAPABILITY_NAMES, sha256_hex  # noqa: E402

ANSWER_TIMEOUT_S = 30


def h(text):
    return sha256_hex(text)


class Child:
    """One child process of a store: one `open` (or `init`), as the harness starts it."""

    def __init__(self, script, root, env=None):
        self.stderr = tempfile.TemporaryFile(mode="w+")  # the store's log; a file, so it never blocks
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, script)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env={**os.environ, "TEARLINE_PROTOCOL": "1", **(env or {})},
        )
        self.hello = self._read()

    def _read(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], ANSWER_TIMEOUT_S)
        if not ready:
            raise AssertionError("no answer within the timeout")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the child closed stdout; its log: {self.log()}")
        return json.loads(line)

    def send_line(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def request(self, request, **fields):
        return self.send_line(json.dumps({"request": request, **fields}))

    def ok(self, request, **fields):
        answer = self.request(request, **fields)
        assert answer.get("ok") is True, f"{request} {fields}: {answer}"
        return answer

    def apply(self, **op):
        return self.request("apply", operation=op)

    def observe(self):
        return self.ok("observe")["observation"]

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def finish(self):
        """Ends input; returns what the child printed after its last answer."""
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        self.proc.wait(timeout=ANSWER_TIMEOUT_S)
        return rest

    def close(self):
        answer = self.request("close")
        rest = self.finish()
        assert answer == {"ok": True}, answer
        assert rest == "", f"output after the close answer: {rest!r}"
        assert self.proc.returncode == 0, self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            stream.close()


class StoreTests:
    """The conversation every store must hold; mixed into one TestCase per store."""

    SCRIPT = None
    ENV = None

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = self._tmp.name
        self.children = []
        child = self.start()
        child.ok("init")
        child.close()

    def tearDown(self):
        for child in self.children:
            child.kill()
        self._tmp.cleanup()

    def start(self):
        child = Child(self.SCRIPT, self.root, self.ENV)
        self.children.append(child)
        return child

    def open(self, access="writable"):
        child = self.start()
        child.ok("open", access=access)
        return child

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def assert_healthy(self, obs):
        self.assertTrue(obs["integrity_ok"], obs["integrity_detail"])
        self.assertEqual(obs["orphan_vectors"], 0, obs)
        self.assertEqual(obs["missing_vectors"], 0, obs)
        self.assertEqual(obs["pending_work"], 0, obs)
        self.assertEqual(obs["leftover_files"], [], obs)
        self.assertEqual(obs["indexed"], obs["sources"])

    # -- the conversation ---------------------------------------------------

    def test_hello_declares_every_capability(self):
        hello = self.start().hello
        self.assertEqual(hello["hello"], "tearline/1")
        self.assertEqual(set(hello["capabilities"]), set(CAPABILITY_NAMES))
        self.assertEqual(hello["source_dir"], "source")
        self.assertEqual(hello["lock_file"], "LOCK")
        self.assertIn("index.db", hello["protected"])

    def test_add_replace_remove_survive_a_reopen(self):
        store = self.open()
        for op in (
            {"op": "add", "name": "d0.md", "content": "zero"},
            {"op": "add", "name": "d1.md", "content": "one"},
            {"op": "add", "name": "d0.md", "content": "zero, again"},
            {"op": "add", "name": "d2.md", "content": "two"},
            {"op": "remove", "name": "d2.md"},
        ):
            self.assertEqual(store.apply(**op), {"ok": True}, op)
        expected = {"d0.md": h("zero, again"), "d1.md": h("one")}
        obs = store.observe()
        self.assertEqual(obs["indexed"], expected)
        self.assert_healthy(obs)
        store.close()
        for access in ("read-only", "writable"):
            store = self.open(access)
            obs = store.observe()
            self.assertEqual(obs["indexed"], expected, access)
            self.assert_healthy(obs)
            store.close()

    def test_full_rebuild_follows_the_source_files_and_keeps_a_backup(self):
        store = self.open()
        store.apply(op="add", name="a.md", content="a")
        store.apply(op="add", name="b.md", content="b")
        with open(self.path("source", "b.md"), "w") as f:  # edited behind the store's back
            f.write("b, edited")
        with open(self.path("source", "c.md"), "w") as f:
            f.write("c")
        os.remove(self.path("source", "a.md"))
        self.assertEqual(store.apply(op="rebuild", kind="full"), {"ok": True})
        obs = store.observe()
        self.assertEqual(obs["indexed"], {"b.md": h("b, edited"), "c.md": h("c")})
        self.assert_healthy(obs)
        self.assertGreaterEqual(obs["backups"], 1)
        store.close()
        obs = self.open().observe()
        self.assertEqual(obs["indexed"], {"b.md": h("b, edited"), "c.md": h("c")})

    def test_bad_input_gets_one_clean_error_each(self):
        store = self.start()
        self.assertFalse(store.send_line("not json")["ok"])
        self.assertFalse(store.send_line("[1, 2]")["ok"])
        self.assertFalse(store.request("frobnicate")["ok"])
        store.ok("open", access="writable")
        for op in (
            {"op": "add", "name": "../escape.md", "content": "x"},
            {"op": "add", "name": ".hidden", "content": "x"},
            {"op": "add", "name": "", "content": "x"},
            {"op": "add", "name": "a.md", "content": 7},
            {"op": "add", "name": "a.md", "content": "\ud800"},
            {"op": "remove", "name": "never-added.md"},
            {"op": "import", "documents": [["a.md", "x"]]},
            {"op": "rebuild", "kind": "incremental"},
            {"op": "teleport"},
        ):
            answer = store.apply(**op)
            self.assertFalse(answer["ok"], op)
            self.assertIsInstance(answer["error"], str)
        self.assertEqual(store.request("stamp-schema", stamp="newer"), {"ok": True, "supported": False})
        obs = store.observe()
        self.assertEqual(obs["indexed"], {})
        self.assertEqual(obs["sources"], {})
        store.close()

    def test_end_of_input_means_close(self):
        store = self.open()
        self.assertEqual(store.finish(), "")
        self.assertEqual(store.proc.returncode, 0)
        self.open().close()  # the lock was released

    def test_a_reset_releases_everything_and_the_next_conversation_starts_afresh(self):
        store = self.open()
        self.assertTrue(store.hello["reusable"])
        store.apply(op="add", name="a.md", content="a")
        store.ok("remote-fault", fault="unavailable")
        store.ok("reset")
        other = self.open()  # the reset released the lock
        other.close()
        store.ok("open", access="writable")  # the same process, a new conversation
        self.assertEqual(store.apply(op="add", name="b.md", content="b"), {"ok": True})  # the fault is gone
        obs = store.observe()
        self.assertEqual(obs["indexed"], {"a.md": h("a"), "b.md": h("b")})
        self.assert_healthy(obs)
        store.close()

    def test_a_second_writer_is_refused_while_the_first_holds_the_lock(self):
        first = self.open()
        second = self.start()
        answer = second.request("open", access="writable")
        self.assertFalse(answer["ok"])
        self.assertIn("LOCK", answer["error"])
        reader = self.open("read-only")  # a reader takes no lock
        self.assertFalse(reader.apply(op="add", name="a.md", content="x")["ok"])
        reader.close()
        first.close()
        second.ok("open", access="writable")
        second.close()

    def test_a_killed_writer_frees_the_lock_and_keeps_what_it_acknowledged(self):
        store = self.open()
        store.apply(op="add", name="a.md", content="a")
        store.kill()  # SIGKILL: no close, no flush beyond what was acknowledged
        obs = self.open().observe()
        self.assertEqual(obs["indexed"], {"a.md": h("a")})
        self.assert_healthy(obs)

    def test_a_read_only_open_changes_nothing(self):
        store = self.open()
        store.apply(op="add", name="a.md", content="a")
        store.close()
        planted = [self.path("index.db.new"), self.path("vectors", "ghost.md.0123456789abcdef.vec")]
        for path in planted:
            with open(path, "w") as f:
                f.write("planted")
        before = sorted(os.listdir(self.root)), os.path.getmtime(self.path("index.db"))
        reader = self.open("read-only")
        obs = reader.observe()
        self.assertEqual(obs["orphan_vectors"], 1)
        self.assertEqual(obs["leftover_files"], ["index.db.new"])
        reader.close()
        self.assertEqual((sorted(os.listdir(self.root)), os.path.getmtime(self.path("index.db"))), before)
        for path in planted:
            self.assertTrue(os.path.exists(path), path)


class CorrectedStoreTests(StoreTests, unittest.TestCase):
    SCRIPT = "corrected_store.py"

    def plant_intent(self, op, name, content_hash):
        conn = sqlite3.connect(self.path("index.db"))
        with conn:
            conn.execute("INSERT INTO intents (op, name, hash) VALUES (?, ?, ?)", (op, name, content_hash))
        conn.close()

    def plant(self, relative, text):
        with open(self.path(relative), "w") as f:
            f.write(text)

    def test_an_orphan_vector_is_swept_by_a_writable_open(self):
        self.plant("vectors/ghost.md.0123456789abcdef.vec", "[0.5]")
        self.assertEqual(self.open("read-only").observe()["orphan_vectors"], 1)
        obs = self.open().observe()
        self.assert_healthy(obs)
        self.assertFalse(os.path.exists(self.path("vectors", "ghost.md.0123456789abcdef.vec")))

    def test_a_missing_vector_is_recomputed(self):
        store = self.open()
        store.apply(op="add", name="a.md", content="a")
        store.close()
        vector = f"a.md.{h('a')[:16]}.vec"
        os.remove(self.path("vectors", vector))
        self.assertEqual(self.open("read-only").observe()["missing_vectors"], 1)
        self.assert_healthy(self.open().observe())
        self.assertTrue(os.path.exists(self.path("vectors", vector)))

    def test_an_add_intent_that_never_reached_its_source_file_is_undone(self):
        # As a crash after the vector was written, before the source file was.
        self.plant_intent("add", "p.md", h("planted"))
        self.plant(f"vectors/p.md.{h('planted')[:16]}.vec", "[0.5]")
        self.plant("source/.p.md.tmp", "plant")
        self.assertEqual(self.open("read-only").observe()["pending_work"], 1)
        obs = self.open().observe()
        self.assert_healthy(obs)
        self.assertEqual(obs["indexed"], {})

    def test_an_add_intent_whose_source_file_is_in_place_is_completed(self):
        # As a crash after the source file was renamed into place, before the row.
        self.plant_intent("add", "p.md", h("planted"))
        self.plant("source/p.md", "planted")
        obs = self.open().observe()
        self.assert_healthy(obs)
        self.assertEqual(obs["indexed"], {"p.md": h("planted")})

    def test_a_remove_intent_is_completed_or_forgotten_by_what_is_on_disk(self):
        store = self.open()
        store.apply(op="add", name="gone.md", content="g")
        store.apply(op="add", name="kept.md", content="k")
        store.close()
        self.plant_intent("remove", "gone.md", h("g"))
        os.remove(self.path("source", "gone.md"))  # the crash came after the unlink
        self.plant_intent("remove", "kept.md", h("k"))  # ... or before it
        obs = self.open().observe()
        self.assert_healthy(obs)
        self.assertEqual(obs["indexed"], {"kept.md": h("k")})

    def test_what_an_interrupted_rebuild_leaves_is_removed_by_a_writable_open(self):
        store = self.open()
        store.apply(op="add", name="a.md", content="a")
        store.close()
        for relative in ("index.db.new", ".index.db.bak.tmp", "source/.b.md.tmp", "vectors/.x.vec.tmp"):
            self.plant(relative, "half")
        obs = self.open().observe()
        self.assert_healthy(obs)
        self.assertEqual(obs["indexed"], {"a.md": h("a")})

    def test_a_failing_vector_store_fails_the_add_and_leaves_it_undone(self):
        store = self.open()
        store.apply(op="add", name="a.md", content="a")
        for fault in ("unavailable", "timeout-before-apply", "timeout-after-apply"):
            self.assertEqual(store.request("remote-fault", fault=fault), {"ok": True, "supported": True})
            self.assertFalse(store.apply(op="add", name="a.md", content=f"a, {fault}")["ok"], fault)
            self.assertFalse(store.apply(op="add", name="b.md", content="b")["ok"], fault)
            obs = store.observe()
            self.assertEqual(obs["indexed"], {"a.md": h("a")}, fault)
            self.assertEqual(obs["sources"], {"a.md": h("a")}, fault)
        store.ok("remote-fault", fault="healthy")
        store.close()
        obs = self.open().observe()
        self.assert_healthy(obs)
        self.assertEqual(obs["indexed"], {"a.md": h("a")})

    def test_an_empty_store_rebuilds(self):
        store = self.open()
        self.assertEqual(store.apply(op="rebuild", kind="full"), {"ok": True})
        self.assertEqual(store.observe()["backups"], 1)


class OriginsStoreTests(StoreTests, unittest.TestCase):
    """The origins store holds the conversation too; these tests pin its flaws
    down as the observation shows them (Tearline finds them under faults)."""

    SCRIPT = "origins_store.py"

    def test_a_failed_vector_write_is_acknowledged_and_leaves_a_missing_vector(self):
        store = self.open()
        store.ok("remote-fault", fault="unavailable")
        self.assertEqual(store.apply(op="add", name="a.md", content="a"), {"ok": True})  # "acceptable"
        self.assertEqual(store.observe()["missing_vectors"], 1)
        store.close()
        self.assertEqual(self.open().observe()["missing_vectors"], 1)  # no recovery

    def test_a_power_cut_between_the_two_renames_leaves_no_index(self):
        store = self.open()
        store.apply(op="add", name="a.md", content="a")
        store.apply(op="rebuild", kind="full")
        self.assertEqual(store.observe()["backups"], 1)
        store.close()
        # What a power cut after rename 1 of _atomic_swap_databases leaves.
        os.rename(self.path("index.db"), self.path("index.db.old"))
        store = self.open()
        obs = store.observe()
        self.assertFalse(obs["integrity_ok"])
        self.assertIn("missing", obs["integrity_detail"])
        self.assertFalse(store.apply(op="add", name="b.md", content="b")["ok"])

    def test_nothing_is_recovered_on_open(self):
        self.plant_files = ("index.db.new", "source/.a.md.tmp", "vectors/ghost.md.0123456789abcdef.vec")
        for relative in self.plant_files:
            with open(self.path(relative), "w") as f:
                f.write("half")
        obs = self.open().observe()
        self.assertEqual(obs["orphan_vectors"], 1)
        self.assertEqual(obs["leftover_files"], ["index.db.new", "source/.a.md.tmp"])

    def test_an_empty_store_cannot_rebuild_as_origins_1_verifies(self):
        answer = self.open().apply(op="rebuild", kind="full")
        self.assertFalse(answer["ok"])
        self.assertIn("No symbols indexed", answer["error"])


class OriginsDropAndReindexTests(unittest.TestCase):
    def test_drop_and_reindex_keeps_no_backup(self):
        with tempfile.TemporaryDirectory() as root:
            env = {"ORIGINS_REBUILD": "drop"}
            children = [Child("origins_store.py", root, env) for _ in range(2)]
            try:
                init, store = children
                init.ok("init")
                init.close()
                store.ok("open", access="writable")
                store.apply(op="add", name="a.md", content="a")
                self.assertEqual(store.apply(op="rebuild", kind="full"), {"ok": True})
                obs = store.observe()
                self.assertEqual(obs["indexed"], {"a.md": h("a")})
                self.assertEqual(obs["backups"], 0)  # origins/1: "No backup of previous state"
                store.close()
            finally:
                for child in children:
                    child.kill()


if __name__ == "__main__":
    unittest.main()
