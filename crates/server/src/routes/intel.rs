//! Threat intel: `GET /api/v1/intel/lookup`, `GET /api/v1/intel/stats`, and
//! `POST /api/v1/intel/import` of a feed's content, as `belay intel lookup|stats|import`. The
//! import's `intel.update` event is accepted like any event sent by the caller.

use super::params::bad_query;
use crate::auth::Principal;
use crate::body::Json as JsonBody;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use belay_intel::Kind;
use belay_intel::import::{ImportOptions, NoProgress};
use belay_intel::query::QueryError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

fn data_dir(state: &AppState) -> Result<PathBuf, Problem> {
    state.config.data.clone().ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "this server was started without a data directory for threat intel",
        )
    })
}

fn join_error(e: tokio::task::JoinError) -> Problem {
    Problem::internal(format!("an intel task ended abnormally: {e}"))
}

/// What to look up.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    /// The value: an address (also matched against stored networks), network, domain, URL,
    /// hash or e-mail address.
    value: String,
    /// Force the value's type (`ip`, `cidr`, `domain`, `url`, `hash`, `email`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
}

/// Looks a value up in the imported feeds: its score and which feeds list it.
#[utoipa::path(get, path = "/api/v1/intel/lookup", tag = "intel", security(("bearer" = [])),
    params(LookupQuery),
    responses((status = 200, description = "the value, its score and the feeds listing it", body = Object),
        (status = 400, description = "not a value of a known type", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 409, description = "no data directory", body = Problem)))]
pub async fn lookup(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(bad_query)?;
    let hint = q
        .kind
        .as_deref()
        .map(|k| {
            Kind::parse(k).ok_or_else(|| {
                Problem::bad_request(format!(
                    "`type` is ip, cidr, domain, url, hash or email, not `{k}`"
                ))
                .at_field("type")
            })
        })
        .transpose()?;
    let data = data_dir(&state)?;
    let found = tokio::task::spawn_blocking(move || {
        belay_intel::query::lookup(&data, &q.value, hint, belay_model::now_ms())
    })
    .await
    .map_err(join_error)?
    .map_err(|e| match e {
        QueryError::Value(v) => Problem::bad_request(v.to_string()).at_field("value"),
        QueryError::Store(s) => Problem::internal(s),
    })?;
    Ok(Json(json!(found)))
}

/// The imported feeds, their settings and latest imports, and counts by type.
#[utoipa::path(get, path = "/api/v1/intel/stats", tag = "intel", security(("bearer" = [])),
    responses((status = 200, description = "`feeds` and `by_type`", body = Object),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 409, description = "no data directory", body = Problem)))]
pub async fn stats(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let data = data_dir(&state)?;
    let stats = tokio::task::spawn_blocking(move || belay_intel::query::stats(&data))
        .await
        .map_err(join_error)?
        .map_err(Problem::internal)?;
    Ok(Json(json!(stats)))
}

/// A feed's content to import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The feed's name; importing the same name again replaces what it listed.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub feed: String,
    /// The feed's content, as text (at most the server's body limit).
    pub content: String,
    /// `plain`, `csv`, `ipset`, `hosts`, `stix` or `misp`; detected when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// Score weight of this feed (0 to 100; kept from the last import when absent).
    #[serde(default)]
    pub weight: Option<f64>,
    /// A listing stops counting this long after the feed last listed it (`7d`; `0` clears).
    #[serde(default)]
    pub expires: Option<String>,
    /// After this long without being listed again a listing counts half (default 30d).
    #[serde(default)]
    pub half_life: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    /// The import in words (indicators, unsupported and invalid lines).
    pub summary: String,
    /// The `intel.update` event and the runs it started.
    pub event: crate::state::EventAccepted,
}

fn duration_ms(field: &'static str, text: &str) -> Result<i64, Problem> {
    if text.trim() == "0" {
        return Ok(0);
    }
    belay_model::parse_duration(text)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            Problem::bad_request(format!("`{field}` is not a duration like 12h or 30d"))
                .at_field(field)
        })
}

/// Imports a feed's content (sent in the body: the server fetches nothing), replacing what
/// the feed listed before; its `intel.update` event starts the playbooks that react to it.
#[utoipa::path(post, path = "/api/v1/intel/import", tag = "intel", security(("bearer" = [])),
    request_body(content = ImportRequest, content_type = "application/json"),
    responses((status = 200, description = "the import and the event it sent", body = ImportAnswer),
        (status = 400, description = "a bad field, or content that does not parse", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 409, description = "no data directory", body = Problem),
        (status = 413, description = "body over the limit", body = Problem),
        (status = 415, description = "not JSON", body = Problem)))]
pub async fn import(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<ImportRequest>,
) -> ApiResult<Json<ImportAnswer>> {
    belay_intel::import::valid_feed_name(&req.feed)
        .map_err(|e| Problem::bad_request(e.to_string()).at_field("feed"))?;
    let format = req
        .format
        .as_deref()
        .map(|f| {
            belay_intel::Format::parse(f).ok_or_else(|| {
                Problem::bad_request(format!(
                    "`format` is plain, csv, ipset, hosts, stix or misp, not `{f}`"
                ))
                .at_field("format")
            })
        })
        .transpose()?;
    if let Some(w) = req.weight
        && !(0.0..=100.0).contains(&w)
    {
        return Err(Problem::bad_request("`weight` is from 0 to 100").at_field("weight"));
    }
    let half_life_ms = match req.half_life.as_deref() {
        Some(h) => match duration_ms("half_life", h)? {
            0 => {
                return Err(
                    Problem::bad_request("`half_life` must be longer than 0").at_field("half_life")
                );
            }
            ms => Some(ms),
        },
        None => None,
    };
    let opts = ImportOptions {
        feed: req.feed.clone(),
        format,
        weight: req.weight,
        expires_ms: req
            .expires
            .as_deref()
            .map(|e| duration_ms("expires", e))
            .transpose()?,
        half_life_ms,
        csv: Default::default(),
        wide: Default::default(),
    };
    let data = data_dir(&state)?;
    let content = req.content;
    let report = tokio::task::spawn_blocking(move || -> Result<_, Problem> {
        // The content goes to a file of its own in an empty directory: an import reads nothing
        // beside it (a MISP manifest's events, say).
        let dir = tempfile::tempdir().map_err(Problem::internal)?;
        let file = dir.path().join("feed");
        std::fs::write(&file, content).map_err(Problem::internal)?;
        belay_intel::import(&data, &file.to_string_lossy(), &opts, &mut NoProgress)
            .map_err(|e| Problem::bad_request(format!("{e:#}")).at_field("content"))
    })
    .await
    .map_err(join_error)??;
    let mut accepted = state.accept(vec![report.event()], &p.name, "api").await?;
    state
        .audit_request(&p, "intel.import", &req.feed, &report.summary())
        .await;
    let event = accepted
        .pop()
        .ok_or_else(|| Problem::internal("no answer for the intel.update event"))?;
    Ok(Json(ImportAnswer {
        summary: report.summary(),
        event,
    }))
}
