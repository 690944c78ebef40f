//! The network scenarios: the reference store's HTTP service on a
//! simulated host, a client on another, turmoil's network between them.
//! The reference service keeps every invariant under every network fault;
//! a write-behind server is caught with a line that reproduces; the same
//! seed gives the same run, byte for byte.

use std::collections::BTreeSet;

use tearline::engine::EngineOptions;
use tearline::net::case::{NetCase, NetFault};
use tearline::net::{self, NetScenario};
use tearline::replay::reproduce_net_line;
use tearline::report::{REPORT_SCHEMA_VERSION, RunReport, ScenarioResult};
use tearline_model::Invariant;
use tearline_sim_fs::Fault;

fn scenario(name: &str) -> NetScenario {
    net::find(name).unwrap_or_else(|| panic!("no network scenario {name}"))
}

/// `name`'s matrix with the faults that strike requests as a whole, and
/// `faults` (a process crash, a power cut) at every syscall of every
/// request's handling.
fn run_with(name: &str, store: &str, seed: u64, faults: Vec<Fault>) -> ScenarioResult {
    let options = EngineOptions {
        seed,
        faults,
        ..EngineOptions::default()
    };
    net::run_scenario(&scenario(name), store, &options, 2, &|_, _| {}).expect("the harness ran")
}

/// `name`'s matrix with the faults that strike requests as a whole only.
fn run(name: &str, store: &str, seed: u64) -> ScenarioResult {
    run_with(name, store, seed, Vec::new())
}

#[test]
fn the_reference_service_keeps_every_invariant_under_every_network_fault() {
    for scenario in net::scenarios() {
        let result = run(&scenario.name, "refstore", 0);
        assert!(
            result.passed,
            "{}: {}\n{:#?}",
            scenario.name, result.verdict, result.net_failures
        );
        // Every request of the fault-free run, every fault, every outcome
        // of a power cut after the answer: at least the 6 faults without
        // outcomes and one power-cut outcome per model at each request.
        let requests = scenario.requests.iter().filter(|r| r.operation().is_some()).count() as u64;
        assert!(
            result.cases >= requests * 11,
            "{}: {} cases for {requests} requests",
            scenario.name,
            result.cases
        );
        assert_eq!(result.states_checked, result.cases, "every case's outcome exists");
        assert!(0 < result.distinct_states && result.distinct_states <= result.states_checked);
        for invariant in [
            Invariant::CommittedDurable,
            Invariant::FailedMeansNotApplied,
            Invariant::CompleteDatabase,
        ] {
            let found = result.invariants.iter().find(|i| i.invariant == invariant).unwrap();
            assert_eq!(found.status, tearline::report::InvariantStatus::Passed, "{invariant}");
        }
    }
}

#[test]
fn the_reference_service_survives_its_host_failing_at_every_syscall_of_every_request() {
    let only_requests = run("net-retried-delete", "refstore", 0);
    let result = run_with(
        "net-retried-delete",
        "refstore",
        0,
        vec![Fault::ProcessCrash, Fault::PowerCut],
    );
    assert!(result.passed, "{}\n{:#?}", result.verdict, result.net_failures);
    // Every syscall of the handling: a crash at each, and a power cut with
    // each distinct disk it can boot.
    let while_handling = result.cases - only_requests.cases;
    assert!(
        while_handling > 10 * only_requests.cases,
        "{while_handling} cases while handling, {} at requests",
        only_requests.cases
    );
    assert!(result.workload_syscalls > 500, "{} syscalls", result.workload_syscalls);
    assert_eq!(result.states_checked, result.cases, "every case of the matrix was run");
    assert!(result.reader_observations > 0, "no read was checked");
}

#[test]
fn a_store_without_intents_leaves_orphan_vectors_when_its_server_dies_in_a_request() {
    let store = "refstore/no-intents";
    // Requests lost, answers lost, the server failing around its answers:
    // nothing to see, the store's writes are whole by then.
    let at_requests = run("net-retried-delete", store, 0);
    assert!(at_requests.passed, "{}", at_requests.verdict);
    // Killed in the middle of a request's handling: the vector written
    // before the index row stays, owned by nothing.
    let result = run_with("net-retried-delete", store, 0, vec![Fault::ProcessCrash]);
    let orphans: Vec<&tearline::report::NetFailure> = result
        .net_failures
        .iter()
        .filter(|f| f.invariant == Invariant::NoOrphanVectors)
        .collect();
    assert!(!orphans.is_empty(), "{}", result.verdict);
    let line = &orphans[0].repro;
    let case: NetCase = line.parse().unwrap();
    assert_eq!(case.injection.fault, NetFault::CrashWhileHandling, "{line}");
    let replayed = reproduce_net_line(line, None).expect("the replay ran");
    assert!(
        replayed
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::NoOrphanVectors),
        "{line}: {}",
        replayed.report
    );
    assert!(replayed.report.contains("the server went down"), "{}", replayed.report);
    // What the dying server logged is in the run's log, not on stderr.
    assert!(
        replayed.report.contains("server log: refstore serve: "),
        "{}",
        replayed.report
    );
    let reference = reproduce_net_line(line, Some("refstore")).expect("the replay ran");
    assert!(reference.violations.is_empty(), "{}", reference.report);
}

#[test]
fn a_write_behind_server_loses_acknowledged_writes_and_the_line_reproduces() {
    let store = "refstore/acknowledge-before-write";
    let result = run("net-client-writes", store, 0);
    assert!(!result.passed, "{}", result.verdict);
    let durable: Vec<&tearline::report::NetFailure> = result
        .net_failures
        .iter()
        .filter(|f| f.invariant == Invariant::CommittedDurable)
        .collect();
    assert!(!durable.is_empty(), "{:#?}", result.net_failures);
    // Only a server that fails after answering a put can lose it.
    let faults: BTreeSet<NetFault> = durable
        .iter()
        .map(|f| f.repro.parse::<NetCase>().expect("a network line").injection.fault)
        .collect();
    assert!(
        faults.is_subset(&BTreeSet::from([
            NetFault::CrashAfterAnswer,
            NetFault::PowerCutAfterAnswer
        ])),
        "{faults:?}"
    );
    assert!(faults.contains(&NetFault::PowerCutAfterAnswer), "{faults:?}");
    let line = &durable[0].repro;
    assert!(line.ends_with(" --store refstore/acknowledge-before-write"), "{line}");
    let replayed = reproduce_net_line(line, None).expect("the replay ran");
    assert!(
        replayed
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::CommittedDurable),
        "{line} did not break committed-durable again:\n{}",
        replayed.report
    );
    assert!(replayed.report.contains("fails just after"), "{}", replayed.report);
    // The same line on the reference service holds.
    let reference = reproduce_net_line(line, Some("refstore")).expect("the replay ran");
    assert!(reference.violations.is_empty(), "{}", reference.report);
    // A failure after the answer to the run's last request is carried out
    // too, though the client is done by the time it comes.
    let shared = run("net-shared-record-kept", store, 0);
    let last = shared
        .net_failures
        .iter()
        .filter_map(|f| f.repro.parse::<NetCase>().ok())
        .map(|c| c.injection.rpc)
        .max();
    let requests = scenario("net-shared-record-kept")
        .requests
        .iter()
        .filter(|r| r.operation().is_some() || matches!(r, net::Request::Get { .. }))
        .count() as u64;
    // Its last request is a put: lost, though acknowledged, at that request.
    assert_eq!(last, Some(requests), "{:#?}", shared.net_failures);
}

/// The invariant each known-bad store design breaks when served over the
/// network, and a fault of the network it breaks it at.
#[test]
fn known_bad_store_designs_served_over_the_network_are_caught_by_the_right_invariant() {
    for (scenario, store, invariant, fault) in [
        // A clean that deletes records with an active share link.
        (
            "net-shared-record-kept",
            "refstore/clean-deletes-shared",
            Invariant::ProtectedRecordsKept,
            None,
        ),
        // A clean for one user that deletes another user's orphans.
        (
            "net-owner-scoped-reconcile",
            "refstore/reconcile-ignores-owner",
            Invariant::OwnerScopeKept,
            None,
        ),
        // A share link written without fsync: acknowledged, then lost to
        // a power cut after the answer.
        (
            "net-shared-record-kept",
            "refstore/share-without-fsync",
            Invariant::ProtectedRecordsKept,
            Some(NetFault::PowerCutAfterAnswer),
        ),
        // A clean without --force that cleans anyway and answers 200.
        (
            "net-shared-record-kept",
            "refstore/clean-without-force",
            Invariant::NoDestructiveWithoutForce,
            None,
        ),
        // origins/1's rebuild API: reads answer 503 while a rebuild runs.
        (
            "net-rebuild",
            "refstore/unavailable-while-rebuilding",
            Invariant::ReaderConsistent,
            None,
        ),
        // origins/1's in-place rebuild, served: readers find the index
        // half refilled.
        (
            "net-rebuild",
            "refstore/drop-and-reindex",
            Invariant::ReaderConsistent,
            None,
        ),
    ] {
        let result = run(scenario, store, 0);
        let failing: Vec<&tearline::report::NetFailure> = result
            .net_failures
            .iter()
            .filter(|f| f.invariant == invariant)
            .collect();
        assert!(
            !failing.is_empty(),
            "{store}: {}\n{:#?}",
            result.verdict,
            result.net_failures
        );
        if let Some(fault) = fault {
            assert!(
                failing
                    .iter()
                    .all(|f| f.repro.parse::<NetCase>().unwrap().injection.fault == fault),
                "{store}: {failing:#?}"
            );
        }
        let replayed = reproduce_net_line(&failing[0].repro, None).expect("the replay ran");
        assert!(
            replayed.violations.iter().any(|v| v.invariant == invariant),
            "{}: {}",
            failing[0].repro,
            replayed.report
        );
    }
    // The reference service keeps them, and says they were exercised.
    for (scenario, invariant) in [
        ("net-shared-record-kept", Invariant::ProtectedRecordsKept),
        ("net-shared-record-kept", Invariant::NoDestructiveWithoutForce),
        ("net-client-writes", Invariant::ReaderConsistent),
    ] {
        let reference = run(scenario, "refstore", 0);
        assert!(reference.passed, "{}", reference.verdict);
        let found = reference.invariants.iter().find(|i| i.invariant == invariant).unwrap();
        assert_eq!(found.status, tearline::report::InvariantStatus::Passed, "{invariant}");
    }
}

#[test]
fn a_network_scenario_s_report_matches_the_run_report_schema() {
    let failing = run("net-shared-record-kept", "refstore/clean-deletes-shared", 0);
    let passing = run("net-retried-delete", "refstore", 0);
    let report = RunReport {
        schema_version: REPORT_SCHEMA_VERSION,
        store: "refstore".to_string(),
        seed: 0,
        shard: "0/1".to_string(),
        faults: Vec::new(),
        scenarios: vec![failing, passing],
    };
    let document: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/run-report.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let complaints: Vec<String> = validator.iter_errors(&document).map(|e| e.to_string()).collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
    let lines = &document["scenarios"][0]["net_failures"];
    assert!(lines.as_array().is_some_and(|l| !l.is_empty()), "{document:#}");
    assert!(
        document["scenarios"][1].get("net_failures").is_none(),
        "no failures, no field"
    );
    // The report reads back as it was written.
    let back: RunReport = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn a_request_whose_answer_was_lost_is_retried_and_acknowledged_once() {
    let line = "net-retried-delete:0:rpc2:lose-response";
    let replayed = reproduce_net_line(line, None).expect("the replay ran");
    assert!(replayed.violations.is_empty(), "{}", replayed.report);
    let log = &replayed.report;
    // The delete was applied, its answer lost; the retry finds nothing to
    // delete (404), which the client takes as done, not as refused.
    assert!(log.contains("rpc2 applied (204), its answer lost"), "{log}");
    assert!(log.contains("rpc3 DELETE /v1/documents/d.md received"), "{log}");
    assert!(log.contains("client attempt 2 of DELETE d.md: 404"), "{log}");
    assert!(log.contains("client done"), "{log}");
}

#[test]
fn a_partition_longer_than_the_retries_leaves_the_request_uncertain_and_checked() {
    let replayed = reproduce_net_line("net-client-writes:0:rpc3:partition", None).expect("the replay ran");
    let log = &replayed.report;
    assert!(
        log.contains(&format!(
            "client attempt {} of PUT b.md: no answer",
            net::world::ATTEMPTS
        )),
        "{log}"
    );
    assert!(log.contains("client gives up on add b.md"), "{log}");
    assert!(replayed.violations.is_empty(), "{log}");
}

/// Checks `line` of `scenario` twice: the same log, the same trace on the
/// server's disk and on the vector server's (if any), the same state.
/// The case, and the first check. Unless the thread's last check was of
/// the same seed, the first check provisions the machines (a new store on
/// the server's disk) and the second runs on copies of them: so this also
/// shows that a copy goes on exactly as the machines it copies.
fn checked_twice(scenario: &NetScenario, line: &str) -> (NetCase, net::Checked) {
    let case: NetCase = line.parse().unwrap();
    let first = net::check_case(scenario, &case).unwrap().expect("the case exists");
    let second = net::check_case(scenario, &case).unwrap().expect("the case exists");
    assert_eq!(first.log, second.log, "{line}");
    assert_eq!(first.machine.trace().hash(), second.machine.trace().hash(), "{line}");
    let vectors = |checked: &net::Checked| checked.vectors.as_ref().map(|v| v.trace().hash());
    assert_eq!(vectors(&first), vectors(&second), "{line}");
    assert_eq!(first.state, second.state, "{line}");
    (case, first)
}

#[test]
fn the_same_seed_gives_the_same_run_byte_for_byte_and_another_seed_another() {
    let writes = scenario("net-client-writes");
    for line in [
        "net-client-writes:5:rpc3:late-response",
        "net-client-writes:5:rpc4:power-cut-after-answer:prefix:d0",
        "net-client-writes:5:rpc1:crash-before-answer",
        "net-client-writes:5:rpc4:crash@40",
        "net-client-writes:5:rpc4:power-cut@60:prefix:d0",
    ] {
        let (case, first) = checked_twice(&writes, line);
        let other = NetCase { seed: 6, ..case };
        let other = net::check_case(&writes, &other).unwrap().expect("the case exists");
        assert_ne!(
            first.log, other.log,
            "{line}: the seed does not reach the network's latencies"
        );
    }
    // The whole matrix, twice, and split over one thread or two.
    let options = EngineOptions {
        seed: 3,
        faults: Vec::new(),
        ..EngineOptions::default()
    };
    let one_thread = net::run_scenario(&scenario("net-retried-delete"), "refstore", &options, 1, &|_, _| {}).unwrap();
    assert_eq!(one_thread, run("net-retried-delete", "refstore", 3));
    assert_eq!(one_thread, run("net-retried-delete", "refstore", 3));
}

#[test]
fn a_line_for_a_case_that_does_not_exist_says_so() {
    for (line, says) in [
        (
            "net-client-writes:0:rpc1:power-cut-after-answer:prefix:d999",
            "has no prefix outcome",
        ),
        ("net-client-writes:0:rpc1:crash@99999", "not 100000"),
        ("net-client-writes:0:rpc99:lose-request", "not 99"),
    ] {
        let error = reproduce_net_line(line, None).unwrap_err().to_string();
        assert!(
            error.contains("no such case") && error.contains(says),
            "{line}: {error}"
        );
    }
    let error = reproduce_net_line("net-client-writes:0:rpc1:lose-request --store notes-store", None).unwrap_err();
    assert!(error.to_string().contains("do not serve store"), "{error}");
}

/// The scenario whose store keeps its vectors on a third host: the
/// reference service keeps every invariant under every fault of the
/// vector calls (and of the client's requests), and its matrix has them
/// all, at every vector call of every request.
#[test]
fn a_store_whose_vectors_are_on_a_third_host_keeps_every_invariant() {
    let remote = scenario("net-remote-vectors");
    assert!(remote.remote_vectors);
    let result = run("net-remote-vectors", "refstore", 0);
    assert!(result.passed, "{}: {:#?}", result.verdict, result.net_failures);
    // Every fault at every vector call a request's handling made: each
    // write request calls the vector server, and each call meets all four
    // network faults (the host failures come with `crash`, `power-cut`).
    let cases = net::cases(&remote, "refstore", &EngineOptions::default()).unwrap();
    let at_calls = |rpc: u64| -> BTreeSet<(u64, NetFault)> {
        cases
            .iter()
            .filter(|c| c.injection.rpc == rpc && c.injection.fault.at_vector_call())
            .map(|c| (c.injection.at.unwrap(), c.injection.fault))
            .collect()
    };
    // (seed 0: a put, the rebuild, a put, a replacement, a delete, an import)
    let writes = [1, 3, 8, 9, 10, 11];
    for rpc in writes {
        let struck = at_calls(rpc);
        let calls: BTreeSet<u64> = struck.iter().map(|(v, _)| *v).collect();
        assert!(!calls.is_empty(), "request {rpc} has no vector-call cases");
        for v in &calls {
            for fault in NetFault::AT_VECTOR_CALL {
                assert!(struck.contains(&(*v, fault)), "request {rpc}, call {v}: no {fault}");
            }
        }
        assert_eq!(
            calls,
            (0..calls.len() as u64).collect(),
            "request {rpc}: calls numbered from 0"
        );
    }
    // The run (without host failures) checked every vector-call case that
    // needs none, each of which existed on its replay.
    let network_only = cases
        .iter()
        .filter(|c| c.injection.fault.at_vector_call() && c.injection.crash.is_none())
        .filter(|c| c.injection.fault != NetFault::VectorCrashAfterApply)
        .count() as u64;
    assert!(network_only > 0);
    assert!(
        result.cases > network_only,
        "{} cases, {network_only} at vector calls",
        result.cases
    );
    assert_eq!(result.states_checked, result.cases, "every case exists on its replay");
    for invariant in [
        Invariant::NoOrphanVectors,
        Invariant::CommittedDurable,
        Invariant::AtomicOp,
    ] {
        let found = result.invariants.iter().find(|i| i.invariant == invariant).unwrap();
        assert_eq!(found.status, tearline::report::InvariantStatus::Passed, "{invariant}");
    }
    // Each case that strikes a vector call, and the host failures at one,
    // replayed: the vector server is killed or loses power after applying
    // a write, restarts on its disk, and the store's retry finds it.
    for (line, says) in [
        (
            "net-remote-vectors:0:rpc3:vector-crash-after-apply@1",
            "the vector server's process is killed",
        ),
        (
            "net-remote-vectors:0:rpc3:vector-power-cut-after-apply@1:prefix:d0",
            "the vector server's host loses power",
        ),
        (
            "net-remote-vectors:0:rpc1:vector-partition-after-apply@1",
            "then server and vectors partitioned",
        ),
        ("net-remote-vectors:0:rpc1:vector-lose-response@1", "its answer lost"),
        // The rebuild's job killed at the root's fsync after renaming
        // `CURRENT`: the store once showed the new generation after the
        // restart and lost it to a power cut (recovery-idempotent).
        (
            "net-remote-vectors:0:rpc2:job-crash@250",
            "switching from gen-000001 to gen-000002 failed",
        ),
    ] {
        let replayed = reproduce_net_line(line, None).expect("the replay ran");
        assert!(replayed.violations.is_empty(), "{line}: {}", replayed.report);
        assert!(replayed.report.contains(says), "{line}: {}", replayed.report);
        assert!(
            replayed.report.contains("vector server restarts") || !says.contains("vector server's"),
            "{}",
            replayed.report
        );
    }
    // A line past the calls a request made says so.
    let error = reproduce_net_line("net-remote-vectors:0:rpc1:vector-lose-request@999", None).unwrap_err();
    assert!(error.to_string().contains("vector calls or fewer"), "{error}");
}

/// Known-bad designs the third host catches, at faults of the vector calls
/// only a remote vector store has, with lines that reproduce: a store that
/// writes its vectors without an intent (origins/2's dual write), and a
/// vector client that retries an upsert as a new vector.
#[test]
fn faults_of_the_vector_calls_catch_what_a_local_vector_store_cannot_show() {
    for (store, fault) in [
        ("refstore/no-intents", NetFault::VectorPartitionAfterApply),
        ("refstore/retried-upsert-duplicates", NetFault::VectorLoseResponse),
    ] {
        let result = run("net-remote-vectors", store, 0);
        assert!(!result.passed, "{store} passed");
        let at_vector_calls: Vec<_> = result
            .net_failures
            .iter()
            .filter(|f| f.repro.parse::<NetCase>().unwrap().injection.fault == fault)
            .collect();
        assert!(!at_vector_calls.is_empty(), "{store}: {:#?}", result.net_failures);
        assert!(
            at_vector_calls
                .iter()
                .all(|f| f.invariant == Invariant::NoOrphanVectors)
        );
        let line = &at_vector_calls[0].repro;
        let replayed = reproduce_net_line(line, None).expect("the replay ran");
        assert!(
            replayed
                .violations
                .iter()
                .any(|v| v.invariant == Invariant::NoOrphanVectors),
            "{line}: {}",
            replayed.report
        );
        // The reference service, at the same case, keeps it.
        let reference = reproduce_net_line(line, Some("refstore")).expect("the replay ran");
        assert!(reference.violations.is_empty(), "{line}: {}", reference.report);
    }
}

/// A run with a third host, and the store's work on a thread of its own in
/// lockstep with it, is as deterministic as the others: the same line
/// twice gives the same log and the same traces on both disks.
#[test]
fn a_run_with_the_vector_server_as_a_third_host_is_the_same_twice() {
    let remote = scenario("net-remote-vectors");
    for line in [
        "net-remote-vectors:4:rpc9:vector-partition@0",
        "net-remote-vectors:4:rpc9:vector-crash-after-apply@1",
        "net-remote-vectors:4:rpc9:vector-power-cut-after-apply@1:prefix:d0",
        // The server's host killed while the store's work waits on a
        // vector call (a syscall after the request's first call).
        "net-remote-vectors:4:rpc9:crash@10",
        "net-remote-vectors:4:rpc2:job-crash@30",
        "net-remote-vectors:4:rpc6:late-response",
    ] {
        let (_, first) = checked_twice(&remote, line);
        assert!(first.vectors.is_some(), "{line}: the vector server's disk was checked");
    }
}

/// A rebuild asked over HTTP is a job that runs after its `202`: the
/// server's host fails at every syscall of it. The reference store keeps
/// everything; origins/1's in-place rebuild (drop the index, refill it)
/// loses acknowledged documents there, and only there.
#[test]
fn a_rebuild_job_is_struck_at_every_syscall_after_its_request_was_answered() {
    let line = "net-rebuild:0:rpc3:job-crash@60";
    let replayed = reproduce_net_line(line, None).expect("the replay ran");
    assert!(replayed.violations.is_empty(), "{}", replayed.report);
    for says in [
        "rpc3 answered 202",
        "server starts a background job (of rpc3)",
        "the server's process is killed",
        "rpc4 answered 404",
        "client cannot tell how job 1 ended",
    ] {
        assert!(replayed.report.contains(says), "{says}: {}", replayed.report);
    }
    let past = reproduce_net_line("net-rebuild:0:rpc3:job-crash@99999", None).unwrap_err();
    assert!(past.to_string().contains("the job of request 3 made"), "{past}");

    let in_place = run_with("net-rebuild", "refstore/drop-and-reindex", 0, vec![Fault::ProcessCrash]);
    let lost: Vec<_> = in_place
        .net_failures
        .iter()
        .filter(|f| f.invariant == Invariant::CommittedDurable)
        .collect();
    assert!(!lost.is_empty(), "{:#?}", in_place.net_failures);
    assert!(
        lost.iter()
            .all(|f| f.repro.parse::<NetCase>().unwrap().injection.fault == NetFault::JobCrash),
        "{lost:#?}"
    );
    let replayed = reproduce_net_line(&lost[0].repro, None).expect("the replay ran");
    assert!(
        replayed
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::CommittedDurable),
        "{}",
        replayed.report
    );
    let reference = reproduce_net_line(&lost[0].repro, Some("refstore")).expect("the replay ran");
    assert!(reference.violations.is_empty(), "{}", reference.report);
    let reference = run_with("net-rebuild", "refstore", 0, vec![Fault::ProcessCrash]);
    assert!(reference.passed, "{}: {:#?}", reference.verdict, reference.net_failures);
}

/// A full rebuild lets readers in after each document and once it has
/// switched; each time, every document the client's model knows is read
/// through the service's routes. The reference service serves each from
/// the live generation; a service that answers 503 while it rebuilds, and
/// one whose store rebuilds in place, are caught there, with no fault at
/// all (the line's late answer changes nothing the reads see).
#[test]
fn readers_meet_every_full_rebuild_between_its_documents_and_after_its_switch() {
    let line = "net-rebuild:0:rpc1:late-response";
    let reference = reproduce_net_line(line, Some("refstore")).expect("the replay ran");
    assert!(reference.violations.is_empty(), "{}", reference.report);
    let passes: Vec<&str> = reference
        .report
        .lines()
        .filter(|l| l.contains("lets readers in"))
        .collect();
    // Two rebuilds of two documents each: after each document, and after
    // the switch.
    assert_eq!(passes.len(), 6, "{}", reference.report);
    assert!(
        passes.iter().all(|l| l.matches(" 200").count() == 2),
        "{}",
        reference.report
    );
    for (store, found) in [
        ("refstore/unavailable-while-rebuilding", "was answered 503"),
        ("refstore/drop-and-reindex", "found no document"),
    ] {
        let flawed = reproduce_net_line(line, Some(store)).expect("the replay ran");
        let broken: Vec<_> = flawed
            .violations
            .iter()
            .filter(|v| v.invariant == Invariant::ReaderConsistent)
            .collect();
        assert!(
            broken
                .iter()
                .any(|v| v.evidence.contains("while a background job had let readers in") && v.evidence.contains(found)),
            "{store}: {}",
            flawed.report
        );
    }
}

/// The vector server's disk goes bad under the store (garbage over the
/// middle of each segment, found when it restarts): the reference store takes
/// the server's word that the collection is damaged as damage to a derived
/// file and rebuilds it from its sources, under every fault of the
/// requests. A vector client that reports the damage as an I/O error
/// leaves the store unable to write or recover (rebuildable-from-source),
/// with a line that reproduces.
#[test]
fn a_damaged_vector_server_is_rebuilt_from_the_sources() {
    let reference = run("net-damaged-vectors", "refstore", 0);
    assert!(reference.passed, "{}: {:#?}", reference.verdict, reference.net_failures);
    let found = reference
        .invariants
        .iter()
        .find(|i| i.invariant == Invariant::RebuildableFromSource)
        .unwrap();
    assert_eq!(found.status, tearline::report::InvariantStatus::Passed);
    let line = "net-damaged-vectors:0:rpc1:late-response";
    let replayed = reproduce_net_line(line, Some("refstore")).expect("the replay ran");
    assert!(replayed.violations.is_empty(), "{}", replayed.report);
    assert!(
        replayed.report.contains("client attempt 2 of PUT d.md: 201"),
        "the write after the damage is served: {}",
        replayed.report
    );

    let flawed = run("net-damaged-vectors", "refstore/damage-as-io-error", 0);
    let failing: Vec<_> = flawed
        .net_failures
        .iter()
        .filter(|f| f.invariant == Invariant::RebuildableFromSource)
        .collect();
    assert!(!failing.is_empty(), "{}: {:#?}", flawed.verdict, flawed.net_failures);
    let replayed = reproduce_net_line(&failing[0].repro, None).expect("the replay ran");
    assert!(
        replayed
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::RebuildableFromSource && v.evidence.contains("vector")),
        "{}: {}",
        failing[0].repro,
        replayed.report
    );
}
