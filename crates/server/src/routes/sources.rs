//! `GET /api/v1/sources`: each configured source and feed, with its last success and error.

use crate::problem::Problem;
use crate::sources::SourceStatus;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Every source and feed, by name, and the ingest queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourcesAnswer {
    /// Each source's and feed's record.
    pub sources: Vec<SourceStatus>,
    /// Events in the ingest queue now.
    pub queue_depth: usize,
    /// Most events the queue holds before the API answers 429.
    pub queue_capacity: usize,
}

/// The configured sources (syslog, IMAP, files) and feeds: whether each runs, when it last
/// succeeded, its last error, and how many events it handed over.
#[utoipa::path(get, path = "/api/v1/sources", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "the sources and feeds", body = SourcesAnswer),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Json<SourcesAnswer> {
    Json(SourcesAnswer {
        sources: state.sources.snapshot(),
        queue_depth: state.queue.depth(),
        queue_capacity: state.queue.capacity(),
    })
}
