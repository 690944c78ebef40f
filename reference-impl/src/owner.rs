//! Owners: a document can belong to one owner (a user id), and a reconcile
//! can be scoped to one owner (Storm Cloud's per-user reconciliation,
//! origins/3's `--user-id`): it then counts, syncs and cleans only that
//! owner's records and leaves every other record as it was.
//!
//! An owner is a file `owners/<name>` holding the owner's id and a newline,
//! then the CRC-32 of the id in hex and a newline, written durably before
//! [`Store::set_owner`] returns (temp file, fsync, rename, fsync of the
//! directory). Nothing else holds a copy of it, so a read whose transfer
//! flipped a bit (one the device's own checks missed) must not be taken for
//! another owner: a read that does not match its CRC is read again, up to
//! four times in all; one that never matches is damage. Owners are user data, like share links:
//! a rebuild neither derives nor removes them, and an owner whose document
//! is no longer indexed names nothing ([`Store::owners`] lists only indexed
//! documents) and is pruned by the next writable open, so it never claims a
//! later document of that name. Removing a document on purpose removes its
//! owner.
//!
//! A scope holds the indexed documents whose owner is the one named. A
//! source file that is not indexed belongs to nobody yet, so only an
//! unscoped reconcile indexes it; an owner file that does not read back as
//! an owner id with its CRC (damaged) puts its document in no owner's scope: a scoped
//! run never touches a record it cannot show is the owner's.

use std::collections::BTreeMap;

use tearline_sim_fs::{FileKind, FsExt};

use crate::error::{Context, Result, StoreError};
use crate::layout::DocName;
use crate::store::Store;

/// The longest owner id, in bytes.
pub const MAX_OWNER_LEN: usize = 64;

/// Checks an owner id: 1 to 64 bytes of ASCII letters, digits, `.`, `_`
/// and `-`, not starting with `.`.
pub fn check_owner(owner: &str) -> Result<()> {
    let invalid = |reason| StoreError::InvalidOwner {
        owner: owner.to_string(),
        reason,
    };
    if owner.is_empty() {
        return Err(invalid("it is empty"));
    }
    if owner.len() > MAX_OWNER_LEN {
        return Err(invalid("it is longer than 64 bytes"));
    }
    if owner.starts_with('.') {
        return Err(invalid("it starts with '.'"));
    }
    if !owner.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(invalid("only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

/// How many times an owner file is read before a CRC that never matches
/// is taken for damage.
const READS: usize = 4;

/// What an owner file holds for `owner`.
fn owner_file_content(owner: &str) -> String {
    format!("{owner}\n{:08x}\n", crc32fast::hash(owner.as_bytes()))
}

/// The owner id an owner file holds, if it holds one whose CRC matches.
fn parse_owner(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
    let (owner, crc) = text.split_once('\n')?;
    check_owner(owner).ok()?;
    (crc == format!("{:08x}", crc32fast::hash(owner.as_bytes()))).then(|| owner.to_string())
}

/// Reads an owner file (see the module docs): its owner, `None` if it is
/// absent or damaged.
fn read_owner_file(fs: &dyn tearline_sim_fs::Fs, path: &std::path::Path) -> Result<Option<String>> {
    for _ in 0..READS {
        let bytes = match crate::store::retry_eio(|| fs.read_file(path)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        };
        if let Some(owner) = parse_owner(&bytes) {
            return Ok(Some(owner));
        }
    }
    Ok(None)
}

impl Store {
    /// Makes `owner` the owner of an indexed document, durably (replacing
    /// any owner it had). [`StoreError::NotFound`] if the index does not
    /// hold it; [`StoreError::InvalidOwner`] for an id that is not one.
    pub fn set_owner(&mut self, name: &str, owner: &str) -> Result<()> {
        check_owner(owner)?;
        let name = self.sidecar_target(name, &self.layout.owners_dir())?;
        let file = self.layout.owner_file(&name);
        self.fs
            .write_file_atomic(&file, owner_file_content(owner).as_bytes())
            .context(|| format!("writing {}", file.display()))
    }

    /// The owner of an indexed document, if it has one.
    pub fn owner(&self, name: &str) -> Result<Option<String>> {
        let name = DocName::new(name)?;
        if self.index.summary(name.as_str())?.is_none() {
            return Ok(None);
        }
        read_owner_file(self.fs.as_ref(), &self.layout.owner_file(&name))
    }

    /// Every indexed document that has an owner, with its owner, by name.
    pub fn owners(&self) -> Result<BTreeMap<String, String>> {
        let indexed = self.indexed_names()?;
        let dir = self.layout.owners_dir();
        let entries = self
            .fs
            .read_dir_or_empty(&dir)
            .context(|| format!("listing {}", dir.display()))?;
        let mut owners = BTreeMap::new();
        for entry in entries {
            if entry.kind != FileKind::File || !indexed.contains(&entry.name) {
                continue;
            }
            if let Some(owner) = read_owner_file(self.fs.as_ref(), &dir.join(&entry.name))? {
                owners.insert(entry.name, owner);
            }
        }
        Ok(owners)
    }

    /// Removes a document's owner, durably; none is fine. Called once the
    /// document is removed (an owner left by a crash there names nothing:
    /// the document is not indexed, and the next writable open prunes it).
    pub(crate) fn disown(&self, name: &DocName) -> Result<()> {
        self.remove_sidecar(&self.layout.owner_file(name), &self.layout.owners_dir())
    }

    /// A writable open's step, once recovery has settled the index: removes
    /// the temp files an interrupted [`Store::set_owner`] left in `owners/`
    /// and the owners of documents no longer indexed, then makes that
    /// durable.
    pub(crate) fn settle_owners(&self) -> Result<()> {
        self.prune_sidecars(&self.layout.owners_dir())
    }
}
