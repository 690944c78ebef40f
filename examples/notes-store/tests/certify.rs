//! notes-store certifies itself against Tearline's catalogue: the careful
//! store passes, the flawed one fails with the invariants it breaks, and
//! both certificates are kept as snapshots (with run-dependent figures
//! redacted, so a change to the catalogue's size does not churn them).

use notes_store::under_tearline::NotesFactory;
use tearline::certify::{CertifyOptions, Verdict, assert_certified, certify, reproduce};
use tearline::engine;
use tearline_model::Invariant;
use tearline_sim_fs::Fault;

/// Every case of every applicable scenario: a few seconds for this store.
fn full() -> CertifyOptions {
    CertifyOptions::default()
}

/// [`full`] with the faults of a syscall only, none at rest: what the
/// careful store is certified against (see the test below for why).
fn syscall_faults() -> CertifyOptions {
    CertifyOptions {
        faults: engine::ALL_FAULTS.into_iter().filter(|f| !f.is_at_rest()).collect(),
        ..full()
    }
}

#[test]
fn the_careful_store_is_certified() {
    let certificate = certify(&NotesFactory { careful: true }, &syscall_faults()).expect("the harness ran");
    keep(&certificate);
    assert_certified(&certificate);
    let verdict = |i: Invariant| {
        certificate
            .invariants
            .iter()
            .find(|l| l.invariant == i)
            .unwrap()
            .verdict
    };
    // Checked, not skipped: the invariants its capabilities make applicable.
    for invariant in [
        Invariant::CommittedDurable,
        Invariant::NoWipeWithoutLock,
        Invariant::BackupPresent,
    ] {
        assert_eq!(verdict(invariant), Verdict::Passed, "{invariant}");
    }
    // Never passed by default: what it lacks is listed as not applicable.
    for invariant in [Invariant::NoOrphanVectors, Invariant::SchemaNeverMisStamped] {
        assert_eq!(verdict(invariant), Verdict::NotApplicable, "{invariant}");
    }
    // Each distinct state is checked once, and the certificate says so.
    for line in certificate
        .scenarios
        .iter()
        .filter(|s| s.not_applicable_because.is_none())
    {
        assert!(
            0 < line.distinct_states && line.distinct_states <= line.states_checked,
            "{}: {} distinct of {} states",
            line.name,
            line.distinct_states,
            line.states_checked
        );
    }
    assert!(
        certificate
            .scenarios
            .iter()
            .any(|s| s.distinct_states < s.states_checked),
        "some states repeat"
    );
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("passing", certificate.to_markdown());
    });
}

/// Faults at rest find a real gap in the careful store: it keeps no copy
/// of its index it could trust and never skips a note it cannot read, so
/// one unreadable sector (in a note, or in the index it derives from them)
/// fails every writable open. Its certificate therefore names the faults
/// it holds under, and this test keeps the gap visible.
#[test]
fn faults_at_rest_find_that_one_unreadable_sector_wedges_the_careful_store() {
    let factory = NotesFactory { careful: true };
    let options = CertifyOptions {
        faults: vec![Fault::LatentSector],
        scenarios: vec!["add-interrupted".to_string()],
        ..full()
    };
    let certificate = certify(&factory, &options).expect("the harness ran");
    assert!(!certificate.passed);
    let failed = certificate.failed();
    let lost = failed
        .iter()
        .find(|l| l.invariant == Invariant::CompleteDatabase)
        .expect("complete-database broke");
    let example = &lost.failures[0];
    assert!(example.evidence.contains("Input/output error"), "{}", example.evidence);
    let replayed = reproduce(&factory, &example.repro).expect("the line replays");
    assert!(
        replayed
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::CompleteDatabase),
        "{}",
        replayed.report
    );
}

#[test]
fn the_flawed_store_fails_with_evidence_and_a_repro_line_that_reproduces() {
    let factory = NotesFactory { careful: false };
    let certificate = certify(&factory, &full()).expect("the harness ran");
    assert!(!certificate.passed);
    let failed: Vec<Invariant> = certificate.failed().iter().map(|l| l.invariant).collect();
    assert!(failed.contains(&Invariant::CommittedDurable), "{failed:?}");
    assert!(failed.contains(&Invariant::CompleteDatabase), "{failed:?}");
    let example = &certificate.failed()[0].failures[0];
    assert!(!example.evidence.is_empty());
    let replayed = reproduce(&factory, &example.repro).expect("the line replays");
    assert!(
        replayed
            .violations
            .iter()
            .any(|v| v.invariant == certificate.failed()[0].invariant),
        "{}",
        replayed.report
    );
    let panic = std::panic::catch_unwind(|| assert_certified(&certificate)).expect_err("it must not pass");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("is not certified") && message.contains(&example.repro),
        "{message}"
    );
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("failing", certificate.to_markdown());
    });
}

#[test]
fn the_same_seed_gives_the_same_certificate() {
    let options = CertifyOptions {
        sample: (0, 20),
        ..CertifyOptions::default()
    };
    let first = certify(&NotesFactory { careful: false }, &options).unwrap().to_json();
    let second = certify(&NotesFactory { careful: false }, &options).unwrap().to_json();
    assert_eq!(first, second);
}

/// Writes the certificate where CI collects it (`$CERTIFICATE_DIR`, see
/// `ci/certify.yml`), when that is set.
fn keep(certificate: &tearline::certify::Certificate) {
    if let Some(dir) = std::env::var_os("CERTIFICATE_DIR") {
        std::fs::create_dir_all(&dir).expect("creating $CERTIFICATE_DIR");
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("notes-store.md"), certificate.to_markdown()).expect("writing the certificate");
        std::fs::write(dir.join("notes-store.json"), certificate.to_json()).expect("writing the certificate");
    }
}

/// Run-dependent figures redacted: counts, the harness version, repro
/// lines' case coordinates (the snapshot keeps shape and verdicts; the
/// tests above assert the figures that matter).
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\| \d+ ", "| N "),
        (r"\d+ post-fault states", "N post-fault states"),
        (r"\(\d+ cases\)", "(N cases)"),
        (r"\(\d+ distinct\)", "(N distinct)"),
        (r"tearline \d+\.\d+\.\d+", "tearline X.Y.Z"),
        (r"`([a-z-]+):0:[^`]+`", "`$1:0:CASE`"),
    ]
}
