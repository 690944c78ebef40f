//! The scenario catalogue: every scenario by name, with what it must show.
//!
//! Two kinds of scenario: SQLite's own atomic-commit matrices
//! ([`catalogue`], fixed workloads on SQLite itself), and store scenarios
//! ([`store_scenarios`]) run through the contract against whichever
//! [`StoreFactory`] is plugged in, each named after a failure the origin
//! documents describe. [`entries`] lists both.
//!
//! A scenario either must pass every invariant, or is a documented finding or
//! a deliberately broken setup that must break a named invariant. A "must
//! break" scenario that passes is a failure of the harness: it has lost its
//! teeth.

use std::collections::BTreeSet;

use tearline_model::{
    Capabilities, FileRole, Invariant, Operation, RebuildKind, ReconcileKind, RemoteFault, SchemaStamp, StoreFactory,
};
use tearline_sim_fs::{Fault, SyscallKind};

use crate::engine::{
    AtomicCommitWorkload, Capacity, Damage, HarnessError, JournalMode, LockAttack, MountUnderRoot, PersistentCause,
    Plant, SqliteSubject, Step, StoreScenario, StoreSubject, Subject, Synchronous,
};
use crate::net::NetScenario;
use crate::report::FailureRecord;

/// A known way a scenario breaks an invariant: a documented finding, or the
/// point of a deliberately broken setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which invariants it breaks.
    pub invariants: BTreeSet<Invariant>,
    /// Under which faults (empty: any).
    pub faults: Vec<Fault>,
    /// At which syscall the fault strikes (`None`: any).
    pub at: Option<SyscallKind>,
    /// What it is, in a sentence.
    pub summary: &'static str,
}

impl Finding {
    /// Whether a failure is an instance of this finding.
    pub fn explains(&self, failure: &FailureRecord) -> bool {
        self.invariants.contains(&failure.invariant)
            && (self.faults.is_empty() || self.faults.contains(&failure.case.injection.fault))
            && self.at.is_none_or(|op| failure.op == Some(op))
    }
}

/// What a scenario must show: the known findings it reproduces. No findings
/// means every invariant must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    /// The findings; each must be reproduced, and nothing else may break.
    pub findings: Vec<Finding>,
}

impl Expectation {
    /// Every invariant must hold.
    pub const fn pass() -> Self {
        Expectation { findings: Vec::new() }
    }

    /// Whether the failures a matrix found meet the expectation, and if not, why.
    pub fn judge(&self, failures: &[FailureRecord]) -> Result<(), String> {
        if let Some(unexplained) = failures
            .iter()
            .find(|f| !self.findings.iter().any(|finding| finding.explains(f)))
        {
            return Err(format!(
                "{} broke unexpectedly at {} ({}): {}",
                unexplained.invariant,
                unexplained.case,
                unexplained
                    .op
                    .map_or("after the last syscall".to_string(), |op| op.to_string()),
                unexplained.evidence
            ));
        }
        if let Some(lost) = self
            .findings
            .iter()
            .find(|finding| !failures.iter().any(|f| finding.explains(f)))
        {
            return Err(format!(
                "a known finding no longer reproduces (the checks may have lost their teeth): {}",
                lost.summary
            ));
        }
        Ok(())
    }
}

/// One scenario of the catalogue.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name, used on the command line and in repro lines.
    pub name: String,
    /// What it does and why, in a sentence or two.
    pub description: &'static str,
    /// The workload.
    pub workload: AtomicCommitWorkload,
    /// The scale it was sized at.
    pub scale: u32,
    /// What it must show.
    pub expect: Expectation,
}

impl Scenario {
    /// The scenario as the engine runs it.
    pub fn subject(&self) -> SqliteSubject {
        SqliteSubject::new(self.workload.clone(), self.scale)
    }
}

/// Every scenario, sized for the full run (`scale` multiplies the number of
/// transactions; 1 is the size `cargo test` uses).
pub fn catalogue(scale: u32) -> Vec<Scenario> {
    let sized = |journal, sync| {
        let mut workload = AtomicCommitWorkload::new(journal, sync);
        workload.transactions *= scale.max(1);
        workload
    };
    let mut no_sync = sized(JournalMode::Delete, Synchronous::Full);
    no_sync.skip_sync = true;
    let scenario = |workload: AtomicCommitWorkload, expect, description| Scenario {
        name: workload.name(),
        description,
        workload,
        scale,
        expect,
    };
    let ignored_dir_sync_error = |invariant, summary| Finding {
        invariants: [invariant].into(),
        faults: vec![Fault::EIO, Fault::ENOSPC],
        at: Some(SyscallKind::SyncDir),
        summary,
    };
    // SQLite keeps no checksum of its pages: damage at rest shows only
    // where it breaks the file's structure.
    let damage_at_rest = |faults: Vec<Fault>| Finding {
        invariants: [Invariant::CompleteDatabase].into(),
        faults,
        at: None,
        summary: "SQLite has no page checksums: a misdirected write, a flipped bit or an unreadable sector is \
                  found only where it breaks the file's structure (\"file is not a database\", \"disk I/O \
                  error\", a malformed freelist), and the database does not open or fails integrity_check",
    };
    let at_rest = || vec![Fault::MisdirectedWrite, Fault::BitRot, Fault::LatentSector];
    vec![
        scenario(
            sized(JournalMode::Delete, Synchronous::Full),
            Expectation {
                findings: vec![
                    damage_at_rest(at_rest()),
                    Finding {
                        invariants: [Invariant::CommittedDurable].into(),
                        faults: Vec::new(),
                        at: None,
                        summary: "the journal's unlink is never made durable, so a power cut after COMMIT \
                                  returned can bring the journal back and roll the commit back",
                    },
                    ignored_dir_sync_error(
                        Invariant::CompleteDatabase,
                        "an error from the directory fsync that makes a new journal's name durable is \
                         ignored; after a power cut a stale journal of an earlier transaction is played back \
                         over newer pages and the database is malformed",
                    ),
                ],
            },
            "SQLite rollback journal with synchronous=FULL. A finding: SQLite commits by unlinking the \
             journal and does not fsync the directory, so a power cut can bring the journal back and roll \
             back a transaction SQLite reported committed. Atomicity and integrity hold; durability of the \
             last commit does not. Second finding: SQLite ignores an error from its directory fsync.",
        ),
        scenario(
            sized(JournalMode::Delete, Synchronous::Extra),
            Expectation {
                findings: vec![damage_at_rest(at_rest())],
            },
            "SQLite rollback journal with synchronous=EXTRA, which fsyncs the directory after deleting the \
             journal: every acknowledged commit survives every fault in a syscall, a failed fsync under \
             Linux's rule included (SQLite reports it and acknowledges nothing). A finding: damage at rest \
             is caught only where it breaks the file's structure.",
        ),
        scenario(
            sized(JournalMode::Wal, Synchronous::Full),
            Expectation {
                findings: vec![
                    ignored_dir_sync_error(
                        Invariant::CommittedDurable,
                        "an error from the directory fsync that makes the new WAL's name durable is ignored; \
                         commits are acknowledged, and a power cut loses the WAL and the database file's name",
                    ),
                    damage_at_rest([at_rest(), vec![Fault::BitFlip]].concat()),
                    Finding {
                        invariants: [Invariant::CommittedDurable].into(),
                        faults: vec![Fault::MisdirectedWrite],
                        at: Some(SyscallKind::Write),
                        summary: "a WAL frame written to the wrong place is not noticed: the checkpoint copies \
                                  whatever is at the frame's place into the database, and an acknowledged commit \
                                  vanishes with integrity_check ok",
                    },
                ],
            },
            "SQLite write-ahead log with synchronous=FULL and a checkpoint every 4 pages: every acknowledged \
             commit survives power cuts, torn writes and errors (a failed fsync under Linux's rule \
             included), except an error from the one directory fsync SQLite makes, which it ignores. Damage \
             at rest is caught only where it breaks the file's structure.",
        ),
        scenario(
            no_sync,
            Expectation {
                findings: vec![Finding {
                    invariants: [
                        Invariant::CompleteDatabase,
                        Invariant::AtomicOp,
                        Invariant::CommittedDurable,
                    ]
                    .into(),
                    faults: Vec::new(),
                    at: None,
                    summary: "without fsync nothing is durable: power cuts lose and corrupt data",
                }],
            },
            "A broken setup: the VFS drops every fsync. The matrix must catch it — proof the checks have teeth.",
        ),
    ]
}

/// The scenario with this name, at the given scale.
pub fn find(name: &str, scale: u32) -> Option<Scenario> {
    catalogue(scale).into_iter().find(|s| s.name == name)
}

/// One entry of the catalogue.
#[derive(Clone, Debug)]
pub enum Entry {
    /// SQLite's own atomic-commit matrix.
    Sqlite(Scenario),
    /// A scenario run against the store under test.
    Store {
        /// The scenario.
        scenario: StoreScenario,
        /// What it must show.
        expect: Expectation,
    },
    /// The reference store served over a simulated network: a matrix of
    /// network faults, not syscalls ([`crate::net`]).
    Network(NetScenario),
}

impl Entry {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Entry::Sqlite(s) => &s.name,
            Entry::Store { scenario, .. } => &scenario.name,
            Entry::Network(scenario) => &scenario.name,
        }
    }

    /// What it does.
    pub fn description(&self) -> &str {
        match self {
            Entry::Sqlite(s) => s.description,
            Entry::Store { scenario, .. } => &scenario.description,
            Entry::Network(scenario) => &scenario.description,
        }
    }

    /// The entry as the syscall engine runs it against `factory` (SQLite's
    /// matrices ignore the store); a network scenario has its own matrix
    /// ([`crate::net::run_scenario`]) and no syscall subject.
    pub fn subject<'a>(&'a self, factory: &'a dyn StoreFactory) -> Result<Box<dyn Subject + 'a>, HarnessError> {
        match self {
            Entry::Sqlite(s) => Ok(Box::new(s.subject())),
            Entry::Store { scenario, .. } => Ok(Box::new(StoreSubject { factory, scenario })),
            Entry::Network(scenario) => Err(HarnessError(format!(
                "{} is a network scenario: its cases are requests, not syscalls",
                scenario.name
            ))),
        }
    }

    /// What it must show.
    pub fn expect(&self) -> &Expectation {
        match self {
            Entry::Sqlite(s) => &s.expect,
            Entry::Store { expect, .. } => expect,
            Entry::Network(_) => &PASS,
        }
    }
}

/// What a network scenario must show: every invariant kept.
static PASS: Expectation = Expectation::pass();

/// The whole catalogue: SQLite's matrices at `scale`, then the store
/// scenarios for `factory`, then the network scenarios.
pub fn entries(factory: &dyn StoreFactory, scale: u32) -> Vec<Entry> {
    let mut all: Vec<Entry> = catalogue(scale).into_iter().map(Entry::Sqlite).collect();
    all.extend(store_scenarios(factory).into_iter().map(|scenario| Entry::Store {
        scenario,
        expect: Expectation::pass(),
    }));
    all.extend(crate::net::scenarios().into_iter().map(Entry::Network));
    all
}

/// The catalogue entry with this name.
pub fn find_entry(factory: &dyn StoreFactory, name: &str, scale: u32) -> Option<Entry> {
    entries(factory, scale).into_iter().find(|e| e.name() == name)
}

fn add(name: &str, content: &str) -> Step {
    Step::Op(Operation::Add {
        name: name.to_string(),
        content: content.to_string(),
    })
}

fn remove(name: &str) -> Step {
    Step::Op(Operation::Remove { name: name.to_string() })
}

fn edit(name: &str, content: Option<&str>) -> Step {
    Step::EditSource {
        name: name.to_string(),
        content: content.map(str::to_string),
    }
}

fn share(name: &str) -> Step {
    Step::Op(Operation::Share { name: name.to_string() })
}

fn unshare(name: &str) -> Step {
    Step::Op(Operation::Unshare { name: name.to_string() })
}

fn set_owner(name: &str, owner: &str) -> Step {
    Step::Op(Operation::SetOwner {
        name: name.to_string(),
        owner: owner.to_string(),
    })
}

/// A reconcile of `mode` scoped to `owner`'s records.
fn reconcile_for(owner: &str, mode: ReconcileKind, force: bool) -> Step {
    Step::Op(Operation::Reconcile {
        mode,
        force,
        dry_run: false,
        owner: Some(owner.to_string()),
    })
}

fn rebuild() -> Step {
    Step::Op(Operation::Rebuild {
        kind: RebuildKind::Full,
    })
}

fn reconcile(mode: ReconcileKind, force: bool) -> Step {
    Step::Op(Operation::Reconcile {
        mode,
        force,
        dry_run: false,
        owner: None,
    })
}

fn import(docs: &[(&str, &str)]) -> Step {
    Step::Op(Operation::Import {
        documents: docs.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect(),
    })
}

/// `n` documents `d0.md`… with short distinct contents.
fn docs(prefix: &str, n: usize, version: u32) -> Vec<Step> {
    (0..n)
        .map(|i| {
            add(
                &format!("{prefix}{i}.md"),
                &format!("# {prefix}{i}\nversion {version}\n"),
            )
        })
        .collect()
}

/// Source edits behind the store's back: one changed, one deleted, one new.
fn drift() -> Vec<Step> {
    vec![
        edit("d0.md", Some("# d0\nedited behind the store's back\n")),
        edit("d1.md", None),
        edit("new.md", Some("# new\nwritten behind the store's back\n")),
    ]
}

struct Builder {
    name: &'static str,
    description: &'static str,
    setup: Vec<Step>,
    workload: Vec<Step>,
    requires: Capabilities,
}

impl Builder {
    fn build(self) -> StoreScenario {
        StoreScenario {
            name: self.name.to_string(),
            description: self.description.to_string(),
            setup: self.setup,
            workload: self.workload,
            capacity: Capacity::Unlimited,
            mounts: Vec::new(),
            requires: self.requires,
            fault_free_failure_allowed: false,
            persists: None,
            spared: Vec::new(),
        }
    }
}

/// The store scenarios, each small enough for the whole catalogue to run in
/// minutes. Some adapt to what `factory` supports (the long mixed workload
/// uses import and rebuild only if the store has them); the others require
/// capabilities and are not applicable without them.
pub fn store_scenarios(factory: &dyn StoreFactory) -> Vec<StoreScenario> {
    let caps = factory.capabilities();
    let rebuilds = Capabilities {
        full_rebuild: true,
        source_files: true,
        ..Capabilities::default()
    };
    let reconciles = Capabilities {
        reconcile: true,
        source_files: true,
        ..Capabilities::default()
    };
    let mut scenarios = Vec::new();
    scenarios.push(
        Builder {
            name: "rebuild-crash-midway",
            description: "A full rebuild of 6 documents, 3 changed behind the store's back, crashed at every \
                          syscall (so at 50% of the files too): the old index or the new one, never a mix.",
            setup: [docs("d", 6, 1), drift()].concat(),
            workload: vec![rebuild()],
            requires: rebuilds,
        }
        .build(),
    );
    let mut out_of_space = Builder {
        name: "rebuild-out-of-space",
        description: "A full rebuild on a device with 24 KiB left after setup: the rebuild runs out of \
                      space (or is failed with ENOSPC at every syscall) and must leave the old index \
                      serving, with its backup and no temp files; then an add on the device the rebuild \
                      left full. The device stays full: the store must still recover, serve reads, remove \
                      a document, and work once there is room (stays-serviceable).",
        setup: [docs("d", 6, 1), drift()].concat(),
        workload: vec![rebuild(), add("after.md", "written after the rebuild\n")],
        requires: rebuilds,
    }
    .build();
    out_of_space.capacity = Capacity::SetupSizePlus(24 * 1024);
    out_of_space.fault_free_failure_allowed = true;
    out_of_space.persists = Some(PersistentCause::DeviceFull);
    scenarios.push(out_of_space);
    let mut stays_full = Builder {
        name: "device-stays-full",
        description: "An add on a device with 4 KiB left after setup runs out of space where it must \
                      (or is failed at every syscall), and the device stays full: the store must recover \
                      on the full device, serve reads, remove a document there (the one command that frees \
                      space), and work again once there is room (stays-serviceable; origins/1's store that \
                      a full disk wedged until it grew).",
        setup: docs("d", 4, 1),
        workload: vec![add("full.md", "# full\nwritten on a full device\n")],
        requires: Capabilities {
            remove: true,
            ..Capabilities::default()
        },
    }
    .build();
    stays_full.capacity = Capacity::SetupSizePlus(4 * 1024);
    stays_full.fault_free_failure_allowed = true;
    stays_full.persists = Some(PersistentCause::DeviceFull);
    scenarios.push(stays_full);
    let mut remote_down = Builder {
        name: "vector-store-stays-down",
        description: "The vector store goes down after setup and stays down across every crash and reopen \
                      (origins/2's separate vector database): an add and a removal while it is down, faults \
                      at every syscall. While it is down, a writable open succeeds or refuses naming the \
                      cause, and a read serves what was acknowledged; once it is back, recovery finishes \
                      what was left and an add works (stays-serviceable).",
        setup: docs("d", 3, 1),
        workload: vec![
            add("down.md", "# down\nwritten while the vector store was down\n"),
            remove("d0.md"),
        ],
        requires: Capabilities {
            vectors: true,
            remove: true,
            ..Capabilities::default()
        },
    }
    .build();
    remote_down.fault_free_failure_allowed = true;
    remote_down.persists = Some(PersistentCause::RemoteDown);
    scenarios.push(remote_down);
    let mut down_at_fault = Builder {
        name: "vector-store-down-after-fault",
        description: "An add, an import and a removal with the vector store up, interrupted at every \
                      syscall; the vector store goes down with the fault and stays down across every later \
                      open (origins/2: the separate vector database gone when the crashed store restarts). \
                      While it is down, reads serve what the model allows (never refused because the \
                      interrupted operation waits on the vector store), a writable open succeeds or \
                      refuses naming the cause; once it is back, everything is finished and an add works \
                      (stays-serviceable).",
        setup: docs("d", 3, 1),
        workload: vec![
            add("a.md", "# a\nadded before the outage\n"),
            import(&[
                ("i0.md", "# i0\nimported\n"),
                ("d1.md", "# d1\nreplaced by the import\n"),
            ]),
            remove("d0.md"),
        ],
        requires: Capabilities {
            vectors: true,
            remove: true,
            import: true,
            ..Capabilities::default()
        },
    }
    .build();
    down_at_fault.persists = Some(PersistentCause::RemoteDownAtFault);
    scenarios.push(down_at_fault);
    scenarios.push(
        Builder {
            name: "rebuild-swap-interrupted",
            description: "Two full rebuilds in a row after an earlier one (so a backup exists): the switch \
                          to the new generation and the backup rotation are interrupted at every syscall.",
            setup: [docs("d", 4, 1), vec![rebuild()], drift()].concat(),
            workload: vec![rebuild(), edit("d2.md", Some("# d2\nchanged again\n")), rebuild()],
            requires: rebuilds,
        }
        .build(),
    );
    scenarios.push(
        Builder {
            name: "vector-write-failing",
            description: "Adds and a replace whose vector writes fail (EIO, ENOSPC, crash, power cut at \
                          every syscall): the index and the vector store must still agree both ways.",
            setup: docs("d", 2, 1),
            workload: vec![
                add("v0.md", "vector zero\n"),
                add("d0.md", "replaced\n"),
                add("v1.md", "one\n"),
            ],
            requires: Capabilities {
                vectors: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    scenarios.push(
        Builder {
            name: "sqlite-write-failing",
            description: "Adds, a replace and a remove whose index writes fail at every syscall (EIO, ENOSPC, \
                          torn writes, crashes, power cuts): every acknowledged change survives, the \
                          interrupted one is all or nothing.",
            setup: docs("d", 3, 1),
            workload: [
                vec![add("w0.md", "zero\n"), add("d1.md", "replaced\n")],
                if caps.remove { vec![remove("d2.md")] } else { Vec::new() },
            ]
            .concat(),
            requires: Capabilities::default(),
        }
        .build(),
    );
    for (mode, force, name, description) in [
        (
            ReconcileKind::Audit,
            false,
            "reconcile-audit",
            "An audit after changes behind the store's back (one changed, one deleted, one new): reports, \
             changes nothing.",
        ),
        (
            ReconcileKind::Sync,
            false,
            "reconcile-sync",
            "A dry run of a sync after changes behind the store's back (must change nothing), then the \
             sync: indexes the new and changed files, interrupted at every syscall.",
        ),
        (
            ReconcileKind::Clean,
            true,
            "reconcile-clean",
            "A dry run of a clean and a clean without force (both must change nothing), then with force: \
             drops the entry whose file is gone, interrupted at every syscall.",
        ),
        (
            ReconcileKind::Full,
            true,
            "reconcile-full",
            "A dry run of a full reconcile (must change nothing), one without force (must fail), then with \
             force: afterwards the index is exactly the source files (filesystem-wins).",
        ),
    ] {
        let mut workload = Vec::new();
        if mode != ReconcileKind::Audit {
            // A dry run first: it reports, and changes nothing.
            workload.push(Step::Op(Operation::Reconcile {
                mode,
                force: false,
                dry_run: true,
                owner: None,
            }));
        }
        if mode.is_destructive() {
            workload.push(reconcile(mode, false));
        }
        workload.push(reconcile(mode, force));
        scenarios.push(
            Builder {
                name,
                description,
                setup: [docs("d", 4, 1), drift()].concat(),
                workload,
                requires: reconciles,
            }
            .build(),
        );
    }
    scenarios.push(
        Builder {
            name: "rebuild-incremental",
            description: "An incremental rebuild after changes behind the store's back (one changed, one \
                          deleted, one new, and one changed to content of the same length): it must index the \
                          new and changed files and drop the deleted one's entry, interrupted at every syscall \
                          (afterwards the index is exactly the source files: filesystem-wins).",
            setup: [docs("d", 4, 1), drift(), vec![edit("d2.md", Some("# d2\nversion 2\n"))]].concat(),
            workload: vec![Step::Op(Operation::Rebuild {
                kind: RebuildKind::Incremental,
            })],
            requires: Capabilities {
                incremental_rebuild: true,
                source_files: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    let mut shared = Builder {
        name: "shared-record-kept",
        description: "Share links, then a clean and a full reconcile after files vanish behind the store's \
                          back: the record still linked to is reported as protected and kept, the unshared \
                          and unlinked ones are deleted; a shared document removed; a full rebuild that drops \
                          the shared record whose file is gone, and a new document of its name, which must not \
                          inherit the link; interrupted at every syscall, an acknowledged link survives and no \
                          link appears that was not given (protected-records-kept). Not under media faults (latent sectors, bit \
                          rot, misdirected writes): a record kept only by its link has no copy outside the \
                          index, which such a fault may destroy.",
        setup: docs("d", 4, 1),
        workload: vec![
            share("d0.md"),
            share("d1.md"),
            unshare("d1.md"),
            edit("d0.md", None),
            edit("d1.md", None),
            edit("d2.md", None),
            reconcile(ReconcileKind::Clean, true),
            add("d2.md", "# d2\nback, unshared\n"),
            reconcile(ReconcileKind::Full, true),
            share("d3.md"),
            remove("d3.md"),
            rebuild(),
            add("d0.md", "# d0\nback after the rebuild dropped it, unshared\n"),
        ],
        requires: Capabilities {
            share_links: true,
            remove: true,
            full_rebuild: true,
            ..reconciles
        },
    }
    .build();
    // A record kept only by its link (its file gone) lives only in the
    // index: a fault that destroys index data makes the store rebuild from
    // the source files, which no longer hold it. Media faults are spared
    // here; the description says so.
    shared.spared = vec![Fault::LatentSector, Fault::BitRot, Fault::MisdirectedWrite];
    scenarios.push(shared);
    let mut owners = Builder {
        name: "owner-scoped-reconcile",
        description: "Documents of two owners and of none, files gone or changed behind the store's back, \
                      then reconciles scoped to one owner: a full one for alice (her orphan deleted, her \
                      stale record refreshed), a new document of the deleted one's name (nobody's: it must \
                      not inherit her ownership), a clean for bob without force (refused), a clean for an owner \
                      with no records (changes nothing), an owner changed, an owned document removed, and \
                      last an unscoped clean; interrupted at every syscall, no other owner's record is \
                      touched and an acknowledged owner survives (owner-scope-kept). Not under media faults, \
                      as shared-record-kept: a record whose file is gone lives only in the index.",
        setup: docs("d", 5, 1),
        workload: vec![
            set_owner("d0.md", "alice"),
            set_owner("d1.md", "bob"),
            set_owner("d2.md", "alice"),
            set_owner("d4.md", "bob"),
            edit("d0.md", None),
            edit("d1.md", None),
            edit("d3.md", None),
            edit("d2.md", Some("# d2\nchanged behind the store's back\n")),
            edit("d4.md", Some("# d4\nchanged behind the store's back\n")),
            reconcile_for("alice", ReconcileKind::Full, true),
            add("d0.md", "# d0\nback after alice's clean, nobody's\n"),
            reconcile_for("bob", ReconcileKind::Clean, false),
            reconcile_for("carol", ReconcileKind::Clean, true),
            set_owner("d2.md", "bob"),
            remove("d4.md"),
            reconcile(ReconcileKind::Clean, true),
        ],
        requires: Capabilities {
            owners: true,
            ..reconciles
        },
    }
    .build();
    owners.spared = vec![Fault::LatentSector, Fault::BitRot, Fault::MisdirectedWrite];
    scenarios.push(owners);
    scenarios.push(
        Builder {
            name: "add-interrupted",
            description: "Adds of a new document and of a replacement, each interrupted at every syscall: \
                          the old content or the new, never a torn or lost document.",
            setup: docs("d", 2, 1),
            workload: vec![add("a.md", "# a\nnew\n"), add("d0.md", "# d0\nreplaced\n")],
            requires: Capabilities::default(),
        }
        .build(),
    );
    scenarios.push(
        Builder {
            name: "import-interrupted",
            description: "An import of 4 documents (2 new, 2 replacing) interrupted at every syscall: all of \
                          them or none.",
            setup: docs("d", 2, 1),
            workload: vec![import(&[
                ("d0.md", "# d0\nimported\n"),
                ("d1.md", "# d1\nimported\n"),
                ("i0.md", "# i0\n"),
                ("i1.md", "# i1\n"),
            ])],
            requires: Capabilities {
                import: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    let mut staging = Builder {
        name: "staging-across-devices",
        description: "Imports and an add with the staging directory on its own device: the publish by \
                      rename fails with EXDEV and must fall back to copy + fsync, atomically.",
        setup: docs("d", 2, 1),
        workload: vec![
            import(&[("d0.md", "# d0\nimported\n"), ("s0.md", "# s0\n")]),
            add("s1.md", "# s1\n"),
        ],
        requires: Capabilities {
            import: true,
            ..Capabilities::default()
        },
    }
    .build();
    staging.mounts = vec![MountUnderRoot {
        relative: "staging".to_string(),
        capacity_bytes: 1 << 30,
    }];
    scenarios.push(staging);
    scenarios.push(
        Builder {
            name: "index-open-without-and-with-lock",
            description: "The index opened by another process read-only (no lock: must change nothing) and \
                          writable (refused while the lock is held), then reopened: no index file is \
                          destroyed without the lock.",
            setup: docs("d", 2, 1),
            workload: vec![
                Step::OpenReadOnly,
                Step::SecondWriter,
                Step::Reopen,
                add("l.md", "# l\n"),
            ],
            requires: Capabilities {
                exclusive_lock: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    let mut timeout = Builder {
        name: "vector-write-timeout-after-apply",
        description: "The vector store applies a write and then times out (origins/2: the ambiguous \
                      outcome): the add fails, and recovery must find out what the vector store really \
                      holds; faults at every syscall of it. The workload stops at the failed add.",
        setup: docs("d", 2, 1),
        workload: vec![
            Step::RemoteFault(RemoteFault::TimeoutAfterApply),
            add("t.md", "# t\n\ntimed out after it was applied\n"),
        ],
        requires: Capabilities {
            vectors: true,
            ..Capabilities::default()
        },
    }
    .build();
    timeout.fault_free_failure_allowed = true;
    scenarios.push(timeout);
    scenarios.push(
        Builder {
            name: "index-from-newer-build",
            description: "An index written by a newer build (origins/5): opened read-only by another process \
                          it must be refused and left untouched (no wipe without the lock); reopened \
                          writable by the lock holder it is rebuilt from the source files, at every syscall.",
            setup: [docs("d", 3, 1), vec![Step::StampSchema(SchemaStamp::Newer)]].concat(),
            workload: vec![Step::OpenReadOnly, Step::Reopen, add("n.md", "# n\n")],
            requires: Capabilities {
                schema_version: true,
                exclusive_lock: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    scenarios.push(
        Builder {
            name: "schema-upgrade-interrupted",
            description: "An index written by an older build whose upgrade runs in place, reopened writable \
                          and interrupted at every syscall of the migration: the version is stamped only \
                          with its migration.",
            setup: [docs("d", 3, 1), vec![Step::StampSchema(SchemaStamp::OlderInPlace)]].concat(),
            workload: vec![Step::Reopen, add("u.md", "# u\n")],
            requires: Capabilities {
                schema_version: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    scenarios.push(
        Builder {
            name: "two-processes-open",
            description: "A second process opens the store writable while the first holds it, between and \
                          around writes: it must be refused and destroy nothing.",
            setup: docs("d", 1, 1),
            workload: vec![Step::SecondWriter, add("t.md", "# t\n"), Step::SecondWriter],
            requires: Capabilities {
                exclusive_lock: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    let plant = |name: &str, plant: Plant| Step::PlantSource {
        name: name.to_string(),
        plant,
    };
    let mut hostile = vec![
        plant("empty.md", Plant::Empty),
        plant("large.md", Plant::Large(20_000)),
        plant("binary.md", Plant::NotText),
        plant("folder.md", Plant::Directory),
        plant("café.md", Plant::NameNotUtf8),
        plant("linked.md", Plant::SymlinkOut),
        plant("loop.md", Plant::SymlinkLoop),
    ];
    if caps.incremental_rebuild {
        hostile.push(Step::Op(Operation::Rebuild {
            kind: RebuildKind::Incremental,
        }));
    }
    if caps.reconcile {
        hostile.push(reconcile(ReconcileKind::Sync, false));
    }
    hostile.push(rebuild());
    scenarios.push(
        Builder {
            name: "hostile-sources",
            description: "The source tree a user really has: an empty file, a 20 KB file, a file that is not \
                          UTF-8, a directory under a document's name, a file whose name is not UTF-8 (a \
                          Latin-1 `café.md`), a symbolic link out of the store and one to itself appear \
                          behind the store's back; an \
                          incremental rebuild and a sync (if the store has them) and a full rebuild, \
                          interrupted at every syscall, must index the documents and skip the rest, never \
                          fail on them (one file the store could not read made every rebuild and verify \
                          fail).",
            setup: docs("h", 3, 1),
            workload: hostile,
            requires: rebuilds,
        }
        .build(),
    );
    let mut mixed = docs("m", 3, 1);
    mixed.push(add("m0.md", "# m0\nversion 2\n"));
    if caps.remove {
        mixed.push(remove("m1.md"));
    }
    if caps.import {
        mixed.push(import(&[("m2.md", "# m2\nimported\n"), ("m3.md", "# m3\n")]));
    }
    mixed.push(Step::Reopen);
    if caps.source_files {
        mixed.push(edit("m0.md", Some("# m0\nedited behind\n")));
    }
    if caps.full_rebuild && caps.source_files {
        mixed.push(rebuild());
    }
    mixed.push(add("m4.md", "# m4\n"));
    if caps.reconcile && caps.source_files {
        mixed.push(reconcile(ReconcileKind::Sync, false));
    }
    scenarios.push(
        Builder {
            name: "long-mixed",
            description: "A longer mixed workload (adds, a replace, and whichever of remove, import, a \
                          reopen, an edit behind the store's back, rebuild and reconcile the store supports), \
                          interrupted at every syscall.",
            setup: Vec::new(),
            workload: mixed,
            requires: Capabilities::default(),
        }
        .build(),
    );
    let locked = Capabilities {
        exclusive_lock: true,
        ..Capabilities::default()
    };
    scenarios.push(
        Builder {
            name: "lock-file-removed",
            description: "Another process removes the lock file while the writer holds it (an operator \
                          \"cleaning a stale lock\"), then a second process opens the store writable: it \
                          must be refused; then the first writer imports (or adds), interrupted at every \
                          syscall.",
            setup: docs("d", 2, 1),
            workload: vec![
                Step::LockFile(LockAttack::Remove),
                Step::SecondWriter,
                if caps.import {
                    import(&[("d0.md", "# d0\nimported\n"), ("k0.md", "# k0\n")])
                } else {
                    add("k0.md", "# k0\n")
                },
            ],
            requires: locked,
        }
        .build(),
    );
    scenarios.push(
        Builder {
            name: "lock-file-replaced",
            description: "Another process replaces the lock file with a new file while the writer holds it, \
                          then a second process opens the store writable: it must be refused; then the first \
                          writer adds and removes, interrupted at every syscall.",
            setup: docs("d", 2, 1),
            workload: [
                vec![
                    Step::LockFile(LockAttack::Replace),
                    Step::SecondWriter,
                    add("k1.md", "# k1\n"),
                ],
                if caps.remove { vec![remove("d1.md")] } else { Vec::new() },
            ]
            .concat(),
            requires: locked,
        }
        .build(),
    );
    let derived = Capabilities {
        derived_files: true,
        source_files: true,
        full_rebuild: true,
        ..Capabilities::default()
    };
    for (name, role, damage, description) in [
        (
            "index-page-damaged",
            FileRole::Index,
            Damage::Garbage,
            "16 bytes of garbage over the middle of the live index (a page gone bad; `dd conv=notrunc` by \
             hand): the writable open that follows must rebuild it from the source files, keep the backup, \
             and serve every document; interrupted at every syscall (rebuildable-from-source).",
        ),
        (
            "index-sector-unreadable",
            FileRole::Index,
            Damage::UnreadableSector,
            "A latent sector error in the middle of the live index: every read of it fails with EIO. The \
             writable open that follows must rebuild from the source files; interrupted at every syscall.",
        ),
        (
            "vector-segment-damaged",
            FileRole::Vectors,
            Damage::Garbage,
            "Garbage in the middle of a live vector segment: no answer may come from the damaged records \
             (no-silent-corruption), and the writable open that follows must rebuild from the source \
             files; interrupted at every syscall.",
        ),
        (
            "pointer-to-missing-generation",
            FileRole::Pointer,
            Damage::Text("gen-000099\n".to_string()),
            "The pointer to the live generation names one that does not exist (an operator's edit, a \
             restore from another machine): the writable open must rebuild from the source files and \
             remove nothing before it has (failed-open-changes-nothing; origins: an open that deleted the \
             backup, then failed).",
        ),
        (
            "completion-mark-truncated",
            FileRole::CompletionMark,
            Damage::Truncate,
            "The live generation's completion mark cut to zero bytes (the zero-length file a crash after a \
             rename without fsync leaves): the writable open must rebuild from the source files.",
        ),
    ] {
        scenarios.push(
            Builder {
                name,
                description,
                setup: [docs("d", 3, 1), vec![rebuild()]].concat(),
                workload: vec![
                    Step::Damage { role, damage },
                    Step::Reopen,
                    add("after-damage.md", "# after\nwritten after the repair\n"),
                ],
                requires: derived,
            }
            .build(),
        );
    }
    let import_op = |docs: &[(&str, &str)]| Operation::Import {
        documents: docs.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect(),
    };
    scenarios.push(
        Builder {
            name: "journal-damaged",
            description: "An import of 3 documents (2 of them replacing documents) killed (kill -9) at its \
                          second change of the source directory, and the record it left of itself (its \
                          journal) damaged at rest by garbage: the next writable open, interrupted at every \
                          syscall, must not wedge or panic, must keep every acknowledged document and serve \
                          what the source files hold; the import's documents may be left either way.",
            setup: [
                docs("d", 3, 1),
                vec![
                    Step::KilledMidway {
                        op: import_op(&[
                            ("d0.md", "# d0\nversion 2\n"),
                            ("d1.md", "# d1\nversion 2\n"),
                            ("n0.md", "# n0\nnew\n"),
                        ]),
                        at_source_change: 2,
                    },
                    Step::Damage {
                        role: FileRole::Journal,
                        damage: Damage::Garbage,
                    },
                ],
            ]
            .concat(),
            workload: vec![
                Step::Reopen,
                add("after-journal.md", "# after\nwritten after recovery\n"),
            ],
            requires: Capabilities {
                import: true,
                derived_files: true,
                source_files: true,
                ..Capabilities::default()
            },
        }
        .build(),
    );
    scenarios.push(
        Builder {
            name: "stale-lock-file",
            description: "A process holding the store writable is killed (kill -9), leaving its lock file \
                          held by nobody: the next writable open must get in, and the writer goes on with \
                          an add; both opens and the add interrupted at every syscall.",
            setup: docs("d", 2, 1),
            workload: vec![add("k2.md", "# k2\n"), Step::StaleLock, add("k3.md", "# k3\n")],
            requires: locked,
        }
        .build(),
    );
    scenarios
}
