//! Step 4, publish: every staged file renamed over its source file; across
//! devices (`EXDEV`, staging on another mount) a copy beside the target,
//! fsynced, renamed into place; removals unlinked; then one fsync of
//! `source/`.

use std::io;

use tearline_sim_fs::FsExt;

use super::Change;
use super::record::JournalRecord;
use crate::error::{Context, Named, Result, StoreError};
use crate::store::Store;

impl Store {
    /// Step 4: every staged file renamed (or copied, across devices) over its
    /// source file, every removal unlinked, then `source/` synced.
    pub(super) fn publish(&self, record: &JournalRecord, changes: &[Change]) -> Result<()> {
        let staging = self.staging_for(&record.id);
        for change in changes {
            let target = self.layout.source_file(&change.name);
            match &change.content {
                Some(content) => {
                    let staged = staging.join(change.name.as_str());
                    match self.fs.rename(&staged, &target) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                            // The staged file is on another device: copy its
                            // content (held in memory) beside the target.
                            let temp = self.source_temp(change.name.as_str());
                            if flaw!(self.flaw, CopyWithoutFsync) {
                                // KNOWN BAD (origins/4): the copy is renamed
                                // into place before its bytes are durable.
                                self.fs
                                    .write_file(&temp, content)
                                    .context(|| format!("writing {}", temp.display()))?;
                            } else {
                                self.write_synced(&temp, content)?;
                            }
                            self.fs
                                .rename(&temp, &target)
                                .context(|| format!("renaming {} to {}", temp.display(), target.display()))?;
                        }
                        Err(source) => {
                            return Err(StoreError::Io {
                                context: format!("publishing {} as {}", staged.display(), target.display()),
                                source,
                            });
                        }
                    }
                }
                None => {
                    self.remove_if_exists(&target)?;
                }
            }
        }
        if flaw!(self.flaw, PublishWithoutFsync) {
            // KNOWN BAD (origins/4): the commit follows a publish that may not be durable.
            return Ok(());
        }
        self.fs.sync_dir_named(&self.layout.source_dir()).named()
    }
}
