//! notes-store: an example of a team's own store, certified by Tearline.
//!
//! Notes are files under `notes/` (the truth); `index` lists each note's
//! name and SHA-256, one per line. A mutation first writes its intent
//! (`INTENT`: the note's name), then the note, then the index, then removes
//! the intent; opening for writing finishes whatever an intent names from
//! the note as found. A rebuild derives the whole index from the notes and
//! keeps the previous one as `index.bak`. Every write is temp file + fsync
//! + rename + directory fsync ([`FsExt::write_file_atomic`]).
//!
//! [`NotesStore::flawed`] is the same store written the quick way: the index
//! is rewritten in place and nothing is fsynced. Tearline must fail it.
//!
//! The store is written on [`Fs`], so it runs on the real filesystem in
//! production (`RealFs`) and on Tearline's simulated one under test; the
//! contract adapter is in [`under_tearline`].

pub mod under_tearline;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tearline_sim_fs::{FileKind, Fs, FsExt, LockGuard, OpenOptions};

/// An open notes store.
pub struct NotesStore {
    fs: Arc<dyn Fs>,
    root: PathBuf,
    careful: bool,
    _lock: Option<Box<dyn LockGuard>>,
}

/// The SHA-256 of a note, lower-case hex.
pub fn hash(content: &[u8]) -> String {
    Sha256::digest(content).iter().map(|b| format!("{b:02x}")).collect()
}

impl NotesStore {
    /// Creates an empty store at `root`.
    pub fn create(fs: &dyn Fs, root: &Path) -> io::Result<()> {
        fs.create_dir_all_durable(&root.join("notes"))?;
        let _lock = fs.try_lock(root)?;
        fs.write_file_atomic(&root.join("index"), b"")
    }

    /// Opens the store; `writable` takes the lock (failing if another
    /// process holds it) and finishes an interrupted mutation. The lock is
    /// the root directory itself: a lock file could be removed or replaced
    /// under its holder, and the next writer would lock a new one.
    pub fn open(fs: Arc<dyn Fs>, root: &Path, writable: bool, careful: bool) -> io::Result<Self> {
        let lock = if writable { Some(fs.try_lock(root)?) } else { None };
        let store = Self {
            fs,
            root: root.to_path_buf(),
            careful,
            _lock: lock,
        };
        if writable {
            // What a crashed process left may be only in the page cache:
            // make it durable before trusting it.
            if careful {
                store
                    .fs
                    .open(&store.root.join("index"), &OpenOptions::read_only())?
                    .sync_all()?;
            }
            store.sync_dir(&store.root)?;
            for leftover in store.leftovers()? {
                store.fs.remove_file(&store.root.join(leftover))?;
            }
            if let Ok(name) = store.fs.read_file(&store.root.join("INTENT")) {
                store.finish(&String::from_utf8_lossy(&name))?;
            }
        }
        Ok(store)
    }

    /// The store written the quick way (see the crate docs).
    pub fn flawed(fs: Arc<dyn Fs>, root: &Path, writable: bool) -> io::Result<Self> {
        Self::open(fs, root, writable, false)
    }

    /// Adds or replaces a note.
    pub fn put(&self, name: &str, content: &str) -> io::Result<()> {
        self.begin(name)?;
        self.write(&self.root.join("notes").join(name), content.as_bytes())?;
        self.finish(name)
    }

    /// Removes a note.
    pub fn delete(&self, name: &str) -> io::Result<()> {
        if !self.index()?.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no note {name:?}")));
        }
        self.begin(name)?;
        self.fs.remove_file(&self.root.join("notes").join(name))?;
        self.sync_dir(&self.root.join("notes"))?;
        self.finish(name)
    }

    /// Rebuilds the index from the notes, keeping the old one as `index.bak`.
    pub fn rebuild(&self) -> io::Result<()> {
        let old = self.fs.read_file(&self.root.join("index"))?;
        self.write(&self.root.join("index.bak"), &old)?;
        self.write_index(&self.notes()?)
    }

    /// The index: name → hash. An unreadable line is an error.
    pub fn index(&self) -> io::Result<BTreeMap<String, String>> {
        let text = String::from_utf8(self.fs.read_file(&self.root.join("index"))?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "index is not UTF-8"))?;
        text.lines()
            .map(|line| match line.split_once(' ') {
                Some((name, hash)) if hash.len() == 64 => Ok((name.to_string(), hash.to_string())),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad index line {line:?}"),
                )),
            })
            .collect()
    }

    /// The notes on disk: name → hash.
    pub fn notes(&self) -> io::Result<BTreeMap<String, String>> {
        let mut notes = BTreeMap::new();
        for entry in self.fs.read_dir(&self.root.join("notes"))? {
            // A directory (or a symlink) among the notes is not a note.
            if !entry.name.starts_with('.') && entry.kind == FileKind::File {
                // A note removed since the listing is gone, not an error.
                match self.fs.read_file(&self.root.join("notes").join(&entry.name)) {
                    Ok(content) => {
                        notes.insert(entry.name, hash(&content));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(notes)
    }

    /// Temp files left by an interrupted write (relative to the root).
    pub fn leftovers(&self) -> io::Result<Vec<String>> {
        let mut found = Vec::new();
        for dir in ["", "notes"] {
            for entry in self.fs.read_dir(&self.root.join(dir))? {
                if entry.name.starts_with('.') && entry.name.ends_with(".tmp") {
                    found.push(Path::new(dir).join(&entry.name).display().to_string());
                }
            }
        }
        Ok(found)
    }

    /// Whether the previous index was kept by a rebuild.
    pub fn has_backup(&self) -> io::Result<bool> {
        self.fs.exists(&self.root.join("index.bak"))
    }

    fn begin(&self, name: &str) -> io::Result<()> {
        if name.is_empty() || name.contains('/') || name.contains(' ') || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad note name {name:?}"),
            ));
        }
        self.write(&self.root.join("INTENT"), name.as_bytes())
    }

    /// Makes the index entry of `name` follow its note as found, then drops
    /// the intent. What it found is made durable first: after a failed
    /// fsync, a note can be in the page cache and not yet on disk.
    fn finish(&self, name: &str) -> io::Result<()> {
        let note = self.root.join("notes").join(name);
        if self.careful && self.fs.exists(&note)? {
            self.fs.open(&note, &OpenOptions::read_only())?.sync_all()?;
        }
        self.sync_dir(&self.root.join("notes"))?;
        let mut index = self.index()?;
        match self.fs.read_file(&note) {
            Ok(content) => index.insert(name.to_string(), hash(&content)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => index.remove(name),
            Err(e) => return Err(e),
        };
        self.write_index(&index)?;
        self.fs.remove_file(&self.root.join("INTENT"))?;
        self.sync_dir(&self.root)
    }

    fn write_index(&self, index: &BTreeMap<String, String>) -> io::Result<()> {
        let text: String = index.iter().map(|(name, hash)| format!("{name} {hash}\n")).collect();
        self.write(&self.root.join("index"), text.as_bytes())
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if self.careful {
            self.fs.write_file_atomic(path, data)
        } else {
            self.fs.write_file(path, data)
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.careful { self.fs.sync_dir(dir) } else { Ok(()) }
    }
}
