//! What feeds belay events: `GET /api/v1/sources` (webhook sources and the other configured
//! inputs, each with its state) and `GET /api/v1/feeds` (threat-intel feeds: latest import,
//! last success and error).

use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// One source of events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceStatus {
    /// Its name (`siem`).
    pub name: String,
    /// `webhook`, `syslog`, `imap`, `file`…
    pub kind: String,
    /// Where it takes events (`POST /hooks/siem`, a listen address, a path).
    pub endpoint: String,
    /// `running`, `stopped` or `failing`.
    pub state: String,
    /// The principal its events are from (the trigger of their runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// When it last delivered an event (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<String>,
    /// Its last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The sources.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sources {
    /// Each source.
    pub sources: Vec<SourceStatus>,
}

/// The sources of events this server takes, each with its state.
#[utoipa::path(get, path = "/api/v1/sources", tag = "sources", security(("bearer" = [])),
    responses((status = 200, description = "the sources", body = Sources),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn sources(State(state): State<Arc<AppState>>) -> Json<Sources> {
    let sources = state
        .config
        .hooks
        .iter()
        .map(|h| SourceStatus {
            name: h.name.clone(),
            kind: "webhook".into(),
            endpoint: format!("POST /hooks/{}", h.name),
            state: "running".into(),
            principal: Some(h.principal.clone()),
            last_event_at: None,
            last_error: None,
        })
        .collect();
    Json(Sources { sources })
}

/// One threat-intel feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedStatus {
    /// Its name.
    pub name: String,
    /// Where its latest import read it.
    pub source: String,
    /// The format of its latest import.
    pub format: String,
    /// Indicators it lists now.
    pub indicators: u64,
    /// How often it is imported (`1h`), when scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// When it was last imported successfully (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// The last import's error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The feeds.
#[derive(Debug, Serialize, ToSchema)]
pub struct Feeds {
    /// Each feed.
    pub feeds: Vec<FeedStatus>,
}

/// The threat-intel feeds imported into this server's data directory, with their latest
/// import.
#[utoipa::path(get, path = "/api/v1/feeds", tag = "sources", security(("bearer" = [])),
    responses((status = 200, description = "the feeds", body = Feeds),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn feeds(State(state): State<Arc<AppState>>) -> ApiResult<Json<Feeds>> {
    let Some(data) = state.config.data.clone() else {
        return Ok(Json(Feeds { feeds: Vec::new() }));
    };
    let stats = tokio::task::spawn_blocking(move || belay_intel::query::stats(&data))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    let feeds = stats
        .feeds
        .into_iter()
        .map(|f| FeedStatus {
            name: f.name,
            source: f.source,
            format: f.format,
            indicators: f.indicators,
            every: None,
            last_success: Some(belay_model::ms_to_rfc3339(f.last_import)),
            last_error: None,
        })
        .collect();
    Ok(Json(Feeds { feeds }))
}
