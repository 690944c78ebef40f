//! The namespace: path resolution and the path operations of [`crate::Fs`]
//! on [`SimFs`](super::SimFs): open, rename, hard link, remove, create and
//! read directories, metadata, directory fsync, whole-file locks and free
//! space. Every name change is a pending operation (see
//! [`super::durability`]) until the directory holding it is synced.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path};
use std::sync::Arc;

use super::SimFs;
use super::dispatch::ok;
use super::durability::PendingOp;
use super::image::{Ino, NewNode, Node, ROOT_INO};
use super::locks::{FileLock, SimLock};
use super::trace::{Outcome, SyscallArgs, SyscallKind};
use super::world::World;
use crate::clock::{Clock, SimClock};
use crate::errno;
use crate::fs::{DirEntry, FileHandle, FileKind, Fs, LockGuard, Metadata, OpenOptions};

/// Splits an absolute path into its names, as the namespace keeps them
/// ([`stored_name`]); `EINVAL` for relative paths or `..`.
pub(super) fn components(path: &Path) -> io::Result<Vec<Cow<'_, str>>> {
    if !path.is_absolute() {
        return Err(errno::einval());
    }
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => names.push(stored_name(name)?),
            Component::ParentDir | Component::Prefix(_) => return Err(errno::einval()),
        }
    }
    Ok(names)
}

/// How many symbolic links one path resolution may go through (Linux's
/// `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// The path reached through the link that is `path`'s `at`-th name (0-based),
/// pointing to `target`: the target (from the link's directory if it is
/// relative, its `..` taken lexically), then the names of `path` after the
/// link, up to its `count`-th.
fn through_link(path: &Path, at: usize, target: &str, count: usize) -> std::path::PathBuf {
    let mut names = path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name),
        _ => None,
    });
    let mut through = std::path::PathBuf::from("/");
    through.extend(names.by_ref().take(at));
    names.next();
    for part in Path::new(target).components() {
        match part {
            Component::RootDir => through = std::path::PathBuf::from("/"),
            Component::ParentDir => {
                through.pop();
            }
            Component::Normal(name) => through.push(name),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    through.extend(names.take(count.saturating_sub(at + 1)));
    through
}

/// The first of the 128 code points that stand for the bytes 0x80..=0xFF of
/// a name that are not UTF-8 (private use, plane 16).
const RAW_BYTE_BASE: u32 = 0x10_FF80;

/// A name as the namespace keeps it. Linux names are bytes, not text: the
/// bytes of a name that are not UTF-8 are kept one code point each from
/// [`RAW_BYTE_BASE`] on, so the name round-trips exactly (the same bytes
/// open the same file). A name that holds one of those code points itself
/// is refused (`EINVAL`), so no two names share a spelling.
pub(super) fn stored_name(name: &OsStr) -> io::Result<Cow<'_, str>> {
    // Every code point from RAW_BYTE_BASE on is 4 bytes starting with 0xF4:
    // a name without that byte (nearly all) is checked in one scan.
    let holds_raw = |text: &str| text.as_bytes().contains(&0xF4) && text.chars().any(|c| u32::from(c) >= RAW_BYTE_BASE);
    if let Some(text) = name.to_str() {
        return if holds_raw(text) {
            Err(errno::einval())
        } else {
            Ok(Cow::Borrowed(text))
        };
    }
    let mut stored = String::new();
    for chunk in name.as_encoded_bytes().utf8_chunks() {
        if holds_raw(chunk.valid()) {
            return Err(errno::einval());
        }
        stored.push_str(chunk.valid());
        for &byte in chunk.invalid() {
            stored.extend(char::from_u32(RAW_BYTE_BASE + u32::from(byte & 0x7f)));
        }
    }
    Ok(Cow::Owned(stored))
}

/// A kept name as `read_dir` lists it: as Linux's names are listed through
/// Rust's `to_string_lossy` (what [`crate::RealFs`] does), each run of bytes
/// that is not UTF-8 becomes U+FFFD, so the listed name does not open the
/// file.
pub(super) fn listed_name(stored: &str) -> String {
    if stored.chars().all(|c| u32::from(c) < RAW_BYTE_BASE) {
        return stored.to_string();
    }
    let mut bytes = Vec::with_capacity(stored.len());
    for c in stored.chars() {
        match u32::from(c).checked_sub(RAW_BYTE_BASE) {
            Some(low) => bytes.push(0x80 | low as u8),
            None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl World {
    /// Creates an empty file named `name` in `dir` (reached as `path`).
    pub(super) fn create_file(&mut self, dir: Ino, name: &str, path: &Path) -> Ino {
        let device = self.device_of(path);
        let ino = self.alloc_ino();
        self.state.record(PendingOp::Link {
            dir,
            name: name.to_string(),
            ino,
            kind: NewNode::File(device),
        });
        ino
    }

    /// The inode a path names, following symbolic links, the last name's
    /// too (as `open` and `stat` do).
    pub(super) fn resolve(&self, path: &Path) -> io::Result<Ino> {
        let names = components(path)?;
        self.walk(path, &names, true, 0)
    }

    /// The inode a path names, following symbolic links but not the last
    /// name's (as `lstat` does): a link names itself.
    pub(super) fn resolve_no_follow(&self, path: &Path) -> io::Result<Ino> {
        let names = components(path)?;
        self.walk(path, &names, false, 0)
    }

    /// Walks `names` (the first names of `path`'s components) from the
    /// root. A symbolic link met on the way restarts the walk from its
    /// target, with the names after it; at most [`MAX_SYMLINKS`] of them
    /// (`ELOOP`).
    fn walk(&self, path: &Path, names: &[Cow<'_, str>], follow_last: bool, hops: usize) -> io::Result<Ino> {
        let mut dir = ROOT_INO;
        for (i, name) in names.iter().enumerate() {
            let entries = self.state.current.dir(dir).ok_or_else(errno::enotdir)?;
            let ino = *entries.get(name.as_ref()).ok_or_else(errno::enoent)?;
            let last = i + 1 == names.len();
            if (follow_last || !last)
                && let Some(target) = self.state.current.symlink(ino)
            {
                if hops >= MAX_SYMLINKS {
                    return Err(errno::eloop());
                }
                let through = through_link(path, i, target, names.len());
                let names = components(&through)?;
                return self.walk(&through, &names, follow_last, hops + 1);
            }
            dir = ino;
        }
        Ok(dir)
    }

    /// [`World::resolve_parent`] for `open`, which follows a symbolic link
    /// that is the last name to what it names (a file `O_CREAT` creates
    /// there, as Linux does through a dangling link): the directory, the
    /// name in it, and the path followed to them.
    pub(super) fn follow_last_links<'p>(&self, path: &'p Path) -> io::Result<(Ino, String, Cow<'p, Path>)> {
        let mut path = Cow::Borrowed(path);
        for _ in 0..=MAX_SYMLINKS {
            let (dir, name) = self.resolve_parent(&path)?;
            let target = self
                .state
                .current
                .lookup(dir, &name)
                .and_then(|ino| self.state.current.symlink(ino));
            let Some(target) = target else {
                let name = name.into_owned();
                return Ok((dir, name, path));
            };
            let count = components(&path)?.len();
            path = Cow::Owned(through_link(&path, count - 1, target, count));
        }
        Err(errno::eloop())
    }

    /// The directory holding a path's last name, and that name.
    /// [`crate::Fault::Vanish`]: another process unlinks the regular file
    /// at `path`, if there is one, durably (see
    /// [`super::durability::State::unlink_durably`]).
    pub(super) fn vanish(&mut self, path: &Path) {
        let Ok((dir, name)) = self.resolve_parent(path) else {
            return;
        };
        let Some(ino) = self.state.current.lookup(dir, &name) else {
            return;
        };
        if self.state.current.dir(ino).is_none() {
            self.state.unlink_durably(dir, &name);
            self.collect_garbage();
        }
    }

    pub(super) fn resolve_parent<'p>(&self, path: &'p Path) -> io::Result<(Ino, Cow<'p, str>)> {
        let mut names = components(path)?;
        let name = names.pop().ok_or_else(errno::einval)?;
        let dir = self.walk(path, &names, true, 0)?;
        if self.state.current.dir(dir).is_none() {
            return Err(errno::enotdir());
        }
        Ok((dir, name))
    }

    /// The length of the file `path` names, if it names one.
    pub(super) fn file_len_at(&self, path: &Path) -> Option<u64> {
        let ino = self.resolve(path).ok()?;
        Some(self.state.current.file(ino)?.len())
    }

    pub(super) fn is_mount_point(&self, path: &Path) -> bool {
        self.config.mounts.iter().any(|m| m.path == path)
    }

    pub(super) fn node_kind(&self, ino: Ino) -> NewNode {
        match self.state.current.node(ino) {
            Some(Node::File(data)) => NewNode::File(data.device),
            Some(Node::Symlink(target)) => NewNode::Symlink(Arc::clone(target)),
            _ => NewNode::Dir,
        }
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<Box<dyn FileHandle>> {
        let ino = self.syscall(
            SyscallKind::Open,
            &path.display().to_string(),
            |world| SyscallArgs::Open {
                options: *options,
                existing_len: world.file_len_at(path),
            },
            |world, _| {
                options.validate()?;
                let (dir, name, path) = world.follow_last_links(path)?;
                let path = path.as_ref();
                let ino = match world.state.current.lookup(dir, &name) {
                    Some(ino) => {
                        if options.create_new {
                            return Err(errno::eexist());
                        }
                        let file = world.state.current.file(ino).ok_or_else(errno::eisdir)?;
                        if options.truncate && file.len() > 0 {
                            let (device, len) = (file.device, file.len());
                            let mtime = world.clock.now();
                            world.state.record(PendingOp::SetLen {
                                ino,
                                device,
                                len: 0,
                                mtime,
                            });
                            world.account(device, len, 0);
                        }
                        ino
                    }
                    None if options.create || options.create_new => world.create_file(dir, &name, path),
                    None => return Err(errno::enoent()),
                };
                Ok(ino)
            },
            ok,
        )?;
        Ok(self.handle(path, ino, options.write))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.syscall(
            SyscallKind::Rename,
            &from.display().to_string(),
            |world| SyscallArgs::Rename {
                to: to.display().to_string(),
                replaces: world.resolve(to).is_ok(),
            },
            |world, _| {
                let (from_dir, from_name) = world.resolve_parent(from)?;
                let ino = world
                    .state
                    .current
                    .lookup(from_dir, &from_name)
                    .ok_or_else(errno::enoent)?;
                let (to_dir, to_name) = world.resolve_parent(to)?;
                if world.device_of(from) != world.device_of(to) || world.is_mount_point(from) {
                    return Err(errno::exdev());
                }
                let moving_dir = world.state.current.dir(ino).is_some();
                if moving_dir && to.starts_with(from) && to != from {
                    return Err(errno::einval());
                }
                if let Some(target) = world.state.current.lookup(to_dir, &to_name) {
                    if target == ino {
                        return Ok(());
                    }
                    match (moving_dir, world.state.current.dir(target)) {
                        (false, Some(_)) => return Err(errno::eisdir()),
                        (true, None) => return Err(errno::enotdir()),
                        (true, Some(entries)) if !entries.is_empty() => return Err(errno::enotempty()),
                        _ => {}
                    }
                }
                let kind = world.node_kind(ino);
                world.state.record(PendingOp::Rename {
                    ino,
                    kind,
                    from_dir,
                    from_name: from_name.to_string(),
                    to_dir,
                    to_name: to_name.to_string(),
                    from_pending: true,
                    to_pending: true,
                });
                world.collect_garbage();
                Ok(())
            },
            ok,
        )
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.syscall(
            SyscallKind::HardLink,
            &original.display().to_string(),
            |_| SyscallArgs::HardLink {
                link: link.display().to_string(),
            },
            |world, _| {
                let ino = world.resolve(original)?;
                let device = match world.state.current.node(ino) {
                    Some(Node::File(data)) => data.device,
                    _ => return Err(errno::eperm()),
                };
                let (dir, name) = world.resolve_parent(link)?;
                if world.state.current.lookup(dir, &name).is_some() {
                    return Err(errno::eexist());
                }
                if world.device_of(original) != world.device_of(link) {
                    return Err(errno::exdev());
                }
                world.state.record(PendingOp::Link {
                    dir,
                    name: name.to_string(),
                    ino,
                    kind: NewNode::File(device),
                });
                Ok(())
            },
            ok,
        )
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::RemoveFile, path, |world| {
            let (dir, name) = world.resolve_parent(path)?;
            let ino = world.state.current.lookup(dir, &name).ok_or_else(errno::enoent)?;
            if world.state.current.dir(ino).is_some() {
                return Err(errno::eisdir());
            }
            world.state.record(PendingOp::Unlink {
                dir,
                name: name.to_string(),
            });
            world.collect_garbage();
            Ok(())
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::CreateDir, path, |world| {
            let (dir, name) = world.resolve_parent(path)?;
            if world.state.current.lookup(dir, &name).is_some() {
                return Err(errno::eexist());
            }
            let ino = world.alloc_ino();
            world.state.record(PendingOp::Link {
                dir,
                name: name.to_string(),
                ino,
                kind: NewNode::Dir,
            });
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::RemoveDir, path, |world| {
            let (dir, name) = world.resolve_parent(path)?;
            let ino = world.state.current.lookup(dir, &name).ok_or_else(errno::enoent)?;
            let entries = world.state.current.dir(ino).ok_or_else(errno::enotdir)?;
            if !entries.is_empty() {
                return Err(errno::enotempty());
            }
            if world.is_mount_point(path) {
                return Err(errno::ebusy());
            }
            world.state.record(PendingOp::Unlink {
                dir,
                name: name.to_string(),
            });
            world.collect_garbage();
            Ok(())
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.syscall(
            SyscallKind::ReadDir,
            &path.display().to_string(),
            |_| SyscallArgs::None,
            |world, _| {
                let ino = world.resolve(path)?;
                let entries = world.state.current.dir(ino).ok_or_else(errno::enotdir)?;
                let mut listed: Vec<DirEntry> = entries
                    .iter()
                    .map(|(name, child)| DirEntry {
                        name: listed_name(name),
                        kind: match world.state.current.node(*child) {
                            Some(Node::Dir(_)) => FileKind::Dir,
                            Some(Node::Symlink(_)) => FileKind::Other,
                            _ => FileKind::File,
                        },
                    })
                    .collect();
                // In the order `RealFs` lists, by the names as listed.
                listed.sort();
                Ok(listed)
            },
            |entries: &Vec<DirEntry>| Outcome::Count(entries.len() as u64),
        )
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        self.path_call(SyscallKind::Metadata, path, |world| {
            // As `RealFs`, `lstat`: a symbolic link describes itself.
            let ino = world.resolve_no_follow(path)?;
            Ok(match world.state.current.node(ino) {
                Some(Node::File(data)) => Metadata {
                    kind: FileKind::File,
                    len: data.len(),
                    modified: data.mtime,
                    links: world.state.current.link_count(ino),
                },
                Some(Node::Symlink(target)) => Metadata {
                    kind: FileKind::Other,
                    len: target.len() as u64,
                    modified: SimClock::epoch(),
                    links: 1,
                },
                _ => Metadata {
                    kind: FileKind::Dir,
                    len: 0,
                    modified: SimClock::epoch(),
                    links: 1,
                },
            })
        })
    }

    /// Read off the page cache; not traced and not a fault point (only a
    /// FUSE mount serving a black-box store asks, for the kernel).
    fn read_link(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        let world = self.world();
        let ino = world.resolve_no_follow(path)?;
        let target = world.state.current.symlink(ino).ok_or_else(errno::einval)?;
        Ok(std::path::PathBuf::from(target))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::SyncDir, path, |world| {
            let ino = world.resolve(path)?;
            if world.state.current.dir(ino).is_none() {
                return Err(errno::enotdir());
            }
            world.state.sync_dir(ino);
            Ok(())
        })
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let pid = self.pid;
        let (ino, guard) = self.syscall(
            SyscallKind::Lock,
            &path.display().to_string(),
            |_| SyscallArgs::ExclusiveLock,
            |world, _| {
                let (dir, name) = world.resolve_parent(path)?;
                // A directory is locked as it is (flock works on a directory's
                // descriptor); a missing name becomes an empty file.
                let ino = match world.state.current.lookup(dir, &name) {
                    Some(ino) => ino,
                    None => world.create_file(dir, &name, path),
                };
                if world.file_locks.contains_key(&ino) {
                    return Err(errno::ewouldblock());
                }
                let guard = world.next_handle;
                world.next_handle += 1;
                world.file_locks.insert(ino, FileLock { pid, guard });
                Ok((ino, guard))
            },
            ok,
        )?;
        Ok(Box::new(SimLock {
            world: Arc::clone(&self.world),
            path: path.to_path_buf(),
            ino,
            guard,
        }))
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        self.syscall(
            SyscallKind::FreeSpace,
            &path.display().to_string(),
            |_| SyscallArgs::None,
            |world, _| {
                world.resolve(path)?;
                let device = world.device_of(path);
                let used = world.used.get(&device).copied().unwrap_or(0);
                Ok(world.capacity(device).saturating_sub(used))
            },
            |free: &u64| Outcome::Count(*free),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_name_round_trips_by_its_bytes_and_cannot_be_spelt_twice() {
        let raw = OsStr::from_bytes(b"a\xe9b\xff\xfe.md");
        let stored = stored_name(raw).expect("any bytes but / and NUL");
        assert_ne!(stored, "a\u{FFFD}b\u{FFFD}\u{FFFD}.md");
        assert_eq!(listed_name(&stored), String::from_utf8_lossy(raw.as_bytes()));
        assert_eq!(stored_name(OsStr::new("plain.md")).expect("utf-8"), "plain.md");
        // A UTF-8 name that holds the code points kept for raw bytes would
        // be the same name as a raw one: refused.
        let taken = format!("a{}b", char::from_u32(RAW_BYTE_BASE + 0x69).expect("a char"));
        assert_eq!(
            stored_name(OsStr::new(&taken)).expect_err("refused").raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}
