//! Persistence models: which unsynced operations survive a power cut.
//!
//! At a power cut the disk holds the durable image plus some of the pending
//! operations (see [`super::durability`]). Which ones is the least a real
//! device and filesystem promise, and they promise different things, so the
//! choice is a named model:
//!
//! | model | what survives | stands for |
//! |---|---|---|
//! | [`PersistenceModel::NothingUnsynced`] | no pending op | the strictest reading of POSIX: only what was fsynced |
//! | [`PersistenceModel::Prefix`] | the first k pending ops, in issue order | a filesystem that journals in order (ext4 `data=journal`) |
//! | [`PersistenceModel::AnySubset`] | any subset, in issue order | a disk cache that reorders writes |
//! | [`PersistenceModel::Torn`] | any subset, and each surviving write may be torn: some of its sectors new, others old | a device without atomic sector groups |
//! | [`PersistenceModel::Zeroed`] | every name and length change, no unsynced data: a region a write extended reads as zeros | metadata journaled, data not written (ext4 `data=writeback`, delayed allocation: the zero-filled files after a rename without fsync) |
//!
//! A [`CrashChoice`] is one concrete outcome: a [`Fate`] per pending op. Choices
//! are drawn from an RNG seeded per crash point (so two points never share
//! their coin flips), or enumerated exhaustively where the pending set is small.

use std::fmt;

use rand::Rng;

use super::durability::PendingOp;

/// Which unsynced operations may survive a power cut. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PersistenceModel {
    /// Nothing that was not made durable survives.
    NothingUnsynced,
    /// A prefix of the pending operations, in the order they were issued.
    Prefix,
    /// Any subset of the pending operations.
    AnySubset,
    /// Any subset, and each surviving write may be torn at `sector_size`
    /// granularity (some sectors new, the others as they were).
    Torn {
        /// Bytes per sector; at least 1. 512 models a classic disk.
        sector_size: u32,
    },
    /// Every metadata operation survives (names, unlinks, renames, length
    /// changes, the length a write extended a file to) and no unsynced data
    /// does: an extended region reads as zeros. One outcome per crash point.
    Zeroed,
}

impl PersistenceModel {
    /// Every model, with 512-byte sectors for [`PersistenceModel::Torn`].
    pub const ALL: [PersistenceModel; 5] = [
        PersistenceModel::NothingUnsynced,
        PersistenceModel::Prefix,
        PersistenceModel::AnySubset,
        PersistenceModel::Torn { sector_size: 512 },
        PersistenceModel::Zeroed,
    ];

    /// The sector size writes are torn at (the whole write is one "sector"
    /// for models that never tear).
    pub fn sector_size(&self) -> u64 {
        match self {
            PersistenceModel::Torn { sector_size } => u64::from((*sector_size).max(1)),
            _ => 512,
        }
    }

    /// Parses the names printed by `Display` (`nothing`, `prefix`, `subset`,
    /// `torn`, `torn-4096`, `zeroed`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "nothing" => Some(Self::NothingUnsynced),
            "zeroed" => Some(Self::Zeroed),
            "prefix" => Some(Self::Prefix),
            "subset" => Some(Self::AnySubset),
            "torn" => Some(Self::Torn { sector_size: 512 }),
            other => {
                let size = other.strip_prefix("torn-")?.parse::<u32>().ok()?;
                (size > 0).then_some(Self::Torn { sector_size: size })
            }
        }
    }

    /// Draws one outcome for `pending`.
    pub(crate) fn sample(&self, pending: &imbl::Vector<PendingOp>, rng: &mut impl Rng) -> CrashChoice {
        let n = pending.len();
        let fates = match self {
            PersistenceModel::NothingUnsynced => vec![Fate::Lost; n],
            PersistenceModel::Zeroed => return Self::zeroed(pending),
            PersistenceModel::Prefix => {
                let kept = rng.random_range(0..=n);
                (0..n).map(|i| if i < kept { Fate::Kept } else { Fate::Lost }).collect()
            }
            PersistenceModel::AnySubset => (0..n)
                .map(|_| if rng.random_bool(0.5) { Fate::Kept } else { Fate::Lost })
                .collect(),
            PersistenceModel::Torn { .. } => {
                let sector = self.sector_size();
                pending
                    .iter()
                    .map(|op| {
                        let sectors = op.write_span().map_or(1, |span| sectors_of(span, sector));
                        match rng.random_range(0..3u8) {
                            0 => Fate::Lost,
                            1 if sectors > 1 => Fate::Torn((0..sectors).map(|_| rng.random_bool(0.5)).collect()),
                            _ => Fate::Kept,
                        }
                    })
                    .collect()
            }
        };
        CrashChoice { fates }
    }

    /// The one outcome of [`PersistenceModel::Zeroed`]: writes zeroed, every
    /// other operation kept.
    fn zeroed(pending: &imbl::Vector<PendingOp>) -> CrashChoice {
        CrashChoice {
            fates: pending
                .iter()
                .map(|op| {
                    if op.write_span().is_some() {
                        Fate::Zeroed
                    } else {
                        Fate::Kept
                    }
                })
                .collect(),
        }
    }

    /// Every outcome for `pending`, or `None` if there are more than `limit`.
    pub(crate) fn enumerate(&self, pending: &imbl::Vector<PendingOp>, limit: usize) -> Option<Vec<CrashChoice>> {
        let n = pending.len();
        match self {
            PersistenceModel::NothingUnsynced => Some(vec![CrashChoice::nothing(n)]),
            PersistenceModel::Zeroed => Some(vec![Self::zeroed(pending)]),
            PersistenceModel::Prefix => (n < limit).then(|| {
                (0..=n)
                    .map(|kept| CrashChoice {
                        fates: (0..n).map(|i| if i < kept { Fate::Kept } else { Fate::Lost }).collect(),
                    })
                    .collect()
            }),
            PersistenceModel::AnySubset => {
                let count = 1usize.checked_shl(u32::try_from(n).ok()?)?;
                (count <= limit).then(|| {
                    (0..count)
                        .map(|mask| CrashChoice {
                            fates: (0..n)
                                .map(|i| if mask >> i & 1 == 1 { Fate::Kept } else { Fate::Lost })
                                .collect(),
                        })
                        .collect()
                })
            }
            PersistenceModel::Torn { .. } => {
                let sector = self.sector_size();
                let per_op: Vec<Vec<Fate>> = pending
                    .iter()
                    .map(|op| fates_of_one(op.write_span().map_or(1, |span| sectors_of(span, sector)), limit))
                    .collect::<Option<_>>()?;
                let mut choices = vec![Vec::with_capacity(n)];
                for options in per_op {
                    if choices.len().checked_mul(options.len())? > limit {
                        return None;
                    }
                    choices = choices
                        .into_iter()
                        .flat_map(|prefix| {
                            options.iter().map(move |fate| {
                                let mut next = prefix.clone();
                                next.push(fate.clone());
                                next
                            })
                        })
                        .collect();
                }
                Some(choices.into_iter().map(|fates| CrashChoice { fates }).collect())
            }
        }
    }
}

/// Every fate of one op with `sectors` sectors: lost, kept, and each tearing.
fn fates_of_one(sectors: usize, limit: usize) -> Option<Vec<Fate>> {
    if sectors <= 1 {
        return Some(vec![Fate::Lost, Fate::Kept]);
    }
    let masks = 1usize.checked_shl(u32::try_from(sectors).ok()?)?;
    if masks > limit {
        return None;
    }
    // Mask 0 is "lost" and the all-ones mask is "kept"; the rest are tears.
    Some(
        (0..masks)
            .map(|mask| match mask {
                0 => Fate::Lost,
                m if m == masks - 1 => Fate::Kept,
                m => Fate::Torn((0..sectors).map(|i| m >> i & 1 == 1).collect()),
            })
            .collect(),
    )
}

/// How many `sector`-byte sectors a write at `(offset, len)` touches.
fn sectors_of((offset, len): (u64, usize), sector: u64) -> usize {
    if len == 0 {
        return 1;
    }
    let first = offset / sector;
    let last = (offset + len as u64 - 1) / sector;
    usize::try_from(last - first + 1).unwrap_or(usize::MAX)
}

impl fmt::Display for PersistenceModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistenceModel::NothingUnsynced => f.write_str("nothing"),
            PersistenceModel::Prefix => f.write_str("prefix"),
            PersistenceModel::AnySubset => f.write_str("subset"),
            PersistenceModel::Torn { sector_size: 512 } => f.write_str("torn"),
            PersistenceModel::Torn { sector_size } => write!(f, "torn-{sector_size}"),
            PersistenceModel::Zeroed => f.write_str("zeroed"),
        }
    }
}

/// What a power cut does to one pending operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    /// The operation never reached the disk.
    Lost,
    /// The operation reached the disk whole.
    Kept,
    /// A write reached the disk in part: sector i of it is new where the
    /// i-th flag is true, as it was elsewhere.
    Torn(Vec<bool>),
    /// A write's length change reached the disk and its data did not: what
    /// it extended reads as zeros, what it overwrote is as it was.
    Zeroed,
}

/// One concrete outcome of a power cut: a [`Fate`] per pending operation, in
/// issue order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CrashChoice {
    fates: Vec<Fate>,
}

impl CrashChoice {
    /// No pending operation survives.
    pub fn nothing(pending: usize) -> Self {
        Self {
            fates: vec![Fate::Lost; pending],
        }
    }

    /// Every pending operation survives (what a process crash leaves).
    pub fn everything(pending: usize) -> Self {
        Self {
            fates: vec![Fate::Kept; pending],
        }
    }

    /// A choice from explicit fates.
    pub fn from_fates(fates: Vec<Fate>) -> Self {
        Self { fates }
    }

    /// The fate of the `index`-th pending operation (lost if out of range).
    pub fn fate(&self, index: usize) -> &Fate {
        self.fates.get(index).unwrap_or(&Fate::Lost)
    }

    /// All fates, in issue order.
    pub fn fates(&self) -> &[Fate] {
        &self.fates
    }
}

impl fmt::Display for CrashChoice {
    /// `K` kept, `-` lost, `T` torn, `Z` zeroed, one character per pending op.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fate in &self.fates {
            f.write_str(match fate {
                Fate::Lost => "-",
                Fate::Kept => "K",
                Fate::Torn(_) => "T",
                Fate::Zeroed => "Z",
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::SystemTime;

    fn writes(n: usize, len: usize) -> imbl::Vector<PendingOp> {
        (0..n)
            .map(|i| PendingOp::Write {
                ino: 2,
                device: 0,
                offset: (i * len) as u64,
                data: vec![1u8; len].into(),
                mtime: SystemTime::UNIX_EPOCH,
            })
            .collect()
    }

    #[test]
    fn each_model_draws_only_outcomes_it_allows() {
        let pending = writes(8, 1024);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let nothing = PersistenceModel::NothingUnsynced.sample(&pending, &mut rng);
            assert!(nothing.fates().iter().all(|f| *f == Fate::Lost));
            let prefix = PersistenceModel::Prefix.sample(&pending, &mut rng);
            let kept = prefix.fates().iter().take_while(|f| **f == Fate::Kept).count();
            assert!(
                prefix.fates()[kept..].iter().all(|f| *f == Fate::Lost),
                "not a prefix: {prefix}"
            );
            let subset = PersistenceModel::AnySubset.sample(&pending, &mut rng);
            assert!(subset.fates().iter().all(|f| !matches!(f, Fate::Torn(_))));
        }
    }

    #[test]
    fn torn_model_tears_some_writes_at_sector_granularity() {
        let pending = writes(8, 2048);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let model = PersistenceModel::Torn { sector_size: 512 };
        let torn: Vec<Fate> = (0..50)
            .flat_map(|_| model.sample(&pending, &mut rng).fates().to_vec())
            .filter(|f| matches!(f, Fate::Torn(_)))
            .collect();
        assert!(!torn.is_empty(), "the torn model never tore a write");
        for fate in torn {
            let Fate::Torn(sectors) = fate else { unreachable!() };
            assert_eq!(sectors.len(), 4, "a 2048-byte aligned write has four 512-byte sectors");
        }
    }

    #[test]
    fn enumeration_counts_every_outcome_and_respects_the_limit() {
        let pending = writes(4, 512);
        assert_eq!(
            PersistenceModel::Prefix.enumerate(&pending, 100).map(|c| c.len()),
            Some(5)
        );
        assert_eq!(
            PersistenceModel::AnySubset.enumerate(&pending, 100).map(|c| c.len()),
            Some(16)
        );
        assert_eq!(PersistenceModel::AnySubset.enumerate(&pending, 15), None);
        let torn = PersistenceModel::Torn { sector_size: 256 };
        // Each 512-byte write spans two 256-byte sectors: 4 fates each.
        assert_eq!(torn.enumerate(&pending, 1000).map(|c| c.len()), Some(256));
    }

    #[test]
    fn zeroed_keeps_every_metadata_op_and_zeroes_every_write() {
        let mut pending = writes(2, 512);
        pending.push_back(PendingOp::Unlink {
            dir: 1,
            name: "x".into(),
        });
        let one = PersistenceModel::Zeroed.enumerate(&pending, 1).expect("one outcome");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].to_string(), "ZZK");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert_eq!(PersistenceModel::Zeroed.sample(&pending, &mut rng), one[0]);
    }

    #[test]
    fn names_round_trip() {
        for model in PersistenceModel::ALL
            .into_iter()
            .chain([PersistenceModel::Torn { sector_size: 4096 }])
        {
            assert_eq!(PersistenceModel::parse(&model.to_string()), Some(model));
        }
        assert_eq!(PersistenceModel::parse("torn-0"), None);
        assert_eq!(PersistenceModel::parse("bogus"), None);
    }
}
