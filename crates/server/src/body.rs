//! Request bodies: the content type checked (415), the size limit enforced (413), JSON parsed
//! with the position of a syntax error and the path of a bad field (400).

use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

/// Whether `content_type` is JSON (`application/json`, `application/*+json`), or NDJSON when
/// `ndjson` is allowed.
fn is_json(content_type: &str, ndjson: bool) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || (ndjson
            && matches!(
                essence.as_str(),
                "application/x-ndjson" | "application/jsonl"
            ))
}

/// The body's bytes, once its content type is JSON (or NDJSON when allowed) and it fits the
/// limit.
pub async fn json_bytes(req: Request, ndjson: bool) -> Result<(Bytes, bool), Problem> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !is_json(&ct, ndjson) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body must be application/json{}; got `{}`",
                if ndjson {
                    " or application/x-ndjson"
                } else {
                    ""
                },
                if ct.is_empty() {
                    "no content type"
                } else {
                    &ct
                }
            ),
        ));
    }
    let is_ndjson =
        ndjson && !ct.contains("json;") && (ct.contains("ndjson") || ct.contains("jsonl"));
    let bytes = Bytes::from_request(req, &()).await.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(status, "the body is larger than the server's limit")
        } else {
            Problem::new(status, format!("cannot read the body: {e}"))
        }
    })?;
    Ok((bytes, is_ndjson))
}

/// A JSON body deserialized into `T`; a bad body is a problem naming where it is wrong.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (bytes, _) = json_bytes(req, false).await?;
        parse(&bytes).map(Json)
    }
}

/// Parses JSON text into `T`: a syntax error names its line and column, a shape error the
/// path of the bad field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Problem::json_syntax(&e))?;
    serde_path_to_error::deserialize(value).map_err(Problem::json_shape)
}
