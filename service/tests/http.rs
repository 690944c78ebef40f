//! `refstore serve` over real HTTP on loopback: who may call what, and
//! what a bad request gets (a problem document, never a panic, nothing
//! changed).

mod support;

use serde_json::json;
use support::{ADMIN, READER, Server, WRITER, refstore};
use tearline_service::Role;
use tearline_service::api::ENDPOINTS;

/// A request to `endpoint` that succeeds for a caller with the role (the
/// store holds `a.md`).
fn request_for(method: &str, pattern: &str) -> (String, Option<serde_json::Value>) {
    let body = match (method, pattern) {
        ("PUT", "/v1/documents/{name}/owner") => Some(json!({"owner": "alice"})),
        ("PUT", _) => Some(json!({"content": "written by the role table"})),
        ("POST", "/v1/import") => Some(json!({"documents": [{"name": "imported.md", "content": "imported"}]})),
        ("POST", "/v1/rebuild") => Some(json!({"mode": "incremental"})),
        ("POST", "/v1/reconcile") => Some(json!({"mode": "audit"})),
        _ => None,
    };
    let path = match (method, pattern) {
        (_, "/v1/documents/{name}/share") => "/v1/documents/a.md/share".to_string(),
        (_, "/v1/documents/{name}/owner") => "/v1/documents/a.md/owner".to_string(),
        ("DELETE", _) => "/v1/documents/deleted.md".to_string(),
        ("PUT", _) => "/v1/documents/put.md".to_string(),
        (_, "/v1/search") => "/v1/search?q=table&k=3".to_string(),
        _ => pattern.replace("{name}", "a.md").replace("{id}", "1"),
    };
    (path, body)
}

/// Calls every endpoint as every kind of caller; returns the table (one
/// line per endpoint) and every call whose outcome was not the one the
/// endpoint's role asks for.
fn role_table(server: &Server) -> (String, Vec<String>) {
    assert_eq!(
        server
            .call("PUT", "/v1/documents/a.md", Some(WRITER), Some(json!({"content": "a"})))
            .0,
        201
    );
    // Job 1 exists for GET /v1/jobs/1.
    let (status, job) = server.call("POST", "/v1/rebuild", Some(ADMIN), Some(json!({"mode": "full"})));
    assert_eq!((status, job["job_id"].as_u64()), (202, Some(1)));
    assert_eq!(server.wait_for_job(1)["state"], "succeeded");

    let callers: [(&str, Option<&str>, Option<Role>); 5] = [
        ("no key", None, None),
        ("unknown key", Some("not-a-key-of-this-server"), None),
        ("reader", Some(READER), Some(Role::Reader)),
        ("writer", Some(WRITER), Some(Role::Writer)),
        ("admin", Some(ADMIN), Some(Role::Admin)),
    ];
    let mut table = String::new();
    let mut wrong = Vec::new();
    for &(method, pattern, needed) in ENDPOINTS {
        table.push_str(&format!("{method:6} {pattern:22}"));
        for &(who, key, role) in &callers {
            if method == "DELETE" && pattern == "/v1/documents/{name}" {
                // Something to delete for every caller that may.
                server.call(
                    "PUT",
                    "/v1/documents/deleted.md",
                    Some(WRITER),
                    Some(json!({"content": "d"})),
                );
            }
            let (path, body) = request_for(method, pattern);
            let (status, answer) = server.call(method, &path, key, body);
            let expected = match (needed, role) {
                (None, _) => "ok",
                (Some(_), None) => "401",
                (Some(needed), Some(role)) if role < needed => "403",
                _ => "ok",
            };
            let got = match status {
                401 => "401",
                403 => "403",
                200..=299 => "ok",
                _ => panic!("{method} {path} as {who}: {status} {answer}"),
            };
            if got != expected {
                wrong.push(format!("{method} {pattern} as {who}: {got}, expected {expected}"));
            }
            if method == "POST" && pattern == "/v1/rebuild" && status == 202 {
                server.wait_for_job(answer["job_id"].as_u64().unwrap());
            }
            table.push_str(&format!(" {who}:{got}"));
        }
        table.push('\n');
    }
    assert_eq!(table.lines().count(), ENDPOINTS.len());
    (table, wrong)
}

#[test]
fn every_endpoint_refuses_the_roles_below_its_own_and_serves_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("store"), &[]);
    let (table, wrong) = role_table(&server);
    eprintln!("{table}");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn an_admin_endpoint_that_forgets_its_role_check_is_caught_by_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("store"), &["--flaw", "delete-without-role-check"]);
    let (_, wrong) = role_table(&server);
    assert_eq!(
        wrong,
        [
            "DELETE /v1/documents/{name} as reader: ok, expected 403",
            "DELETE /v1/documents/{name} as writer: ok, expected 403"
        ]
    );
}

#[test]
fn reconcile_that_deletes_needs_admin_unless_it_is_a_dry_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let server = Server::start(&root, &[]);
    server.call(
        "PUT",
        "/v1/documents/gone.md",
        Some(WRITER),
        Some(json!({"content": "soon gone"})),
    );
    std::fs::remove_file(root.join("source/gone.md")).unwrap();
    for mode in ["clean", "full"] {
        let (status, problem) = server.call(
            "POST",
            "/v1/reconcile",
            Some(WRITER),
            Some(json!({"mode": mode, "force": true})),
        );
        assert_eq!(status, 403, "{problem}");
        let (status, stats) = server.call(
            "POST",
            "/v1/reconcile",
            Some(WRITER),
            Some(json!({"mode": mode, "dry_run": true})),
        );
        assert_eq!((status, &stats["orphaned"]), (200, &json!(["gone.md"])), "{stats}");
    }
    let (status, problem) = server.call("POST", "/v1/reconcile", Some(ADMIN), Some(json!({"mode": "clean"})));
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("urn:tearline:problem:force-required"))
    );
    let (status, stats) = server.call(
        "POST",
        "/v1/reconcile",
        Some(ADMIN),
        Some(json!({"mode": "clean", "force": true})),
    );
    assert_eq!((status, stats["deleted"].as_u64()), (200, Some(1)), "{stats}");
    let (status, _) = server.call("GET", "/v1/documents/gone.md", Some(READER), None);
    assert_eq!(status, 404);
}

#[test]
fn a_clean_keeps_a_shared_record_and_says_it_is_protected() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let server = Server::start(&root, &[]);
    for name in ["kept.md", "gone.md"] {
        server.call(
            "PUT",
            &format!("/v1/documents/{name}"),
            Some(WRITER),
            Some(json!({"content": name})),
        );
        std::fs::remove_file(root.join("source").join(name)).unwrap();
    }
    assert_eq!(
        server.call("PUT", "/v1/documents/kept.md/share", Some(WRITER), None).0,
        200
    );
    assert_eq!(
        server
            .call("PUT", "/v1/documents/absent.md/share", Some(WRITER), None)
            .0,
        404
    );
    let (status, stats) = server.call(
        "POST",
        "/v1/reconcile",
        Some(ADMIN),
        Some(json!({"mode": "clean", "force": true})),
    );
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["orphaned"], json!(["gone.md", "kept.md"]), "{stats}");
    assert_eq!(stats["protected"], json!(["kept.md"]), "{stats}");
    assert_eq!(stats["deleted"], 1, "{stats}");
    let (_, list) = server.call("GET", "/v1/documents", Some(READER), None);
    assert_eq!(list["documents"], json!(["kept.md"]));
    // Revoked, it is an orphan like any other.
    assert_eq!(
        server
            .call("DELETE", "/v1/documents/kept.md/share", Some(WRITER), None)
            .0,
        200
    );
    let (_, stats) = server.call(
        "POST",
        "/v1/reconcile",
        Some(ADMIN),
        Some(json!({"mode": "clean", "force": true})),
    );
    assert_eq!(
        (stats["deleted"].as_u64(), &stats["protected"]),
        (Some(1), &json!([])),
        "{stats}"
    );
}

#[test]
fn a_reconcile_for_one_user_touches_only_their_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let server = Server::start(&root, &[]);
    for (name, owner) in [("a1.md", Some("alice")), ("b1.md", Some("bob")), ("n1.md", None)] {
        let body = match owner {
            Some(owner) => json!({"content": name, "owner": owner}),
            None => json!({"content": name}),
        };
        let (status, answer) = server.call("PUT", &format!("/v1/documents/{name}"), Some(WRITER), Some(body));
        assert_eq!(status, 201, "{answer}");
    }
    let (status, document) = server.call("GET", "/v1/documents/b1.md", Some(READER), None);
    assert_eq!((status, &document["owner"]), (200, &json!("bob")), "{document}");
    let (_, document) = server.call("GET", "/v1/documents/n1.md", Some(READER), None);
    assert_eq!(document["owner"], json!(null), "{document}");
    for name in ["a1.md", "b1.md", "n1.md"] {
        std::fs::remove_file(root.join("source").join(name)).unwrap();
    }
    let (status, stats) = server.call(
        "POST",
        "/v1/reconcile",
        Some(ADMIN),
        Some(json!({"mode": "clean", "force": true, "user": "alice"})),
    );
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        (&stats["owner"], &stats["orphaned"], &stats["deleted"]),
        (&json!("alice"), &json!(["a1.md"]), &json!(1)),
        "{stats}"
    );
    let (_, list) = server.call("GET", "/v1/documents", Some(READER), None);
    assert_eq!(list["documents"], json!(["b1.md", "n1.md"]));
    // An owner changed over the API moves the record into the new scope.
    let (status, answer) = server.call(
        "PUT",
        "/v1/documents/n1.md/owner",
        Some(WRITER),
        Some(json!({"owner": "bob"})),
    );
    assert_eq!((status, &answer["owner"]), (200, &json!("bob")), "{answer}");
    let (_, stats) = server.call(
        "POST",
        "/v1/reconcile",
        Some(ADMIN),
        Some(json!({"mode": "full", "force": true, "user": "bob"})),
    );
    assert_eq!(stats["deleted"], 2, "{stats}");
    let (_, list) = server.call("GET", "/v1/documents", Some(READER), None);
    assert_eq!(list["documents"], json!([]));
    // Ids that are not ids, and owners of documents that do not exist.
    for (method, path, body) in [
        ("PUT", "/v1/documents/x.md", json!({"content": "x", "owner": "../etc"})),
        ("PUT", "/v1/documents/x.md/owner", json!({"owner": "alice"})),
        ("PUT", "/v1/documents/b1.md/owner", json!({"owner": ""})),
        ("POST", "/v1/reconcile", json!({"mode": "audit", "user": "a b"})),
    ] {
        let (status, problem) = server.call(method, path, Some(ADMIN), Some(body));
        assert!(matches!(status, 400 | 404), "{method} {path}: {status} {problem}");
        assert!(
            problem["type"].is_string() && problem["detail"].is_string(),
            "{problem}"
        );
    }
    let (status, _) = server.call("GET", "/v1/documents/x.md", Some(READER), None);
    assert_eq!(status, 404, "a put refused for its owner wrote nothing");
}

#[test]
fn bad_requests_get_a_problem_document_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let server = Server::start(&root, &["--max-body-bytes", "4096"]);
    server.call(
        "PUT",
        "/v1/documents/kept.md",
        Some(WRITER),
        Some(json!({"content": "kept"})),
    );

    // Names that try to leave source/, or are not names.
    for name in [
        "..%2F..%2Fescaped.md",
        "..",
        ".hidden",
        "a%2Fb.md",
        "%00.md",
        &"n".repeat(201),
    ] {
        let (status, problem) = server.call(
            "PUT",
            &format!("/v1/documents/{name}"),
            Some(WRITER),
            Some(json!({"content": "x"})),
        );
        assert_eq!(status, 400, "{name}: {problem}");
    }
    let (status, problem) = server.call(
        "POST",
        "/v1/import",
        Some(WRITER),
        Some(json!({"documents": [{"name": "fine.md", "content": "x"}, {"name": "../escaped.md", "content": "x"}]})),
    );
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("urn:tearline:problem:invalid-name")),
        "{problem}"
    );
    let (status, problem) = server.call(
        "POST",
        "/v1/import",
        Some(WRITER),
        Some(json!({"documents": [{"name": "twice.md", "content": "x"}, {"name": "twice.md", "content": "y"}]})),
    );
    assert_eq!(status, 400, "{problem}");

    // Oversized, malformed, unknown fields, unknown modes, bad k.
    let (status, problem) = server.call_raw(
        "PUT",
        "/v1/documents/big.md",
        Some(WRITER),
        format!("{{\"content\":\"{}\"}}", "x".repeat(5000)).into_bytes(),
    );
    assert_eq!(status, 413, "{problem}");
    assert_eq!(
        server
            .call_raw("POST", "/v1/import", Some(WRITER), b"{not json".to_vec())
            .0,
        400
    );
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/documents/x.md",
                Some(WRITER),
                Some(json!({"content": "x", "author": "me"}))
            )
            .0,
        400
    );
    assert_eq!(
        server
            .call("POST", "/v1/rebuild", Some(ADMIN), Some(json!({"mode": "partial"})))
            .0,
        400
    );
    assert_eq!(
        server
            .call("POST", "/v1/reconcile", Some(ADMIN), Some(json!({"mode": "wipe"})))
            .0,
        400
    );
    assert_eq!(server.call("GET", "/v1/search?q=x&k=0", Some(READER), None).0, 400);
    assert_eq!(server.call("GET", "/v1/search?q=x&k=1000", Some(READER), None).0, 400);
    assert_eq!(server.call("GET", "/v1/search", Some(READER), None).0, 400);
    assert_eq!(server.call("GET", "/v1/jobs/not-a-number", Some(READER), None).0, 400);
    assert_eq!(server.call("GET", "/v1/jobs/99", Some(READER), None).0, 404);
    assert_eq!(server.call("GET", "/v1/documents/absent.md", Some(READER), None).0, 404);
    assert_eq!(
        server.call("DELETE", "/v1/documents/absent.md", Some(ADMIN), None).0,
        404
    );
    assert_eq!(server.call("GET", "/v2/documents", Some(READER), None).0, 404);
    assert_eq!(server.call("PATCH", "/v1/documents/kept.md", Some(ADMIN), None).0, 405);
    let (status, _) = server.call_raw("GET", "/v1/documents", Some(&format!("{READER} {READER}")), Vec::new());
    assert_eq!(status, 401);

    // Nothing changed: one document, the store verifies, nothing escaped.
    let (_, list) = server.call("GET", "/v1/documents", Some(READER), None);
    assert_eq!(list["documents"], json!(["kept.md"]));
    drop(server);
    assert!(!tmp.path().join("escaped.md").exists() && !root.join("escaped.md").exists());
    assert!(refstore(&root, &["verify"]).status.success());
}

#[test]
fn the_server_will_not_start_without_good_keys_and_binds_loopback_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    assert!(refstore(&root, &["init"]).status.success());
    let run = |env: Option<&str>, args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_refstore"));
        command
            .arg("--root")
            .arg(&root)
            .arg("serve")
            .args(args)
            .env_remove("REFSTORE_KEYS");
        if let Some(keys) = env {
            command.env("REFSTORE_KEYS", keys);
        }
        command.output().unwrap()
    };
    let none = run(None, &[]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no keys"), "{none:?}");
    let short = run(Some("admin:short"), &[]);
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("at least 16"),
        "{short:?}"
    );
    let file = tmp.path().join("keys");
    std::fs::write(&file, "superuser 0123456789abcdef0123\n").unwrap();
    let bad_file = run(None, &["--keys", file.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&bad_file.stderr).contains("line 1: unknown role"),
        "{bad_file:?}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_refstore"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 127.0.0.1:8750]"));
}
