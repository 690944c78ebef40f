//! Every error the service returns: an RFC 9457 problem document
//! (`application/problem+json`), never a stack trace.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tearline_refstore::{FailureEffect, StoreError};

/// One problem document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    /// What kind of problem: `urn:tearline:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, fixed summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, in words a client can act on.
    pub detail: String,
    /// For a failed write: whether it was applied (the store's
    /// [`FailureEffect`]); absent when the request changed nothing by
    /// construction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<FailureEffect>,
    /// For a vector server's damaged collection: where the damage is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<Box<SegmentDamage>>,
}

/// Where a vector server found a collection's files damaged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentDamage {
    /// The segment's file name within its collection.
    pub segment: String,
    /// Where its first bad record starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl Problem {
    /// A problem of `status`, named `slug`.
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:tearline:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            effect: None,
            damage: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 409: another operation holds what this one needs.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 500 for a failure inside the service itself (its detail never
    /// carries internals).
    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// The status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Problem {
        let (status, slug) = match &error {
            StoreError::InvalidName { .. } => (StatusCode::BAD_REQUEST, "invalid-name"),
            StoreError::InvalidOwner { .. } => (StatusCode::BAD_REQUEST, "invalid-owner"),
            StoreError::NotText { .. } => (StatusCode::BAD_REQUEST, "not-text"),
            StoreError::ImportRefused { .. } => (StatusCode::BAD_REQUEST, "import-refused"),
            StoreError::ForceRequired { .. } => (StatusCode::BAD_REQUEST, "force-required"),
            StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            StoreError::RecoveryPending { .. } | StoreError::RebuildRequired { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "recovery-pending")
            }
            StoreError::VectorStoreDown { .. } => (StatusCode::SERVICE_UNAVAILABLE, "vector-store-down"),
            StoreError::Locked { .. } => (StatusCode::SERVICE_UNAVAILABLE, "locked"),
            StoreError::Damaged { .. } | StoreError::Corrupt { .. } | StoreError::GenerationInvalid { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "damaged")
            }
            _ if is_disk_full(&error) => (StatusCode::INSUFFICIENT_STORAGE, "disk-full"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "store-error"),
        };
        // A failure inside the store keeps its internals (paths, SQLite's
        // words) in the server's log; the client learns what kind it was and
        // whether the write may have been applied.
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            crate::listen::log(&format!("refstore serve: {slug}: {error}"));
            format!("the store failed ({slug}); the server's log has the details")
        } else {
            error.to_string()
        };
        let mut problem = Problem::new(status, slug, detail);
        problem.effect = Some(error.effect());
        problem
    }
}

fn is_disk_full(error: &StoreError) -> bool {
    const ENOSPC: i32 = 28;
    match error {
        StoreError::Io { source, .. } => source.raw_os_error() == Some(ENOSPC),
        StoreError::NothingChanged { cause } => is_disk_full(cause),
        StoreError::Sqlite {
            source: rusqlite_failure,
            ..
        } => rusqlite_failure.to_string().contains("database or disk is full"),
        _ => false,
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry = matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::CONFLICT);
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // An error may come before the request's body was read (a refused
        // key, a bad name, a busy writer): such a connection cannot carry
        // another request, so no client may reuse it.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}
