//! The index's schema: a forward-only registry of migrations, each either
//! applied in place or requiring a rebuild from the source files.
//!
//! The version lives in SQLite's `PRAGMA user_version`. On open:
//!
//! | found | what happens |
//! |---|---|
//! | [`SCHEMA_VERSION`] | nothing |
//! | 0, no tables | a fresh index: every step's schema is created and stamped in one transaction |
//! | older, every pending step in place | each step runs in its own transaction, stamping its version with it, so a failed step leaves the version as it was |
//! | older, some pending step needs a rebuild | the index must be rebuilt from the source files |
//! | newer (a later build wrote it) | the index must be rebuilt from the source files |
//!
//! A rebuild replaces the index, so only a writable open that holds the lock
//! and asked for it may do it (see [`crate::lock::WipePermission`]).

use rusqlite::Connection;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 3;

/// How a migration step is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// SQL run in one transaction with the version stamp.
    InPlace(&'static str),
    /// The stored data cannot be converted: rebuild from the source files.
    Rebuild,
}

/// One step of the registry: what it takes the schema to, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The version after this step.
    pub version: u32,
    /// In place or rebuild.
    pub strategy: Strategy,
    /// What changed.
    pub description: &'static str,
}

/// Every step, in order; step `i` takes the schema to version `i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        strategy: Strategy::InPlace(
            "CREATE TABLE files(
                path TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                hash TEXT NOT NULL,
                mtime_ns INTEGER NOT NULL
            );
            CREATE TABLE chunks(
                path TEXT NOT NULL,
                ord INTEGER NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY(path, ord)
            );
            CREATE TABLE summaries(
                path TEXT PRIMARY KEY,
                summary TEXT NOT NULL,
                vector_id INTEGER NOT NULL UNIQUE
            );
            CREATE TABLE intents(
                id INTEGER PRIMARY KEY,
                op TEXT NOT NULL CHECK (op IN ('add', 'remove', 'drop')),
                path TEXT NOT NULL,
                hash TEXT NOT NULL,
                vector_id INTEGER NOT NULL
            );
            CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT INTO meta VALUES ('next_vector_id', 1);",
        ),
        description: "files, chunks, summaries with their vector ids, dual-write intents",
    },
    Migration {
        version: 2,
        strategy: Strategy::Rebuild,
        description: "summaries are embedded from the summary text, not the first chunk: stored vectors are stale",
    },
    Migration {
        version: 3,
        strategy: Strategy::InPlace("ALTER TABLE files ADD COLUMN indexed_at_ms INTEGER NOT NULL DEFAULT 0;"),
        description: "record when each file was indexed",
    },
];

/// What opening an index at some version requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The index is at [`SCHEMA_VERSION`].
    Current,
    /// A fresh, empty index: create the schema.
    Create,
    /// These steps, all in place, bring it to [`SCHEMA_VERSION`].
    Migrate(Vec<Migration>),
    /// It must be rebuilt from the source files, for this reason.
    Rebuild(String),
}

/// What to do with an index at version `found` (`has_tables`: whether it has
/// any table at all, to tell a fresh file from a version-0 one).
pub fn plan(found: u32, has_tables: bool) -> Plan {
    if found == SCHEMA_VERSION {
        return Plan::Current;
    }
    if found == 0 && !has_tables {
        return Plan::Create;
    }
    if found > SCHEMA_VERSION {
        return Plan::Rebuild(format!("it was written by a newer build (schema {found})"));
    }
    let pending: Vec<Migration> = MIGRATIONS.iter().copied().filter(|m| m.version > found).collect();
    match pending.iter().find(|m| m.strategy == Strategy::Rebuild) {
        Some(step) => Plan::Rebuild(format!("step to version {}: {}", step.version, step.description)),
        None => Plan::Migrate(pending),
    }
}

/// Creates every step's schema on an empty index and stamps
/// [`SCHEMA_VERSION`], in one transaction.
pub(crate) fn create(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for step in MIGRATIONS {
        if let Strategy::InPlace(sql) = step.strategy {
            tx.execute_batch(sql)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Applies in-place steps, each in its own transaction with its version stamp.
pub(crate) fn migrate(conn: &mut Connection, steps: &[Migration]) -> rusqlite::Result<()> {
    for step in steps {
        let Strategy::InPlace(sql) = step.strategy else {
            continue;
        };
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step.version)?;
        tx.commit()?;
    }
    Ok(())
}

/// KNOWN BAD (origins/5, [`crate::flawed::Flaw::StampWithoutMigration`]):
/// stamps each step's version in one transaction and runs its SQL in the
/// next, so a failure or a crash between them leaves a version stamped whose
/// migration never ran.
#[cfg(feature = "flawed-variants")]
pub(crate) fn migrate_stamp_first(conn: &mut Connection, steps: &[Migration]) -> rusqlite::Result<()> {
    for step in steps {
        let Strategy::InPlace(sql) = step.strategy else {
            continue;
        };
        conn.pragma_update(None, "user_version", step.version)?;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.commit()?;
    }
    Ok(())
}

/// Whether an index stamped `version` really has that version's schema, from
/// the columns of its `files` table (empty if it has none). Version 0 means
/// no schema; 1 and 2 have `files` without `indexed_at_ms`; 3 adds it. A
/// version newer than this build's cannot be judged here and counts as
/// matching (its mismatch with [`SCHEMA_VERSION`] is reported elsewhere).
#[cfg(any(test, feature = "tearline-contract"))]
pub(crate) fn stamp_matches(version: u32, files_columns: &[String]) -> bool {
    let has = |column: &str| files_columns.iter().any(|c| c == column);
    match version {
        0 => files_columns.is_empty(),
        1 | 2 => has("path") && !has("indexed_at_ms"),
        3 => has("path") && has("indexed_at_ms"),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bumping SCHEMA_VERSION without adding its migration fails here.
    #[test]
    fn the_registry_reaches_the_current_version_one_step_at_a_time() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<u32> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(
            versions, expected,
            "MIGRATIONS must hold exactly one step per version up to SCHEMA_VERSION"
        );
        assert!(
            matches!(MIGRATIONS[0].strategy, Strategy::InPlace(_)),
            "version 1 creates the schema"
        );
    }

    #[test]
    fn stamps_are_checked_against_the_files_columns() {
        let v2: Vec<String> = ["path", "size", "hash", "mtime_ns"].map(String::from).to_vec();
        let mut v3 = v2.clone();
        v3.push("indexed_at_ms".to_string());
        assert!(stamp_matches(0, &[]));
        assert!(stamp_matches(2, &v2) && stamp_matches(1, &v2));
        assert!(stamp_matches(3, &v3));
        assert!(!stamp_matches(3, &v2), "stamped 3 without the column");
        assert!(!stamp_matches(2, &v3));
        assert!(!stamp_matches(0, &v2));
        assert_eq!(SCHEMA_VERSION, 3, "teach stamp_matches the new version");
    }

    #[test]
    fn plans_cover_every_case() {
        assert_eq!(plan(SCHEMA_VERSION, true), Plan::Current);
        assert_eq!(plan(0, false), Plan::Create);
        assert!(matches!(plan(SCHEMA_VERSION + 1, true), Plan::Rebuild(why) if why.contains("newer")));
        assert!(matches!(plan(1, true), Plan::Rebuild(why) if why.contains("version 2")));
        assert!(matches!(plan(2, true), Plan::Migrate(steps) if steps.len() == 1 && steps[0].version == 3));
        assert!(
            matches!(plan(0, true), Plan::Rebuild(_)),
            "tables without a version cannot be trusted"
        );
    }

    #[test]
    fn the_fresh_schema_equals_the_migrated_one() {
        let mut fresh = Connection::open_in_memory().expect("memory db");
        create(&mut fresh).expect("create");
        let mut migrated = Connection::open_in_memory().expect("memory db");
        let Strategy::InPlace(v1) = MIGRATIONS[0].strategy else {
            unreachable!()
        };
        migrated.execute_batch(v1).expect("v1");
        migrated.pragma_update(None, "user_version", 2).expect("stamp");
        let Plan::Migrate(steps) = plan(2, true) else {
            panic!("v2 migrates in place")
        };
        migrate(&mut migrated, &steps).expect("migrate");
        let schema = |c: &Connection| -> Vec<String> {
            let mut stmt = c
                .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
                .expect("prepare");
            stmt.query_map([], |r| r.get::<_, String>(0))
                .expect("query")
                .collect::<rusqlite::Result<_>>()
                .expect("rows")
        };
        assert_eq!(schema(&fresh), schema(&migrated));
        let version = |c: &Connection| -> u32 { c.pragma_query_value(None, "user_version", |r| r.get(0)).expect("v") };
        assert_eq!(version(&fresh), SCHEMA_VERSION);
        assert_eq!(version(&migrated), SCHEMA_VERSION);
    }

    #[test]
    fn a_failed_step_leaves_the_version_unstamped() {
        let mut conn = Connection::open_in_memory().expect("memory db");
        let Strategy::InPlace(v1) = MIGRATIONS[0].strategy else {
            unreachable!()
        };
        conn.execute_batch(v1).expect("v1");
        conn.pragma_update(None, "user_version", 2).expect("stamp");
        // The column the step adds already exists: the step fails.
        conn.execute_batch("ALTER TABLE files ADD COLUMN indexed_at_ms INTEGER")
            .expect("sabotage");
        let Plan::Migrate(steps) = plan(2, true) else {
            panic!("v2 migrates in place")
        };
        assert!(migrate(&mut conn, &steps).is_err());
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("v");
        assert_eq!(version, 2);
    }
}
