//! The `refstore` binary on the real filesystem: every command, and a clear
//! message with a non-zero exit for every error.

use std::path::Path;
use std::process::{Command, Output};

fn refstore(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refstore"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run refstore")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_cli_runs_the_store_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).expect("mkdir");
    std::fs::write(docs.join("cake.md"), "Lemon cake\n\nButter, sugar, lemons.").expect("write");
    std::fs::write(docs.join("fsync.md"), "Fsync\n\nMakes data durable, not names.").expect("write");

    let init = refstore(&root, &["init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let add = refstore(
        &root,
        &[
            "add",
            docs.join("cake.md").to_str().expect("utf8"),
            docs.join("fsync.md").to_str().expect("utf8"),
        ],
    );
    assert!(add.status.success(), "{}", stderr(&add));
    assert!(stdout(&add).contains("added cake.md"));

    let search = refstore(&root, &["search", "lemon cake", "-k", "1"]);
    assert!(search.status.success(), "{}", stderr(&search));
    assert!(stdout(&search).contains("cake.md"), "{}", stdout(&search));

    let get = refstore(&root, &["get", "fsync.md"]);
    assert_eq!(stdout(&get), "Fsync\n\nMakes data durable, not names.");

    let status = refstore(&root, &["--json", "status"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("status is JSON");
    assert_eq!(status["documents"], 2);
    assert_eq!(status["pending_intents"], 0);

    let verify = refstore(&root, &["verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));

    // A shared record outlives its file through a clean, until unshared.
    let share = refstore(&root, &["share", "cake.md"]);
    assert!(share.status.success(), "{}", stderr(&share));
    std::fs::remove_file(root.join("source/cake.md")).expect("delete behind its back");
    let kept = refstore(&root, &["--json", "reconcile", "--mode", "clean", "--force"]);
    let kept: serde_json::Value = serde_json::from_str(&stdout(&kept)).expect("stats are JSON");
    assert_eq!(
        (&kept["protected"][0], &kept["deleted"]),
        (&serde_json::json!("cake.md"), &serde_json::json!(0)),
        "{kept}"
    );
    std::fs::write(root.join("source/cake.md"), "Lemon cake\n\nButter, sugar, lemons.").expect("restore it");
    let unshare = refstore(&root, &["unshare", "cake.md"]);
    assert!(unshare.status.success(), "{}", stderr(&unshare));

    // A clean for one user leaves another's orphan alone.
    let own = refstore(&root, &["own", "fsync.md", "bob"]);
    assert!(own.status.success(), "{}", stderr(&own));
    assert!(stdout(&own).contains("fsync.md belongs to bob"), "{}", stdout(&own));
    std::fs::remove_file(root.join("source/fsync.md")).expect("delete behind its back");
    let alice = refstore(
        &root,
        &["--json", "reconcile", "--mode", "clean", "--force", "--user", "alice"],
    );
    assert!(alice.status.success(), "{}", stderr(&alice));
    let alice: serde_json::Value = serde_json::from_str(&stdout(&alice)).expect("stats are JSON");
    assert_eq!(
        (&alice["owner"], &alice["orphaned"], &alice["deleted"]),
        (
            &serde_json::json!("alice"),
            &serde_json::json!([]),
            &serde_json::json!(0)
        ),
        "{alice}"
    );
    let bad = refstore(&root, &["own", "fsync.md", "../bob"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("invalid owner"), "{}", stderr(&bad));
    let audit = refstore(&root, &["--json", "reconcile"]);
    let audit: serde_json::Value = serde_json::from_str(&stdout(&audit)).expect("stats are JSON");
    assert_eq!(audit["orphaned"][0], "fsync.md");
    let refused = refstore(&root, &["reconcile", "--mode", "clean"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    let clean = refstore(&root, &["--json", "reconcile", "--mode", "clean", "--force"]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    let clean: serde_json::Value = serde_json::from_str(&stdout(&clean)).expect("stats are JSON");
    assert_eq!(clean["deleted"], 1);

    let import_dir = tmp.path().join("import");
    std::fs::create_dir(&import_dir).expect("mkdir");
    std::fs::write(import_dir.join("one.md"), "One\n\nImported.").expect("write");
    std::fs::write(import_dir.join("two.md"), "Two\n\nImported too.").expect("write");
    let import = refstore(&root, &["--json", "import", import_dir.to_str().expect("utf8")]);
    assert!(import.status.success(), "{}", stderr(&import));
    let import: serde_json::Value = serde_json::from_str(&stdout(&import)).expect("stats are JSON");
    assert_eq!(import["files"], 2);

    let full = refstore(&root, &["--json", "rebuild", "--full"]);
    assert!(full.status.success(), "{}", stderr(&full));
    let full: serde_json::Value = serde_json::from_str(&stdout(&full)).expect("stats are JSON");
    assert_eq!(full["generation"], 2);
    let incremental = refstore(&root, &["--json", "rebuild", "--incremental"]);
    assert!(incremental.status.success(), "{}", stderr(&incremental));
    let verify = refstore(&root, &["verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));

    let rm = refstore(&root, &["rm", "cake.md"]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    let search = refstore(&root, &["search", "lemon cake"]);
    assert!(!stdout(&search).contains("cake.md"));
}

#[test]
fn every_error_is_a_clear_message_and_a_failing_exit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let missing = refstore(&root, &["status"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no store at"), "{}", stderr(&missing));

    assert!(refstore(&root, &["init"]).status.success());
    let again = refstore(&root, &["init"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));

    let rm = refstore(&root, &["rm", "nothing.md"]);
    assert!(!rm.status.success());
    assert!(stderr(&rm).contains("no document named"), "{}", stderr(&rm));

    let absent_file = refstore(&root, &["add", tmp.path().join("absent.md").to_str().expect("utf8")]);
    assert!(!absent_file.status.success());
    assert!(stderr(&absent_file).contains("absent.md"), "{}", stderr(&absent_file));

    let binary = tmp.path().join("blob.bin");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).expect("write");
    let not_text = refstore(&root, &["add", binary.to_str().expect("utf8")]);
    assert!(!not_text.status.success());
    assert!(stderr(&not_text).contains("not UTF-8 text"), "{}", stderr(&not_text));

    std::fs::write(root.join("CURRENT"), "garbage").expect("corrupt the pointer");
    let corrupt = refstore(&root, &["status"]);
    assert!(!corrupt.status.success());
    assert!(stderr(&corrupt).contains("damaged"), "{}", stderr(&corrupt));
}

#[test]
fn output_is_for_people_by_default_and_json_on_request_errors_included() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let missing = refstore(&root, &["--json", "status"]);
    assert!(!missing.status.success());
    let error: serde_json::Value = serde_json::from_str(&stdout(&missing)).expect("the error is JSON");
    assert!(
        error["error"].as_str().unwrap_or_default().contains("no store at"),
        "{error}"
    );
    assert_eq!(error["exit_status"], 1, "{error}");
    assert!(
        error["fix"].as_str().unwrap_or_default().contains("refstore init"),
        "{error}"
    );
    assert!(
        stderr(&missing).contains("to fix: `refstore init`"),
        "{}",
        stderr(&missing)
    );

    let init = refstore(&root, &["--json", "init"]);
    let init: serde_json::Value = serde_json::from_str(&stdout(&init)).expect("init is JSON");
    assert!(init["initialised"].is_string(), "{init}");

    // Several files: each is its own mutation; a failure says what is in
    // and what was not tried, and exits with the failure's status.
    let (a, bad, b) = (
        tmp.path().join("a.md"),
        tmp.path().join("bad.md"),
        tmp.path().join("b.md"),
    );
    std::fs::write(&a, "Alpha").expect("write");
    std::fs::write(&bad, [0xff, 0xfe]).expect("write");
    std::fs::write(&b, "Beta").expect("write");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let add = refstore(&root, &["--json", "add", &path(&a), &path(&bad), &path(&b)]);
    assert_eq!(add.status.code(), Some(1));
    assert!(
        stderr(&add).contains("1 of 3 files added") && stderr(&add).contains("not tried"),
        "{}",
        stderr(&add)
    );
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout(&add))
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every answer is JSON");
    assert_eq!(answers.len(), 2, "the partial result, then the error: {answers:?}");
    assert_eq!(answers[0]["done"][0]["name"], "a.md", "{answers:?}");
    assert_eq!(answers[0]["not_tried"][0], path(&b), "{answers:?}");
    assert!(
        answers[1]["error"].as_str().unwrap_or_default().contains("not UTF-8"),
        "{answers:?}"
    );
    let status = refstore(&root, &["status"]);
    let text = stdout(&status);
    assert!(
        text.lines().any(|l| l.starts_with("documents") && l.ends_with(" 1")),
        "human status: {text}"
    );
    assert!(!text.contains('{') && !text.contains("Status"), "no Debug text: {text}");

    // Import says what it left out.
    let dir = tmp.path().join("import");
    std::fs::create_dir_all(dir.join("nested")).expect("mkdir");
    std::fs::write(dir.join("c.md"), "Gamma").expect("write");
    let import = refstore(&root, &["import", &path(&dir)]);
    assert!(import.status.success(), "{}", stderr(&import));
    assert!(
        stderr(&import).contains("nested: a directory: import does not recurse"),
        "{}",
        stderr(&import)
    );
    // Off a terminal, progress is a line per phase (and every few seconds).
    for phase in [
        "import: reading 0/2",
        "import: staging 0/1 (c.md)",
        "import: indexing 0/1 (c.md)",
    ] {
        assert!(
            stderr(&import).contains(phase),
            "{phase:?} missing: {}",
            stderr(&import)
        );
    }
    let rebuild = refstore(&root, &["rebuild", "--full"]);
    assert!(
        stderr(&rebuild).contains("rebuild: indexing 1/2 (a.md)"),
        "{}",
        stderr(&rebuild)
    );

    // Recovery on a writable open names what it did, file by file.
    std::fs::write(root.join("journal/m7.json"), "{\"version\":1").expect("a torn journal");
    let rm = refstore(&root, &["rm", "a.md"]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    assert!(
        stderr(&rm).contains("recovered: malformed journals quarantined") && stderr(&rm).contains("journal/m7.json"),
        "{}",
        stderr(&rm)
    );
}

/// The schema of one `refstore --json` document (`schemas/refstore/`).
fn schema(command: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/refstore/{command}.schema.json"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the schema")).expect("JSON");
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every JSON document a command printed, each checked against `command`'s
/// schema (or, after a failure, the error's).
fn check(output: &Output, command: &str) -> Vec<serde_json::Value> {
    let documents: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout(output))
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{command}: not JSON ({e}): {}", stdout(output)));
    assert!(!documents.is_empty(), "{command} printed nothing: {}", stderr(output));
    for (i, document) in documents.iter().enumerate() {
        let last_of_a_failure = !output.status.success() && i == documents.len() - 1;
        let name = if last_of_a_failure { "error" } else { command };
        let errors: Vec<String> = schema(name).iter_errors(document).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{command}: {document} does not match {name}.schema.json: {errors:?}"
        );
        assert_eq!(document["schema_version"], 1, "{document}");
    }
    documents
}

#[test]
fn every_json_output_matches_its_schema() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let (a, bad) = (tmp.path().join("a.md"), tmp.path().join("bad.md"));
    std::fs::write(&a, "Alpha, about crash safety").expect("write");
    std::fs::write(&bad, [0xff]).expect("write");
    let dir = tmp.path().join("import");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("c.md"), "Gamma").expect("write");
    let run = |args: &[&str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        refstore(&root, &all)
    };
    check(&run(&["status"]), "status"); // no store yet: an error
    check(&run(&["init"]), "init");
    check(&run(&["add", &path(&a)]), "add");
    check(&run(&["add", &path(&a), &path(&bad), &path(&a)]), "add");
    check(&run(&["get", "a.md"]), "get");
    let hits = check(&run(&["search", "crash"]), "search");
    assert_eq!(hits[0]["hits"][0]["name"], "a.md");
    check(&run(&["verify"]), "verify");
    let status = check(&run(&["status"]), "status");
    assert_eq!(status[0]["documents"], 1);
    check(&run(&["import", &path(&dir)]), "import");
    check(&run(&["rebuild", "--full"]), "rebuild");
    check(&run(&["rebuild", "--incremental"]), "rebuild");
    check(&run(&["reconcile", "--mode", "sync"]), "reconcile");
    check(&run(&["reconcile", "--mode", "clean"]), "reconcile"); // needs --force: an error
    std::fs::write(root.join("journal/m9.json"), "{").expect("a torn journal");
    let upgrade = check(&run(&["upgrade"]), "upgrade");
    assert_eq!(upgrade[0]["journals"]["quarantined"][0]["file"], "journal/m9.json");
    check(&run(&["share", "a.md"]), "share");
    check(&run(&["share", "absent.md"]), "share"); // not indexed: an error
    check(&run(&["unshare", "a.md"]), "share");
    check(&run(&["rm", "a.md"]), "rm");
    check(&run(&["rm", "a.md"]), "rm"); // gone: an error
    // The schemas have teeth: a status is not a verify report, nor an error.
    let status = &status[0];
    assert!(!schema("verify").is_valid(status) && !schema("error").is_valid(status));
}
