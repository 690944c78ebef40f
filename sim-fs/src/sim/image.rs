//! A filesystem image: inodes, directory entries and file contents.
//!
//! Contents are kept in shared, copy-on-write pages inside persistent maps
//! (`imbl`), so cloning an image is O(1) and a write copies only the pages it
//! touches. [`super::durability`] keeps two images (what the page cache holds
//! and what the disk holds) and the operations between them.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use imbl::{OrdMap, Vector};

/// Size of a content page. Independent of the sector size used for tearing.
pub(crate) const PAGE_SIZE: usize = 4096;

type Page = [u8; PAGE_SIZE];

static ZERO_PAGE: LazyLock<Arc<Page>> = LazyLock::new(|| Arc::new([0u8; PAGE_SIZE]));

/// An inode number. The root directory is [`ROOT_INO`].
pub(crate) type Ino = u64;

/// The root directory's inode.
pub(crate) const ROOT_INO: Ino = 1;

/// A device (mount) index; 0 is the root device.
pub(crate) type DeviceId = u32;

/// A 64-bit key of a machine state, mixed a word at a time: equal states get
/// equal keys, and different ones (with overwhelming probability) different
/// keys. For deduplicating states within one run, not for storing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StateKey(u64);

impl StateKey {
    pub(crate) fn new() -> Self {
        StateKey(0x243F_6A88_85A3_08D3)
    }

    /// Mixes in one word (a multiply-xorshift round).
    pub(crate) fn word(&mut self, word: u64) {
        let mixed = (self.0 ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = mixed ^ (mixed >> 29);
    }

    /// Mixes in a string, length first.
    pub(crate) fn text(&mut self, text: &str) {
        self.word(text.len() as u64);
        for chunk in text.as_bytes().chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
    }

    /// Mixes in bytes, length first.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        mix_bytes(self, bytes);
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

/// Mixes `bytes` into `key`, a word at a time.
fn mix_bytes(key: &mut StateKey, bytes: &[u8]) {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        key.word(u64::from_le_bytes(word.try_into().unwrap_or_default()));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        key.word(u64::from_le_bytes(word));
    }
}

/// Content pages' hashes, remembered by page: images of one run share
/// most of their pages (copy on write), so a page is hashed once. Holds
/// each page it has hashed (so no other page can take its address) and
/// forgets them all once it holds [`PageHashes::LIMIT`].
#[derive(Debug, Default)]
pub struct PageHashes {
    known: std::collections::BTreeMap<usize, (Arc<Page>, u64)>,
}

impl PageHashes {
    /// Pages remembered at most (16 MiB of content).
    const LIMIT: usize = 4096;

    fn hash(&mut self, page: &Arc<Page>) -> u64 {
        let address = Arc::as_ptr(page) as usize;
        if let Some((_, hash)) = self.known.get(&address) {
            return *hash;
        }
        let mut key = StateKey::new();
        mix_bytes(&mut key, &page[..]);
        let hash = key.finish();
        if self.known.len() >= Self::LIMIT {
            self.known.clear();
        }
        self.known.insert(address, (Arc::clone(page), hash));
        hash
    }
}

/// A regular file's contents and metadata.
#[derive(Clone, Debug)]
pub(crate) struct FileData {
    len: u64,
    pages: Vector<Arc<Page>>,
    pub(crate) mtime: SystemTime,
    pub(crate) device: DeviceId,
}

impl FileData {
    pub(crate) fn new(device: DeviceId, mtime: SystemTime) -> Self {
        Self {
            len: 0,
            pages: Vector::new(),
            mtime,
            device,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads into `buf` from `offset`; returns the count (0 past the end).
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> usize {
        if offset >= self.len {
            return 0;
        }
        let available = usize::try_from(self.len - offset).unwrap_or(usize::MAX);
        let count = buf.len().min(available);
        let mut done = 0;
        while done < count {
            let pos = offset + done as u64;
            let page = (pos / PAGE_SIZE as u64) as usize;
            let within = (pos % PAGE_SIZE as u64) as usize;
            let take = (PAGE_SIZE - within).min(count - done);
            buf[done..done + take].copy_from_slice(&self.pages[page][within..within + take]);
            done += take;
        }
        count
    }

    /// Mixes the length, device, modification time and content into `key`
    /// (see [`StateKey`]), each page by its hash in `pages`.
    pub(crate) fn mix_into(&self, key: &mut StateKey, pages: &mut PageHashes) {
        key.word(self.len);
        key.word(u64::from(self.device));
        let mtime = self.mtime.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        key.word(mtime.as_secs());
        key.word(u64::from(mtime.subsec_nanos()));
        for page in &self.pages {
            key.word(pages.hash(page));
        }
    }

    /// Mixes the length and content into `key`: byte by byte, or, given
    /// `pages`, each whole page as its hash remembered there (outcomes of
    /// one power cut share most of their pages). Either way two files mix
    /// alike exactly when their lengths and contents are equal (the values
    /// differ between the two ways).
    pub(crate) fn mix_content_into(&self, key: &mut StateKey, mut pages: Option<&mut PageHashes>) {
        key.word(self.len);
        let mut left = usize::try_from(self.len).unwrap_or(usize::MAX);
        for page in &self.pages {
            let take = left.min(PAGE_SIZE);
            match pages.as_deref_mut() {
                Some(pages) if take == PAGE_SIZE => key.word(pages.hash(page)),
                _ => mix_bytes(key, &page[..take]),
            }
            left -= take;
        }
    }

    /// The whole content as a vector (for tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; usize::try_from(self.len).unwrap_or(usize::MAX)];
        let read = self.read_at(&mut out, 0);
        out.truncate(read);
        out
    }

    /// Writes `data` at `offset`, zero-filling any gap and extending the file.
    pub(crate) fn write_at(&mut self, data: &[u8], offset: u64) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        if end > self.len {
            self.set_len(end);
        }
        let mut done = 0;
        while done < data.len() {
            let pos = offset + done as u64;
            let page = (pos / PAGE_SIZE as u64) as usize;
            let within = (pos % PAGE_SIZE as u64) as usize;
            let take = (PAGE_SIZE - within).min(data.len() - done);
            let slot = self.pages.get_mut(page).expect("set_len made room for the write");
            Arc::make_mut(slot)[within..within + take].copy_from_slice(&data[done..done + take]);
            done += take;
        }
    }

    /// Truncates or zero-extends to `len`.
    pub(crate) fn set_len(&mut self, len: u64) {
        let pages_needed = usize::try_from(len.div_ceil(PAGE_SIZE as u64)).unwrap_or(usize::MAX);
        if len < self.len {
            self.pages.truncate(pages_needed);
            // Zero the tail of the last kept page so a later extension reads zeros.
            let within = (len % PAGE_SIZE as u64) as usize;
            if within != 0 {
                let last = self.pages.back_mut().expect("a partial page is kept");
                Arc::make_mut(last)[within..].fill(0);
            }
        } else {
            while self.pages.len() < pages_needed {
                self.pages.push_back(Arc::clone(&ZERO_PAGE));
            }
        }
        self.len = len;
    }
}

/// An inode.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A regular file.
    File(FileData),
    /// A directory: name → inode, in name order.
    Dir(OrdMap<String, Ino>),
    /// A symbolic link: the path it points to, as given (relative paths
    /// resolve from the link's directory). Only the harness makes one
    /// ([`crate::SimFs::plant_symlink`]).
    Symlink(Arc<str>),
}

/// What kind of node a link creates when its inode is not in an image yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum NewNode {
    /// An empty file on the given device.
    File(DeviceId),
    /// An empty directory.
    Dir,
    /// A symbolic link to this path (its target is written with its name).
    Symlink(Arc<str>),
}

/// A set of inodes reachable from [`ROOT_INO`] through directory entries, plus
/// orphans that are still referenced elsewhere (open handles, or not yet
/// collected).
#[derive(Clone, Debug)]
pub(crate) struct Image {
    nodes: OrdMap<Ino, Node>,
}

impl Image {
    /// An image with an empty root directory.
    pub(crate) fn new() -> Self {
        let mut nodes = OrdMap::new();
        nodes.insert(ROOT_INO, Node::Dir(OrdMap::new()));
        Self { nodes }
    }

    pub(crate) fn node(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub(crate) fn file(&self, ino: Ino) -> Option<&FileData> {
        match self.nodes.get(&ino) {
            Some(Node::File(data)) => Some(data),
            _ => None,
        }
    }

    pub(crate) fn dir(&self, ino: Ino) -> Option<&OrdMap<String, Ino>> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(entries)) => Some(entries),
            _ => None,
        }
    }

    /// The target of the symbolic link `ino`, if it is one.
    pub(crate) fn symlink(&self, ino: Ino) -> Option<&str> {
        match self.nodes.get(&ino) {
            Some(Node::Symlink(target)) => Some(target),
            _ => None,
        }
    }

    pub(crate) fn lookup(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.dir(dir).and_then(|entries| entries.get(name).copied())
    }

    /// The file `ino`, created empty (on `device`) if this image lacks it.
    pub(crate) fn file_mut(&mut self, ino: Ino, device: DeviceId, mtime: SystemTime) -> &mut FileData {
        let node = self
            .nodes
            .entry(ino)
            .or_insert_with(|| Node::File(FileData::new(device, mtime)));
        if !matches!(node, Node::File(_)) {
            *node = Node::File(FileData::new(device, mtime));
        }
        match node {
            Node::File(data) => data,
            Node::Dir(_) | Node::Symlink(_) => unreachable!("replaced above"),
        }
    }

    /// The directory `ino`, created empty if this image lacks it.
    pub(crate) fn dir_mut(&mut self, ino: Ino) -> &mut OrdMap<String, Ino> {
        let node = self.nodes.entry(ino).or_insert_with(|| Node::Dir(OrdMap::new()));
        if !matches!(node, Node::Dir(_)) {
            *node = Node::Dir(OrdMap::new());
        }
        match node {
            Node::Dir(entries) => entries,
            Node::File(_) | Node::Symlink(_) => unreachable!("replaced above"),
        }
    }

    /// Makes sure `ino` exists, creating it as `kind` says if missing.
    pub(crate) fn ensure(&mut self, ino: Ino, kind: &NewNode, mtime: SystemTime) {
        if !self.nodes.contains_key(&ino) {
            let node = match kind {
                NewNode::File(device) => Node::File(FileData::new(*device, mtime)),
                NewNode::Dir => Node::Dir(OrdMap::new()),
                NewNode::Symlink(target) => Node::Symlink(Arc::clone(target)),
            };
            self.nodes.insert(ino, node);
        }
    }

    /// Replaces (or inserts) a node wholesale.
    pub(crate) fn put(&mut self, ino: Ino, node: Node) {
        self.nodes.insert(ino, node);
    }

    /// Whether `ino` exists.
    pub(crate) fn contains(&self, ino: Ino) -> bool {
        self.nodes.contains_key(&ino)
    }

    /// Removes `ino` (no directory entry may name it).
    pub(crate) fn remove(&mut self, ino: Ino) {
        self.nodes.remove(&ino);
    }

    /// How many directory entries name `ino`.
    pub(crate) fn link_count(&self, ino: Ino) -> u64 {
        self.nodes
            .values()
            .filter_map(|node| match node {
                Node::Dir(entries) => Some(entries.values().filter(|&&child| child == ino).count() as u64),
                Node::File(_) | Node::Symlink(_) => None,
            })
            .sum()
    }

    /// Removes every inode not reachable from the root and not in `keep`.
    pub(crate) fn collect_garbage(&mut self, keep: &dyn Fn(Ino) -> bool) {
        let mut reachable = std::collections::BTreeSet::new();
        let mut stack = vec![ROOT_INO];
        while let Some(ino) = stack.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(entries) = self.dir(ino) {
                stack.extend(entries.values().copied());
            }
        }
        let dead: Vec<Ino> = self
            .nodes
            .keys()
            .copied()
            .filter(|ino| !reachable.contains(ino) && !keep(*ino))
            .collect();
        for ino in dead {
            self.nodes.remove(&ino);
        }
    }

    /// Bytes used by files on `device`.
    pub(crate) fn used_bytes(&self, device: DeviceId) -> u64 {
        self.nodes
            .values()
            .filter_map(|node| match node {
                Node::File(data) if data.device == device => Some(data.len()),
                _ => None,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileData {
        FileData::new(0, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn writes_across_pages_read_back() {
        let mut f = file();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        f.write_at(&data, 100);
        assert_eq!(f.len(), 10_100);
        let all = f.to_vec();
        assert!(all[..100].iter().all(|&b| b == 0));
        assert_eq!(&all[100..], &data[..]);
    }

    #[test]
    fn truncate_then_extend_reads_zeros() {
        let mut f = file();
        f.write_at(&[7u8; 5000], 0);
        f.set_len(10);
        f.set_len(6000);
        let all = f.to_vec();
        assert_eq!(&all[..10], &[7u8; 10]);
        assert!(
            all[10..].iter().all(|&b| b == 0),
            "bytes past a truncation must read as zeros"
        );
    }

    #[test]
    fn clones_share_pages_until_written() {
        let mut a = file();
        a.write_at(&[1u8; PAGE_SIZE * 3], 0);
        let b = a.clone();
        a.write_at(&[2u8; 1], PAGE_SIZE as u64);
        assert!(Arc::ptr_eq(&a.pages[0], &b.pages[0]));
        assert!(!Arc::ptr_eq(&a.pages[1], &b.pages[1]));
        assert_eq!(b.to_vec(), vec![1u8; PAGE_SIZE * 3]);
        assert_ne!(a.to_vec(), b.to_vec());
    }

    #[test]
    fn garbage_collection_keeps_reachable_and_kept_inodes() {
        let mut image = Image::new();
        image.dir_mut(ROOT_INO).insert("a".into(), 2);
        image.file_mut(2, 0, SystemTime::UNIX_EPOCH);
        image.file_mut(3, 0, SystemTime::UNIX_EPOCH);
        image.file_mut(4, 0, SystemTime::UNIX_EPOCH);
        image.collect_garbage(&|ino| ino == 4);
        assert!(image.file(2).is_some());
        assert!(image.file(3).is_none());
        assert!(image.file(4).is_some());
    }
}
