//! Errors as RFC 9457 problem details (`application/problem+json`): a status, a title, the
//! reason, and for bad input the path of the bad field (`observables.ips[0]`) or the line and
//! column of a syntax error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One problem, as answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What is wrong, for a person.
    pub detail: String,
    /// For bad input: the path of the bad field (`observables.ips[0]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For malformed JSON: the line of the error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// For malformed JSON: the column of the error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// For 429 and 503: seconds to wait before trying again.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with this status and reason.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            line: None,
            column: None,
            retry_after: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    /// 500 Internal Server Error; the cause is logged, not answered.
    pub fn internal(cause: impl std::fmt::Display) -> Problem {
        tracing::error!("request failed: {cause}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed to answer; the cause is in its log",
        )
    }

    /// The same problem, naming the bad field.
    pub fn at_field(mut self, field: impl Into<String>) -> Problem {
        let f = field.into();
        if !f.is_empty() && f != "." {
            self.field = Some(f);
        }
        self
    }

    /// 400 for a JSON syntax error, with its line and column.
    pub fn json_syntax(e: &serde_json::Error) -> Problem {
        let mut p = Problem::bad_request(format!("the body is not valid JSON: {e}"));
        p.line = u32::try_from(e.line()).ok();
        p.column = u32::try_from(e.column()).ok();
        p
    }

    /// 400 for a body that does not fit the expected shape, naming the field.
    pub fn json_shape(e: serde_path_to_error::Error<serde_json::Error>) -> Problem {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let detail = if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("`{path}`: {inner}")
        };
        Problem::bad_request(detail).at_field(path)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"belay\""),
            );
        }
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<belay_store::StoreError> for Problem {
    fn from(e: belay_store::StoreError) -> Problem {
        match e {
            belay_store::StoreError::NotFound(what) => {
                Problem::not_found(format!("{what} does not exist"))
            }
            e => Problem::internal(e),
        }
    }
}

impl From<belay_engine::EngineError> for Problem {
    fn from(e: belay_engine::EngineError) -> Problem {
        match e {
            belay_engine::EngineError::Store(s) => s.into(),
            // The engine's other errors are about the request (an unknown change, run or
            // checkpoint); they carry a whole message.
            belay_engine::EngineError::Other(m) => Problem::bad_request(m),
        }
    }
}

/// A handler's result: JSON (or any response), or a problem.
pub type ApiResult<T> = Result<T, Problem>;
