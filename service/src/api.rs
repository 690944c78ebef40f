//! The HTTP API, under `/v1`. Every handler checks the caller's role first
//! ([`ENDPOINTS`] is the table), runs the store's work where [`Offload`]
//! says (a blocking thread in a server, inline in a simulation) and answers
//! JSON; every error is a [`Problem`].

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tearline_refstore::{RebuildMode, ReconcileMode, ReconcileOptions};

use crate::keys::Role;
use crate::listen::Offload;
use crate::problem::Problem;
use crate::service::Service;

/// The largest request body accepted by default (`--max-body-bytes`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The most results a search returns.
pub const MAX_SEARCH_RESULTS: usize = 100;

/// Every endpoint and the least role it needs (`None`: no key needed).
/// `POST /v1/reconcile` needs [`Role::Admin`] for the modes that delete
/// (`clean`, `full`) unless it is a dry run, [`Role::Writer`] otherwise.
pub const ENDPOINTS: &[(&str, &str, Option<Role>)] = &[
    ("GET", "/v1/health", None),
    ("GET", "/v1/documents", Some(Role::Reader)),
    ("GET", "/v1/documents/{name}", Some(Role::Reader)),
    ("PUT", "/v1/documents/{name}", Some(Role::Writer)),
    ("DELETE", "/v1/documents/{name}", Some(Role::Admin)),
    ("PUT", "/v1/documents/{name}/share", Some(Role::Writer)),
    ("DELETE", "/v1/documents/{name}/share", Some(Role::Writer)),
    ("PUT", "/v1/documents/{name}/owner", Some(Role::Writer)),
    ("POST", "/v1/import", Some(Role::Writer)),
    ("GET", "/v1/search", Some(Role::Reader)),
    ("POST", "/v1/rebuild", Some(Role::Admin)),
    ("GET", "/v1/jobs/{id}", Some(Role::Reader)),
    ("POST", "/v1/reconcile", Some(Role::Writer)),
];

/// What every handler gets: the service, the body limit, and where the
/// store's work runs.
#[derive(Clone, Debug)]
struct Api {
    service: Arc<Service>,
    max_body_bytes: usize,
    offload: Offload,
}

type Shared = State<Api>;
type Answer = Result<Response, Problem>;

/// The service's routes, the store's work on blocking threads (a server's).
pub fn router(service: Arc<Service>, max_body_bytes: usize) -> Router {
    router_with(service, max_body_bytes, Offload::Threads)
}

/// The service's routes, the store's work run as `offload` says
/// ([`Offload::Bridged`] in a deterministic simulation, where every host is
/// a task of one thread and the store's work runs in lockstep with it).
pub fn router_with(service: Arc<Service>, max_body_bytes: usize, offload: Offload) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/documents", get(list))
        .route(
            "/v1/documents/{name}",
            get(get_document).put(put_document).delete(delete_document),
        )
        .route("/v1/documents/{name}/share", axum::routing::put(share).delete(unshare))
        .route("/v1/documents/{name}/owner", axum::routing::put(set_owner))
        .route("/v1/import", post(import))
        .route("/v1/search", get(search))
        .route("/v1/rebuild", post(rebuild))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/reconcile", post(reconcile))
        .fallback(|| async { Problem::not_found("no such endpoint (the API is under /v1)") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(Api {
            service,
            max_body_bytes,
            offload,
        })
}

/// 401 without a (well-formed, known) bearer key; 403 if its role is below `needed`.
fn authorize(service: &Service, headers: &HeaderMap, needed: Role) -> Result<Role, Problem> {
    let unauthorized = |detail: &str| Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("this endpoint needs `Authorization: Bearer KEY`"));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer KEY`"))?;
    let role = service
        .keys()
        .role_of(key.trim())
        .ok_or_else(|| unauthorized("unknown key"))?;
    if role < needed {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {needed} role; the key has {role}"),
        ));
    }
    Ok(role)
}

fn json(status: StatusCode, value: impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

/// Reads and parses a JSON body: called after the caller's key is checked,
/// so nobody without one makes the server buffer anything.
async fn body<T: DeserializeOwned>(api: &Api, body: Body) -> Result<T, Problem> {
    let bytes = axum::body::to_bytes(body, api.max_body_bytes).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the body is larger than {} bytes (or was cut off)", api.max_body_bytes),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Problem::bad_request(format!("the body is not the JSON expected: {e}")))
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, Problem> {
    path.map(|Path(value)| value)
        .map_err(|rejection| Problem::bad_request(rejection.body_text()))
}

async fn health(State(api): Shared) -> Answer {
    let service = Arc::clone(&api.service);
    let health = api.offload.read(move || Ok(service.health())).await?;
    Ok(json(StatusCode::OK, health))
}

async fn list(State(api): Shared, headers: HeaderMap) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Reader)?;
    let names = api.offload.read(move || service.read(|store| store.list())).await?;
    Ok(json(StatusCode::OK, serde_json::json!({ "documents": names })))
}

async fn get_document(State(api): Shared, headers: HeaderMap, name: Result<Path<String>, PathRejection>) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Reader)?;
    let name = path(name)?;
    let found = api
        .offload
        .read(move || {
            #[cfg(feature = "flawed-variants")]
            if service.flaw() == Some(crate::flawed::ServiceFlaw::CachedReads) {
                return service
                    .cached_read(&name, || {
                        let document = service.read(|store| store.get(&name))?;
                        document.ok_or_else(|| Problem::not_found(format!("no document named {name}")))
                    })
                    .map(|document| with_owner(document, None));
            }
            let document = service.read(|store| {
                let owner = store.owner(&name)?;
                Ok(store.get(&name)?.map(|document| with_owner(document, owner)))
            })?;
            document.ok_or_else(|| Problem::not_found(format!("no document named {name}")))
        })
        .await?;
    Ok(json(StatusCode::OK, found))
}

/// A document as `GET /v1/documents/{name}` answers it: its fields and
/// its owner (`null` if it has none).
fn with_owner(document: tearline_refstore::Document, owner: Option<String>) -> serde_json::Value {
    let mut value = serde_json::to_value(document).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("owner".to_string(), serde_json::json!(owner));
    }
    value
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    content: String,
    /// The document's owner, set once its content is written.
    #[serde(default)]
    owner: Option<String>,
}

async fn put_document(
    State(api): Shared,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    raw: Body,
) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Writer)?;
    let name = path(name)?;
    let PutBody { content, owner } = body(&api, raw).await?;
    if let Some(owner) = &owner {
        tearline_refstore::owner::check_owner(owner)?;
    }
    #[cfg(feature = "flawed-variants")]
    if service.flaw() == Some(crate::flawed::ServiceFlaw::AcknowledgeBeforeWrite) {
        let answer = serde_json::json!({"name": name, "vector_id": null, "replaced": false});
        api.offload
            .later(move || drop(service.write_in_place(|store| store.add(&name, content.as_bytes()))));
        return Ok(json(StatusCode::CREATED, answer));
    }
    let (outcome, name) = api
        .offload
        .run(move || {
            let outcome = service.write_in_place(|store| {
                let outcome = store.add(&name, content.as_bytes())?;
                if let Some(owner) = &owner {
                    store.set_owner(&name, owner)?;
                }
                Ok(outcome)
            })?;
            Ok((outcome, name))
        })
        .await?;
    let status = if outcome.replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(
        status,
        serde_json::json!({"name": name, "vector_id": outcome.vector_id, "replaced": outcome.replaced}),
    ))
}

async fn delete_document(State(api): Shared, headers: HeaderMap, name: Result<Path<String>, PathRejection>) -> Answer {
    let service = Arc::clone(&api.service);
    #[cfg(feature = "flawed-variants")]
    let needed = match service.flaw() {
        Some(crate::flawed::ServiceFlaw::DeleteWithoutRoleCheck) => Role::Reader,
        _ => Role::Admin,
    };
    #[cfg(not(feature = "flawed-variants"))]
    let needed = Role::Admin;
    authorize(&api.service, &headers, needed)?;
    let name = path(name)?;
    api.offload
        .run(move || service.write_in_place(|store| store.remove(&name)))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT` (`shared`) or `DELETE` a document's share link.
async fn set_share(api: Api, headers: HeaderMap, name: Result<Path<String>, PathRejection>, shared: bool) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Writer)?;
    let name = path(name)?;
    let target = name.clone();
    api.offload
        .run(move || {
            service.write_in_place(|store| {
                if shared {
                    store.share(&target)
                } else {
                    store.unshare(&target)
                }
            })
        })
        .await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"name": name, "shared": shared}),
    ))
}

async fn share(State(api): Shared, headers: HeaderMap, name: Result<Path<String>, PathRejection>) -> Answer {
    set_share(api, headers, name, true).await
}

async fn unshare(State(api): Shared, headers: HeaderMap, name: Result<Path<String>, PathRejection>) -> Answer {
    set_share(api, headers, name, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerBody {
    owner: String,
}

/// `PUT /v1/documents/{name}/owner {owner}`: makes `owner` the document's owner.
async fn set_owner(
    State(api): Shared,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    raw: Body,
) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Writer)?;
    let name = path(name)?;
    let OwnerBody { owner } = body(&api, raw).await?;
    let (target, given) = (name.clone(), owner.clone());
    api.offload
        .run(move || service.write_in_place(|store| store.set_owner(&target, &given)))
        .await?;
    Ok(json(StatusCode::OK, serde_json::json!({"name": name, "owner": owner})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    documents: Vec<ImportDocument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportDocument {
    name: String,
    content: String,
}

async fn import(State(api): Shared, headers: HeaderMap, raw: Body) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Writer)?;
    let ImportBody { documents } = body(&api, raw).await?;
    let documents: Vec<(String, String)> = documents.into_iter().map(|d| (d.name, d.content)).collect();
    let stats = api.offload.run(move || service.import(&documents)).await?;
    Ok(json(StatusCode::OK, stats))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: String,
    k: Option<usize>,
}

async fn search(State(api): Shared, headers: HeaderMap, query: Result<Query<SearchQuery>, QueryRejection>) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Reader)?;
    let Query(SearchQuery { q, k }) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let k = k.unwrap_or(5);
    if k == 0 || k > MAX_SEARCH_RESULTS {
        return Err(Problem::bad_request(format!("k must be 1 to {MAX_SEARCH_RESULTS}")));
    }
    let hits = api
        .offload
        .read(move || service.read(|store| store.search(&q, k)))
        .await?;
    Ok(json(StatusCode::OK, serde_json::json!({ "hits": hits })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    mode: String,
}

async fn rebuild(State(api): Shared, headers: HeaderMap, raw: Body) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Admin)?;
    let RebuildBody { mode } = body(&api, raw).await?;
    let mode = match mode.as_str() {
        "full" => RebuildMode::Full,
        "incremental" => RebuildMode::Incremental,
        other => return Err(Problem::bad_request(format!("mode {other:?}: full or incremental"))),
    };
    let id = service.start_rebuild(mode, &api.offload)?;
    Ok(json(StatusCode::ACCEPTED, serde_json::json!({ "job_id": id })))
}

async fn job(State(api): Shared, headers: HeaderMap, id: Result<Path<u64>, PathRejection>) -> Answer {
    let service = Arc::clone(&api.service);
    authorize(&api.service, &headers, Role::Reader)?;
    let id = path(id)?;
    let job = service
        .jobs()
        .get(id)
        .ok_or_else(|| Problem::not_found(format!("no job {id}")))?;
    Ok(json(StatusCode::OK, job))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    mode: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
    /// Only this owner's records (origins/3's `user_id`).
    #[serde(default, alias = "owner")]
    user: Option<String>,
}

async fn reconcile(State(api): Shared, headers: HeaderMap, raw: Body) -> Answer {
    let service = Arc::clone(&api.service);
    let role = authorize(&api.service, &headers, Role::Writer)?;
    let ReconcileBody {
        mode,
        dry_run,
        force,
        user,
    } = body(&api, raw).await?;
    let mode = ReconcileMode::parse(&mode)
        .ok_or_else(|| Problem::bad_request(format!("mode {mode:?}: audit, sync, clean or full")))?;
    if mode.is_destructive() && !dry_run && role < Role::Admin {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("reconcile {mode} deletes records: it needs the admin role (a dry run needs writer)"),
        ));
    }
    let options = ReconcileOptions {
        mode,
        dry_run,
        force,
        owner: user,
    };
    let stats = api.offload.run(move || service.reconcile(options)).await?;
    Ok(json(StatusCode::OK, stats))
}
