//! Snapshots: a simulated machine's state at one moment ([`SimSnapshot`]),
//! enough to derive the disk a power cut then would leave, and the recording
//! of one snapshot per syscall index ([`SimFs::record_snapshots`]).
//!
//! The state is held in persistent (structurally shared) maps, so a snapshot
//! is O(1) and the disk after a power cut at syscall k can be derived from the
//! snapshot taken at k, without re-running the workload up to k.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::SimFs;
use super::config::SimConfig;
use super::durability::{PendingOp, State};
use super::halt::{HaltKind, Halted};
use super::image::{FileData, Image, Ino, Node, PageHashes, ROOT_INO, StateKey};
use super::persistence::{CrashChoice, PersistenceModel};
use super::seeds::mix;
use super::world::{Processes, World, lock_world};
use crate::clock::{Clock, SimClock};

/// A simulated machine's state at one moment: enough to derive the disk a
/// power cut at that moment would leave. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SimSnapshot {
    pub(super) config: Arc<SimConfig>,
    pub(super) state: State,
    /// The index the next syscall would have had.
    pub(super) syscall_index: u64,
    pub(super) boot: u32,
    pub(super) now: SystemTime,
    pub(super) next_ino: Ino,
    /// The processes then (for [`SimSnapshot::resume_killed`]).
    pub(super) processes: Processes,
}

impl SimSnapshot {
    /// The index of the syscall this snapshot was taken before.
    pub fn syscall_index(&self) -> u64 {
        self.syscall_index
    }

    /// How many operations were not yet durable.
    pub fn pending_ops(&self) -> usize {
        self.state.pending.len()
    }

    /// Descriptions of the pending operations, in issue order.
    pub fn describe_pending(&self) -> Vec<String> {
        self.state.pending.iter().map(PendingOp::describe).collect()
    }

    /// One outcome of a power cut here under `model`, drawn from `seed`
    /// mixed with this snapshot's syscall index (so points do not share coin
    /// flips).
    pub fn sample_crash(&self, model: PersistenceModel, seed: u64) -> CrashChoice {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, self.syscall_index, u64::from(self.boot)));
        model.sample(&self.state.pending, &mut rng)
    }

    /// A key of the machine a power cut here under `model` with outcome
    /// `choice` boots: every name, inode, length, device, modification time
    /// and byte of the disk it leaves, and the sectors that have gone bad.
    /// Two outcomes (of any snapshots of one run) with equal keys boot
    /// machines whose disks are the same; only the clock and the syscall
    /// numbering may differ. For deduplicating post-fault states.
    /// `pages` remembers content pages' hashes from one call to the next.
    pub fn crash_state_key(&self, model: PersistenceModel, choice: &CrashChoice, pages: &mut PageHashes) -> u64 {
        let image = self.state.crash_image(choice, model.sector_size());
        let mut key = StateKey::new();
        mix_image_into(&image, &mut key, pages);
        mix_bad_sectors_into(&self.state, &mut key);
        key.finish()
    }

    /// Every outcome of a power cut here under `model` that leaves a distinct
    /// disk, or `None` if there are more than `limit` outcomes to try.
    pub fn distinct_crashes(&self, model: PersistenceModel, limit: usize) -> Option<Vec<CrashChoice>> {
        let all = model.enumerate(&self.state.pending, limit)?;
        let mut seen = BTreeSet::new();
        let mut pages = PageHashes::default();
        Some(
            all.into_iter()
                .filter(|choice| {
                    let image = self.state.crash_image(choice, model.sector_size());
                    seen.insert(content_key(&image, &mut pages))
                })
                .collect(),
        )
    }

    /// Boots a new machine, configured as the one the snapshot was taken on,
    /// from the disk a power cut here leaves under `choice` (torn writes at
    /// `model`'s sector size). Its trace starts empty, its syscall indices
    /// continue from this snapshot's.
    pub fn boot(&self, model: PersistenceModel, choice: &CrashChoice) -> SimFs {
        let image = self.state.crash_image(choice, model.sector_size());
        let clock = SimClock::new();
        clock.advance(self.now.duration_since(SimClock::epoch()).unwrap_or_default());
        let mut world = World::new(Arc::clone(&self.config), clock);
        world.state = State::from_image(image, self.state.bad_sectors.clone());
        world.boot = self.boot + 1;
        world.syscall_index = self.syscall_index;
        world.next_ino = self.next_ino;
        world.refresh_used();
        let world = Arc::new(Mutex::new(world));
        let pid = lock_world(&world).spawn();
        SimFs { world, pid }
    }

    /// The machine as a [`crate::Fault::ProcessCrash`] of process `pid` at
    /// the syscall this snapshot was taken before leaves it, without
    /// running anything up to it: the page cache and every write not yet
    /// durable as they were, `pid` dead with its open files and locks gone,
    /// every other process as it was; the clock and the syscall numbering
    /// go on from the killed syscall. Its trace starts empty. Returns
    /// `pid`'s handle, dead ([`SimFs::spawn_process`] starts another).
    pub fn resume_killed(&self, pid: u32) -> SimFs {
        let clock = SimClock::new();
        clock.advance(self.now.duration_since(SimClock::epoch()).unwrap_or_default());
        let mut world = World::new(Arc::clone(&self.config), clock);
        world.state = self.state.clone();
        world.boot = self.boot;
        world.syscall_index = self.syscall_index + 1;
        world.next_ino = self.next_ino;
        world.restore_processes(self.processes.clone());
        world.refresh_used();
        let halt = Halted {
            kind: HaltKind::ProcessCrash,
            at_syscall: self.syscall_index,
        };
        world.kill(pid, halt);
        SimFs {
            world: Arc::new(Mutex::new(world)),
            pid,
        }
    }
}

/// Mixes into `key` every name, inode, length, device, modification time
/// and byte reachable from `image`'s root.
fn mix_image_into(image: &Image, key: &mut StateKey, pages: &mut PageHashes) {
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        key.text(&path);
        key.word(ino);
        match image.node(ino) {
            Some(Node::Dir(entries)) => {
                key.word(1);
                for (name, child) in entries.iter() {
                    stack.push((format!("{path}/{name}"), *child));
                }
            }
            Some(Node::File(data)) => {
                key.word(2);
                data.mix_into(key, pages);
            }
            Some(Node::Symlink(target)) => {
                key.word(3);
                key.text(target);
            }
            None => key.word(0),
        }
    }
}

/// Mixes into `key` the sectors that have gone bad.
fn mix_bad_sectors_into(state: &State, key: &mut StateKey) {
    for &(ino, sector) in &state.bad_sectors {
        key.word(ino);
        key.word(sector);
    }
}

/// Mixes into `key` everything of `state` a later syscall or power cut can
/// tell apart: the page cache, the disk, each write not yet durable (in
/// order, with its bytes), the files whose dirty data a failed sync
/// dropped, and the bad sectors.
fn mix_state_into(state: &State, key: &mut StateKey, pages: &mut PageHashes) {
    mix_image_into(&state.current, key, pages);
    mix_image_into(&state.durable, key, pages);
    key.word(state.pending.len() as u64);
    for op in &state.pending {
        op.mix_into(key);
    }
    for &ino in &state.dropped_dirty {
        key.word(ino);
    }
    mix_bad_sectors_into(state, key);
}

impl SimFs {
    /// A key of this machine's whole state now: what
    /// [`SimSnapshot::crash_state_key`] keys (for the page cache and the
    /// disk both), every write not yet durable, the processes, their open
    /// files and locks, and each device's capacity. Two machines (of any
    /// runs of one configuration) with equal keys behave the same from here
    /// on; only the clock and the syscall numbering may differ. For
    /// deduplicating post-fault states that are not power cuts, and the
    /// checks after a recovery.
    pub fn state_key(&self, pages: &mut PageHashes) -> u64 {
        let world = self.world();
        let mut key = StateKey::new();
        mix_state_into(&world.state, &mut key, pages);
        world.mix_processes_into(&mut key);
        key.word(u64::from(world.boot));
        // A device's room is the machine's too (a harness may give a full
        // device room between two runs of one configuration).
        key.word(world.config.root_capacity_bytes);
        for mount in &world.config.mounts {
            key.text(&mount.path.to_string_lossy());
            key.word(mount.capacity_bytes);
        }
        key.finish()
    }
}

impl World {
    /// A snapshot now, indexed by [`World::snapshot_index`].
    pub(super) fn snapshot(&self) -> SimSnapshot {
        SimSnapshot {
            config: Arc::clone(&self.config),
            state: self.state.clone(),
            syscall_index: self.snapshot_index(),
            boot: self.boot,
            now: self.clock.now(),
            next_ino: self.next_ino,
            processes: self.processes(),
        }
    }

    /// The index a snapshot taken now is filed under: the next syscall's, or
    /// after a power cut the syscall the power went at (the state is the one
    /// before that syscall), so it equals the snapshot a recording run took
    /// at that index.
    pub(super) fn snapshot_index(&self) -> u64 {
        self.power_cut.map_or(self.syscall_index, |c| c.halt.at_syscall)
    }

    /// If snapshots are being recorded, keeps a snapshot of the state now
    /// filed under `index`. Every syscall index gets one: the dispatcher
    /// files it under the index it just gave out, an unlock on a guard's drop
    /// under [`World::snapshot_index`] (which after a power cut repeats the
    /// index the power went at).
    pub(super) fn record_snapshot(&mut self, index: u64) {
        if self.snapshots.is_none() {
            return;
        }
        let snapshot = SimSnapshot {
            syscall_index: index,
            ..self.snapshot()
        };
        if let Some(list) = self.snapshots.as_mut() {
            list.push(snapshot);
        }
    }
}

/// A hash of the names and contents reachable from the root (equal images,
/// equal hashes; for comparing images within a run).
pub(super) fn fingerprint(image: &Image) -> u64 {
    mix_names_and_contents(image, |data, key| data.mix_content_into(key, None))
}

/// A key of the names and contents reachable from the root that tells
/// images apart as [`fingerprint`] does (its values differ), hashing each
/// whole page once per `pages`.
fn content_key(image: &Image, pages: &mut PageHashes) -> u64 {
    mix_names_and_contents(image, |data, key| data.mix_content_into(key, Some(&mut *pages)))
}

fn mix_names_and_contents(image: &Image, mut mix_file: impl FnMut(&FileData, &mut StateKey)) -> u64 {
    let mut key = StateKey::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        match image.node(ino) {
            Some(Node::Dir(entries)) => {
                key.word(1);
                key.text(&path);
                for (name, child) in entries.iter() {
                    stack.push((format!("{path}/{name}"), *child));
                }
            }
            Some(Node::File(data)) => {
                key.word(2);
                key.text(&path);
                mix_file(data, &mut key);
            }
            Some(Node::Symlink(target)) => {
                key.word(3);
                key.text(&path);
                key.text(target);
            }
            None => {}
        }
    }
    key.finish()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{FileHandleExt, Fs, FsExt, OpenOptions, PersistenceModel};

    /// `content_key` (whole pages hashed once, for deduplicating power
    /// cuts) must tell disks apart exactly as `fingerprint` (every byte)
    /// does: every pair of outcomes of a power cut over unsynced writes
    /// that share pages, overwrite part of a page, extend and cut files,
    /// and write the same bytes to two files.
    #[test]
    fn the_page_hashed_key_tells_disks_apart_as_the_fingerprint_does() {
        let fs = SimFs::new(SimConfig::with_seed(7));
        fs.create_dir_all_durable(Path::new("/d")).expect("dir");
        let page = |fill: u8| vec![fill; 4096];
        let a = fs.open(Path::new("/d/a"), &OpenOptions::create()).expect("a");
        a.write_all_at(&[page(1), page(2), page(3)].concat(), 0).expect("write");
        a.sync_all().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        // Unsynced from here: the outcomes differ in which of these survive.
        a.write_all_at(&[9; 100], 4096 + 10).expect("part of a page");
        a.write_all_at(&page(2), 8192).expect("a page as the one before it");
        let b = fs.open(Path::new("/d/b"), &OpenOptions::create()).expect("b");
        b.write_all_at(&[page(1), page(2)].concat(), 0)
            .expect("the same bytes as a's");
        a.set_len(4096 * 2 + 7).expect("cut mid-page");
        a.write_all_at(&[7; 3], 4096 * 2)
            .expect("within the last page, the length unchanged");
        b.write_all_at(&[5; 3], 4096 * 2).expect("extend by a little");
        let snapshot = fs.snapshot();
        let pending = snapshot.describe_pending();
        for model in [PersistenceModel::Prefix, PersistenceModel::AnySubset] {
            let choices = model
                .enumerate(&snapshot.state.pending, 1 << 16)
                .unwrap_or_else(|| panic!("{model}: too many outcomes of {pending:?}"));
            let mut pages = PageHashes::default();
            let keyed: Vec<(u64, u64)> = choices
                .iter()
                .map(|choice| {
                    let image = snapshot.state.crash_image(choice, model.sector_size());
                    (content_key(&image, &mut pages), fingerprint(&image))
                })
                .collect();
            let distinct = keyed.iter().map(|(_, f)| f).collect::<BTreeSet<_>>().len();
            assert!(distinct > 4, "{model}: only {distinct} distinct disks");
            for (i, (key_i, print_i)) in keyed.iter().enumerate() {
                for (key_j, print_j) in &keyed[i + 1..] {
                    assert_eq!(key_i == key_j, print_i == print_j, "{model}: outcomes {i} and another");
                }
            }
        }
    }
}
