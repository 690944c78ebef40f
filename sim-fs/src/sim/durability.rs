//! The durability model: what the page cache holds, what the disk holds, and
//! the operations in between.
//!
//! Durability is data. A [`State`] keeps three fields:
//! - `current`: the image every process sees (the page cache);
//! - `durable`: the image that survives a power cut for certain;
//! - `pending`: the operations applied to `current` but not yet to `durable`,
//!   in the order they were issued.
//!
//! `current` is always `durable` with every pending operation applied (both
//! are built by the same [`apply`] function), so a crash is a pure function of
//! `durable`, `pending` and a [`CrashChoice`] of which pending operations
//! survive.
//!
//! What makes an operation durable, as POSIX promises and no more:
//! - `fsync` of a file ([`State::sync_file`]) makes its data and length durable,
//!   but not its name;
//! - `fdatasync` ([`State::sync_data`]) does the same on Linux; under
//!   [`SyncDataPolicy::SizeNotDurable`] a length change stays pending;
//! - `fsync` of a directory ([`State::sync_dir`]) makes its entries durable:
//!   creates, links, unlinks and renames in it. A rename between two
//!   directories has two halves (the old name goes, the new name appears), each
//!   made durable by a sync of its own directory; until then a crash keeps or
//!   loses the whole pending part of it.
//!
//! What a failed `fsync`/`fdatasync` does is [`FsyncFailure`]: by default
//! Linux's rule ([`State::drop_dirty_data`]): the file's dirty data is marked
//! clean without reaching the disk, so the page cache keeps the bytes, a
//! power cut loses them, and a later successful sync does not bring them
//! back (it makes durable only what was written after the failure).
//!
//! Faults at rest live here too: sectors of the medium that read as `EIO`
//! until they are rewritten ([`State::bad_sectors`]); they survive reboots.

use std::sync::Arc;
use std::time::SystemTime;

use super::image::{DeviceId, Image, Ino, NewNode, Node, StateKey};
use super::persistence::{CrashChoice, Fate};

/// What `fdatasync` makes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SyncDataPolicy {
    /// As Linux: data and any length change needed to read it back (the
    /// default).
    #[default]
    Linux,
    /// Only bytes inside the file's durable length: an extension or a
    /// truncation stays pending until `fsync` (what POSIX alone promises).
    SizeNotDurable,
}

/// What a failed `fsync` or `fdatasync` of a file does to its dirty data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FsyncFailure {
    /// As Linux (ext4, XFS, btrfs; since 4.13 writeback errors are reported
    /// once per open file through `errseq`): the writeback error marks the
    /// dirty pages clean without their reaching the disk. The page cache
    /// keeps the new bytes (reads see them), a power cut loses them, the
    /// error is reported once, and a retried `fsync` returns success
    /// without making them durable (PostgreSQL's "fsyncgate", 2018). The
    /// default.
    #[default]
    DropsDirtyData,
    /// The failed sync changes nothing: the data stays dirty and a retried
    /// sync makes it durable (what a store written for a kernel that keeps
    /// dirty pages after a writeback error may assume).
    KeepsDirtyData,
}

/// The sector size of the medium, for faults at rest (latent sector errors).
pub(crate) const MEDIUM_SECTOR: u64 = 512;

/// An operation applied to the page cache and not yet known to be durable.
#[derive(Clone, Debug)]
pub(crate) enum PendingOp {
    /// Bytes written to a file.
    Write {
        ino: Ino,
        device: DeviceId,
        offset: u64,
        data: Arc<[u8]>,
        mtime: SystemTime,
    },
    /// A file's length changed.
    SetLen {
        ino: Ino,
        device: DeviceId,
        len: u64,
        mtime: SystemTime,
    },
    /// A name was added to a directory (create, mkdir, hard link).
    Link {
        dir: Ino,
        name: String,
        ino: Ino,
        kind: NewNode,
    },
    /// A name was removed from a directory.
    Unlink { dir: Ino, name: String },
    /// A name moved. `from_pending` / `to_pending` say which halves are not
    /// yet durable (a sync of that half's directory clears it).
    Rename {
        ino: Ino,
        kind: NewNode,
        from_dir: Ino,
        from_name: String,
        to_dir: Ino,
        to_name: String,
        from_pending: bool,
        to_pending: bool,
    },
}

impl PendingOp {
    /// The file whose data this operation changes, if it is a data operation.
    pub(crate) fn data_ino(&self) -> Option<Ino> {
        match self {
            PendingOp::Write { ino, .. } | PendingOp::SetLen { ino, .. } => Some(*ino),
            _ => None,
        }
    }

    /// Every inode this operation refers to.
    fn mentions(&self, target: Ino) -> bool {
        match self {
            PendingOp::Write { ino, .. } | PendingOp::SetLen { ino, .. } => *ino == target,
            PendingOp::Link { dir, ino, .. } => *dir == target || *ino == target,
            PendingOp::Unlink { dir, .. } => *dir == target,
            PendingOp::Rename {
                ino, from_dir, to_dir, ..
            } => *ino == target || *from_dir == target || *to_dir == target,
        }
    }

    /// The byte range a write covers, for tearing.
    pub(crate) fn write_span(&self) -> Option<(u64, usize)> {
        match self {
            PendingOp::Write { offset, data, .. } => Some((*offset, data.len())),
            _ => None,
        }
    }

    /// Mixes the operation into `key`, with every byte it writes.
    pub(crate) fn mix_into(&self, key: &mut StateKey) {
        let time = |key: &mut StateKey, mtime: &SystemTime| {
            let since = mtime.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            key.word(since.as_secs());
            key.word(u64::from(since.subsec_nanos()));
        };
        let node = |key: &mut StateKey, kind: &NewNode| match kind {
            NewNode::File(device) => {
                key.word(1);
                key.word(u64::from(*device));
            }
            NewNode::Dir => key.word(2),
            NewNode::Symlink(target) => {
                key.word(3);
                key.text(target);
            }
        };
        match self {
            PendingOp::Write {
                ino,
                device,
                offset,
                data,
                mtime,
            } => {
                key.word(1);
                key.word(*ino);
                key.word(u64::from(*device));
                key.word(*offset);
                key.bytes(data);
                time(key, mtime);
            }
            PendingOp::SetLen {
                ino,
                device,
                len,
                mtime,
            } => {
                key.word(2);
                key.word(*ino);
                key.word(u64::from(*device));
                key.word(*len);
                time(key, mtime);
            }
            PendingOp::Link { dir, name, ino, kind } => {
                key.word(3);
                key.word(*dir);
                key.text(name);
                key.word(*ino);
                node(key, kind);
            }
            PendingOp::Unlink { dir, name } => {
                key.word(4);
                key.word(*dir);
                key.text(name);
            }
            PendingOp::Rename {
                ino,
                kind,
                from_dir,
                from_name,
                to_dir,
                to_name,
                from_pending,
                to_pending,
            } => {
                key.word(5);
                key.word(*ino);
                node(key, kind);
                key.word(*from_dir);
                key.text(from_name);
                key.word(*to_dir);
                key.text(to_name);
                key.word(u64::from(*from_pending) | (u64::from(*to_pending) << 1));
            }
        }
    }

    /// A short description for reports.
    pub(crate) fn describe(&self) -> String {
        match self {
            PendingOp::Write { ino, offset, data, .. } => format!("write ino={ino} off={offset} len={}", data.len()),
            PendingOp::SetLen { ino, len, .. } => format!("set_len ino={ino} len={len}"),
            PendingOp::Link { dir, name, ino, .. } => format!("link {dir}/{name} -> ino={ino}"),
            PendingOp::Unlink { dir, name } => format!("unlink {dir}/{name}"),
            PendingOp::Rename {
                from_dir,
                from_name,
                to_dir,
                to_name,
                ..
            } => format!("rename {from_dir}/{from_name} -> {to_dir}/{to_name}"),
        }
    }
}

/// Applies `op` to `image`. Used for the live page cache and for replaying
/// surviving operations after a crash, so both agree by construction. Replay
/// is tolerant: an operation whose premise did not survive (an unlink of a
/// name that never became durable) changes nothing it cannot.
///
/// `tear`, for a torn write, is the sector size and which sectors of the write
/// reach the disk (the i-th sector counted from the one holding its first
/// byte, sectors aligned to the file); `None` applies the whole write.
pub(crate) fn apply(image: &mut Image, op: &PendingOp, tear: Option<Tear<'_>>) {
    match op {
        PendingOp::Write {
            ino,
            device,
            offset,
            data,
            mtime,
        } => {
            let file = image.file_mut(*ino, *device, *mtime);
            file.mtime = *mtime;
            let Some(Tear {
                sector_size,
                keep_sector,
            }) = tear
            else {
                file.write_at(data, *offset);
                return;
            };
            let end = offset + data.len() as u64;
            let first_sector = offset / sector_size;
            let mut pos = *offset;
            while pos < end {
                let sector = pos / sector_size;
                let sector_end = ((sector + 1) * sector_size).min(end);
                if keep_sector((sector - first_sector) as usize) {
                    let from = (pos - offset) as usize;
                    let to = (sector_end - offset) as usize;
                    file.write_at(&data[from..to], pos);
                }
                pos = sector_end;
            }
            // A write that extends the file extends it even if its last sectors
            // were torn away: the length is metadata, the sectors are data.
            if end > file.len() {
                file.set_len(end);
            }
        }
        PendingOp::SetLen {
            ino,
            device,
            len,
            mtime,
        } => {
            let file = image.file_mut(*ino, *device, *mtime);
            file.mtime = *mtime;
            file.set_len(*len);
        }
        PendingOp::Link { dir, name, ino, kind } => {
            image.ensure(*ino, kind, SystemTime::UNIX_EPOCH);
            image.dir_mut(*dir).insert(name.clone(), *ino);
        }
        PendingOp::Unlink { dir, name } => {
            image.dir_mut(*dir).remove(name);
        }
        PendingOp::Rename {
            ino,
            kind,
            from_dir,
            from_name,
            to_dir,
            to_name,
            from_pending,
            to_pending,
        } => {
            if *from_pending && image.lookup(*from_dir, from_name) == Some(*ino) {
                image.dir_mut(*from_dir).remove(from_name);
            }
            if *to_pending {
                image.ensure(*ino, kind, SystemTime::UNIX_EPOCH);
                image.dir_mut(*to_dir).insert(to_name.clone(), *ino);
            }
        }
    }
}

/// How a write is torn: sectors of `sector_size` bytes, each kept or not.
#[derive(Clone, Copy)]
pub(crate) struct Tear<'a> {
    pub(crate) sector_size: u64,
    pub(crate) keep_sector: &'a dyn Fn(usize) -> bool,
}

/// Page cache, disk, and the pending operations between them.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub(crate) current: Image,
    pub(crate) durable: Image,
    pub(crate) pending: imbl::Vector<PendingOp>,
    /// Files some of whose dirty data a failed sync dropped: their page
    /// cache holds bytes that will never reach the disk, so a sync makes
    /// durable only the pending writes, not the page cache's content.
    pub(crate) dropped_dirty: imbl::OrdSet<Ino>,
    /// Sectors ([`MEDIUM_SECTOR`] bytes, by index in the file) that read as
    /// `EIO` until a write covers them: latent sector errors of the medium,
    /// which a power cut does not heal.
    pub(crate) bad_sectors: imbl::OrdSet<(Ino, u64)>,
}

impl State {
    /// An empty filesystem, all of it durable.
    pub(crate) fn new() -> Self {
        Self::from_image(Image::new(), imbl::OrdSet::new())
    }

    /// A state in which `image` is both current and durable (after a reboot),
    /// on a medium with these bad sectors.
    pub(crate) fn from_image(image: Image, bad_sectors: imbl::OrdSet<(Ino, u64)>) -> Self {
        Self {
            current: image.clone(),
            durable: image,
            pending: imbl::Vector::new(),
            dropped_dirty: imbl::OrdSet::new(),
            bad_sectors,
        }
    }

    /// A failed sync of `ino` under Linux's rule: its pending data
    /// operations are dropped without reaching the disk (the page cache
    /// keeps them).
    pub(crate) fn drop_dirty_data(&mut self, ino: Ino) {
        let before = self.pending.len();
        self.pending.retain(|op| op.data_ino() != Some(ino));
        if self.pending.len() < before {
            self.dropped_dirty.insert(ino);
        }
    }

    /// The first bad sector a read of `len` bytes at `offset` of `ino` meets.
    pub(crate) fn bad_sector_in(&self, ino: Ino, offset: u64, len: u64) -> Option<u64> {
        if self.bad_sectors.is_empty() || len == 0 {
            return None;
        }
        let first = offset / MEDIUM_SECTOR;
        let last = (offset + len - 1) / MEDIUM_SECTOR;
        self.bad_sectors
            .range((ino, first)..=(ino, last))
            .next()
            .map(|(_, s)| *s)
    }

    /// Bit rot: flips bit `bit` of byte `at` of `ino` on the medium and in
    /// the page cache (where each holds that byte).
    pub(crate) fn flip_bit(&mut self, ino: Ino, at: u64, bit: u8) {
        for image in [&mut self.current, &mut self.durable] {
            let Some(file) = image.file(ino) else { continue };
            if at >= file.len() {
                continue;
            }
            let (device, mtime) = (file.device, file.mtime);
            let mut byte = [0u8];
            file.read_at(&mut byte, at);
            byte[0] ^= 1 << (bit % 8);
            image.file_mut(ino, device, mtime).write_at(&byte, at);
        }
    }

    /// A write of `len` bytes at `offset` of `ino` rewrites (and so heals,
    /// as a drive remaps a sector on write) every bad sector it touches.
    pub(crate) fn heal_sectors(&mut self, ino: Ino, offset: u64, len: u64) {
        if self.bad_sectors.is_empty() || len == 0 {
            return;
        }
        let first = offset / MEDIUM_SECTOR;
        let last = (offset + len - 1) / MEDIUM_SECTOR;
        let healed: Vec<(Ino, u64)> = self.bad_sectors.range((ino, first)..=(ino, last)).cloned().collect();
        for sector in healed {
            self.bad_sectors.remove(&sector);
        }
    }

    /// Applies `op` to the page cache and remembers it as pending.
    /// Another process unlinks `name` from `dir` and makes it durable at once
    /// (as the harness's own edits are), when the name is durable and names
    /// the same file there; otherwise the unlink is pending like any other.
    pub(crate) fn unlink_durably(&mut self, dir: Ino, name: &str) {
        let op = PendingOp::Unlink {
            dir,
            name: name.to_string(),
        };
        let durable = self.durable.lookup(dir, name);
        if durable.is_some() && durable == self.current.lookup(dir, name) {
            apply(&mut self.durable, &op, None);
            apply(&mut self.current, &op, None);
        } else {
            self.record(op);
        }
    }

    pub(crate) fn record(&mut self, op: PendingOp) {
        apply(&mut self.current, &op, None);
        self.pending.push_back(op);
    }

    /// `fsync`: the file's data and length become durable. For a file whose
    /// dirty data a failed sync dropped, only what was written since is.
    pub(crate) fn sync_file(&mut self, ino: Ino) {
        if self.dropped_dirty.contains(&ino) {
            let ops: Vec<PendingOp> = self
                .pending
                .iter()
                .filter(|op| op.data_ino() == Some(ino))
                .cloned()
                .collect();
            for op in &ops {
                apply(&mut self.durable, op, None);
            }
            self.pending.retain(|op| op.data_ino() != Some(ino));
            return;
        }
        let Some(node) = self.current.node(ino).cloned() else {
            return;
        };
        self.durable.put(ino, node);
        self.pending.retain(|op| op.data_ino() != Some(ino));
    }

    /// `fdatasync` under `policy`.
    pub(crate) fn sync_data(&mut self, ino: Ino, policy: SyncDataPolicy) {
        if self.dropped_dirty.contains(&ino) {
            // The page cache is not what reaches the disk: the pending writes are.
            return self.sync_file(ino);
        }
        let (Some(current), SyncDataPolicy::SizeNotDurable) = (self.current.file(ino).cloned(), policy) else {
            return self.sync_file(ino);
        };
        let durable_len = self.durable.file(ino).map_or(0, |f| f.len());
        let new_len = current.len();
        let mut durable = match self.durable.file(ino) {
            Some(old) => old.clone(),
            None => super::image::FileData::new(current.device, current.mtime),
        };
        // Bytes inside both lengths become durable; the length change stays pending.
        let shared = usize::try_from(durable_len.min(new_len)).unwrap_or(usize::MAX);
        let mut bytes = vec![0u8; shared];
        current.read_at(&mut bytes, 0);
        durable.write_at(&bytes, 0);
        self.durable.put(ino, Node::File(durable));
        self.pending.retain(|op| op.data_ino() != Some(ino));
        if new_len > durable_len {
            let tail_len = usize::try_from(new_len - durable_len).unwrap_or(usize::MAX);
            let mut tail = vec![0u8; tail_len];
            current.read_at(&mut tail, durable_len);
            self.pending.push_back(PendingOp::Write {
                ino,
                device: current.device,
                offset: durable_len,
                data: tail.into(),
                mtime: current.mtime,
            });
        } else if new_len < durable_len {
            self.pending.push_back(PendingOp::SetLen {
                ino,
                device: current.device,
                len: new_len,
                mtime: current.mtime,
            });
        }
    }

    /// `fsync` of a directory: its entries become durable.
    pub(crate) fn sync_dir(&mut self, dir: Ino) {
        let Some(entries) = self.current.dir(dir).cloned() else {
            return;
        };
        for (_, &child) in entries.iter() {
            let kind = match self.current.node(child) {
                Some(Node::File(data)) => NewNode::File(data.device),
                Some(Node::Dir(_)) => NewNode::Dir,
                Some(Node::Symlink(target)) => NewNode::Symlink(std::sync::Arc::clone(target)),
                None => continue,
            };
            self.durable.ensure(child, &kind, SystemTime::UNIX_EPOCH);
        }
        *self.durable.dir_mut(dir) = entries;
        let mut kept = imbl::Vector::new();
        for op in self.pending.iter() {
            match op {
                PendingOp::Link { dir: d, .. } | PendingOp::Unlink { dir: d, .. } if *d == dir => {}
                PendingOp::Rename {
                    from_dir,
                    to_dir,
                    from_pending,
                    to_pending,
                    ..
                } => {
                    let from_pending = *from_pending && *from_dir != dir;
                    let to_pending = *to_pending && *to_dir != dir;
                    if from_pending || to_pending {
                        let mut op = op.clone();
                        if let PendingOp::Rename {
                            from_pending: f,
                            to_pending: t,
                            ..
                        } = &mut op
                        {
                            *f = from_pending;
                            *t = to_pending;
                        }
                        kept.push_back(op);
                    }
                }
                _ => kept.push_back(op.clone()),
            }
        }
        self.pending = kept;
        self.collect_durable_garbage();
    }

    /// Drops durable inodes nothing can reach any more: unreachable from the
    /// durable root, absent from the page cache, and named by no pending op.
    fn collect_durable_garbage(&mut self) {
        let current = &self.current;
        let pending = &self.pending;
        self.durable
            .collect_garbage(&|ino| current.node(ino).is_some() || pending.iter().any(|op| op.mentions(ino)));
    }

    /// The image a power cut leaves when `choice` says which pending
    /// operations survive. Unreachable inodes are gone (as after `fsck`).
    pub(crate) fn crash_image(&self, choice: &CrashChoice, sector_size: u64) -> Image {
        let mut image = self.durable.clone();
        for (index, op) in self.pending.iter().enumerate() {
            match choice.fate(index) {
                Fate::Lost => {}
                Fate::Kept => apply(&mut image, op, None),
                Fate::Zeroed => apply(
                    &mut image,
                    op,
                    Some(Tear {
                        sector_size,
                        keep_sector: &|_| false,
                    }),
                ),
                Fate::Torn(sectors) => {
                    let keep_sector = |i: usize| sectors.get(i).copied().unwrap_or(false);
                    apply(
                        &mut image,
                        op,
                        Some(Tear {
                            sector_size,
                            keep_sector: &keep_sector,
                        }),
                    );
                }
            }
        }
        image.collect_garbage(&|_| false);
        image
    }
}

#[cfg(test)]
mod tests {
    use super::super::image::ROOT_INO;
    use super::*;

    fn write(ino: Ino, offset: u64, data: &[u8]) -> PendingOp {
        PendingOp::Write {
            ino,
            device: 0,
            offset,
            data: data.into(),
            mtime: SystemTime::UNIX_EPOCH,
        }
    }

    fn link(dir: Ino, name: &str, ino: Ino) -> PendingOp {
        PendingOp::Link {
            dir,
            name: name.into(),
            ino,
            kind: NewNode::File(0),
        }
    }

    fn content(image: &Image, name: &str) -> Option<Vec<u8>> {
        let ino = image.lookup(ROOT_INO, name)?;
        Some(image.file(ino)?.to_vec())
    }

    #[test]
    fn fsync_without_dir_sync_loses_the_name() {
        let mut state = State::new();
        state.record(link(ROOT_INO, "f", 2));
        state.record(write(2, 0, b"hello"));
        state.sync_file(2);
        let after = state.crash_image(&CrashChoice::nothing(state.pending.len()), 512);
        assert_eq!(content(&after, "f"), None);
        state.sync_dir(ROOT_INO);
        let after = state.crash_image(&CrashChoice::nothing(state.pending.len()), 512);
        assert_eq!(content(&after, "f").as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn dir_sync_without_fsync_keeps_an_empty_file() {
        let mut state = State::new();
        state.record(link(ROOT_INO, "f", 2));
        state.record(write(2, 0, b"hello"));
        state.sync_dir(ROOT_INO);
        let after = state.crash_image(&CrashChoice::nothing(state.pending.len()), 512);
        assert_eq!(content(&after, "f").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn current_is_durable_plus_every_pending_op() {
        let mut state = State::new();
        state.record(link(ROOT_INO, "a", 2));
        state.record(write(2, 0, &[1u8; 3000]));
        state.sync_file(2);
        state.record(write(2, 1000, &[2u8; 5000]));
        state.record(link(ROOT_INO, "b", 3));
        state.record(PendingOp::Rename {
            ino: 3,
            kind: NewNode::File(0),
            from_dir: ROOT_INO,
            from_name: "b".into(),
            to_dir: ROOT_INO,
            to_name: "a".into(),
            from_pending: true,
            to_pending: true,
        });
        let all = state.crash_image(&CrashChoice::everything(state.pending.len()), 512);
        assert_eq!(content(&all, "a"), content(&state.current, "a"));
        assert_eq!(content(&all, "b"), None);
    }

    #[test]
    fn torn_write_mixes_old_and_new_sectors() {
        let mut state = State::new();
        state.record(link(ROOT_INO, "f", 2));
        state.record(write(2, 0, &[0xAA; 2048]));
        state.sync_file(2);
        state.sync_dir(ROOT_INO);
        state.record(write(2, 0, &[0xBB; 2048]));
        let choice = CrashChoice::from_fates(vec![Fate::Torn(vec![true, false, true, false])]);
        let after = content(&state.crash_image(&choice, 512), "f").expect("file survives");
        assert_eq!(&after[..512], &[0xBB; 512][..]);
        assert_eq!(&after[512..1024], &[0xAA; 512][..]);
        assert_eq!(&after[1024..1536], &[0xBB; 512][..]);
        assert_eq!(&after[1536..], &[0xAA; 512][..]);
    }

    #[test]
    fn fdatasync_may_leave_an_extension_undurable() {
        let mut state = State::new();
        state.record(link(ROOT_INO, "f", 2));
        state.record(write(2, 0, b"abc"));
        state.sync_file(2);
        state.sync_dir(ROOT_INO);
        state.record(write(2, 0, b"xyz-extended"));
        state.sync_data(2, SyncDataPolicy::SizeNotDurable);
        let lost = content(&state.crash_image(&CrashChoice::nothing(state.pending.len()), 512), "f");
        assert_eq!(lost.as_deref(), Some(&b"xyz"[..]));
        let kept = content(
            &state.crash_image(&CrashChoice::everything(state.pending.len()), 512),
            "f",
        );
        assert_eq!(kept.as_deref(), Some(&b"xyz-extended"[..]));
        state.sync_data(2, SyncDataPolicy::Linux);
        assert!(state.pending.is_empty());
    }

    #[test]
    fn cross_directory_rename_needs_both_directories_synced() {
        let mut state = State::new();
        state.record(PendingOp::Link {
            dir: ROOT_INO,
            name: "d".into(),
            ino: 5,
            kind: NewNode::Dir,
        });
        state.record(link(ROOT_INO, "f", 2));
        state.sync_dir(ROOT_INO);
        state.record(PendingOp::Rename {
            ino: 2,
            kind: NewNode::File(0),
            from_dir: ROOT_INO,
            from_name: "f".into(),
            to_dir: 5,
            to_name: "g".into(),
            from_pending: true,
            to_pending: true,
        });
        state.sync_dir(5);
        assert_eq!(state.pending.len(), 1, "the source half is still pending");
        let lost = state.crash_image(&CrashChoice::nothing(1), 512);
        assert!(lost.lookup(ROOT_INO, "f").is_some() && lost.lookup(5, "g").is_some());
        state.sync_dir(ROOT_INO);
        assert!(state.pending.is_empty());
        let after = state.crash_image(&CrashChoice::nothing(0), 512);
        assert!(after.lookup(ROOT_INO, "f").is_none() && after.lookup(5, "g").is_some());
    }
}
