//! notes-store under Tearline: the store contract, so the crash matrix can
//! drive it. This is all a team writes to be certified (see
//! `tests/certify.rs` for the test that runs it).

use std::io;
use std::path::PathBuf;

use tearline_model::{
    Access, Capabilities, Env, Observation, Operation, RebuildKind, StoreFactory, StoreFailure, StoreUnderTest,
};
use tearline_sim_fs::FsExt;

use crate::NotesStore;

/// Builds notes stores for the harness.
pub struct NotesFactory {
    /// `false`: the flawed store ([`NotesStore::flawed`]).
    pub careful: bool,
}

fn failure(e: io::Error) -> StoreFailure {
    StoreFailure::new(e)
}

impl StoreFactory for NotesFactory {
    fn name(&self) -> &str {
        if self.careful {
            "notes-store"
        } else {
            "notes-store (flawed)"
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            remove: true,
            full_rebuild: true,
            exclusive_lock: true,
            source_files: true,
            ..Capabilities::default()
        }
    }

    fn init(&self, env: &Env) -> Result<(), StoreFailure> {
        NotesStore::create(env.fs.as_ref(), &env.root).map_err(failure)
    }

    fn open(&self, env: &Env, access: Access) -> Result<Box<dyn StoreUnderTest>, StoreFailure> {
        let writable = access == Access::Writable;
        let store = NotesStore::open(env.fs.clone(), &env.root, writable, self.careful).map_err(failure)?;
        Ok(Box::new(store))
    }

    fn source_dir(&self, env: &Env) -> Option<PathBuf> {
        Some(env.root.join("notes"))
    }

    fn protected_paths(&self, env: &Env) -> Vec<String> {
        ["index", "index.bak"]
            .map(|f| env.root.join(f).display().to_string())
            .to_vec()
    }

    fn lock_file(&self, env: &Env) -> Option<PathBuf> {
        Some(env.root.clone())
    }
}

impl StoreUnderTest for NotesStore {
    fn apply(&mut self, op: &Operation) -> Result<(), StoreFailure> {
        match op {
            Operation::Add { name, content } => self.put(name, content),
            Operation::Remove { name } => self.delete(name),
            Operation::Rebuild {
                kind: RebuildKind::Full,
            } => self.rebuild(),
            other => return Err(StoreFailure::new(format!("notes-store cannot {}", other.describe()))),
        }
        .map_err(failure)
    }

    fn observe(&self) -> Result<Observation, StoreFailure> {
        // A corrupt index is an observation; failing to read it is an error.
        let (indexed, integrity_ok, integrity_detail) = match self.index() {
            Ok(index) => (index, true, String::new()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => (Default::default(), false, e.to_string()),
            Err(e) => return Err(failure(e)),
        };
        Ok(Observation {
            indexed,
            integrity_ok,
            integrity_detail,
            sources: self.notes().map_err(failure)?,
            pending_work: usize::from(self.fs.exists(&self.root.join("INTENT")).map_err(failure)?),
            leftover_files: self.leftovers().map_err(failure)?,
            backups: usize::from(self.has_backup().map_err(failure)?),
            ..Observation::default()
        })
    }
}
