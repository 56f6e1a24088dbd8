//! `GET /api/v1/events` (search by kind, source, observable; newest first, by cursor) and
//! `GET /api/v1/events/{id}` (one event with the runs it started).

use super::params::{bad_query, decode_cursor, encode_cursor, page_size};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use belay_model::Event;
use belay_store::{EventFilter, RunFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Filters and page of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events of this kind (`ids.alert`).
    kind: Option<String>,
    /// Only events from this source (`user:alice`, the sender the server recorded).
    source: Option<String>,
    /// Only events listing this observable (an address, domain, URL, hash, user…).
    observable: Option<String>,
    /// At most this many (default 50, at most 500).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// The events, as stored.
    #[schema(value_type = Vec<belay_model::Event>)]
    pub events: Vec<Value>,
    /// Give it as `cursor` for the next page; absent on the last page. A page may hold fewer
    /// events than `limit` and still have a next one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One event and the runs it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The event, as stored.
    #[schema(value_type = belay_model::Event)]
    pub event: Value,
    /// The ids of the runs it started (newest first).
    pub run_ids: Vec<String>,
}

/// Whether `e` lists `value` among its observables.
fn lists(e: &Event, value: &str) -> bool {
    serde_json::to_value(&e.observables)
        .ok()
        .and_then(|o| o.as_object().cloned())
        .is_some_and(|o| {
            o.values()
                .filter_map(Value::as_array)
                .flatten()
                .any(|v| v.as_str() == Some(value))
        })
}

/// Stored events, newest first, filtered, a page at a time.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(EventsQuery),
    responses((status = 200, description = "a page of events", body = EventsPage),
        (status = 400, description = "a bad filter or cursor", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem)))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<EventsPage>> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = page_size(q.limit, 50, 500);
    let before_seq = match q.cursor.as_deref() {
        Some(c) => Some(decode_cursor(c)?.parse::<i64>().map_err(|_| {
            Problem::bad_request("`cursor` is not a cursor this server gave").at_field("cursor")
        })?),
        None => None,
    };
    let contains = q
        .observable
        .as_deref()
        .map(|o| serde_json::to_string(o).unwrap_or_default());
    let rows = state
        .engine()
        .store
        .search_events(&EventFilter {
            kind: q.kind,
            source: q.source,
            contains,
            before_seq,
            limit,
        })
        .await?;
    let next_cursor = (rows.len() == limit)
        .then(|| rows.last().map(|(seq, _)| encode_cursor(&seq.to_string())))
        .flatten();
    let events = rows
        .into_iter()
        .filter(|(_, e)| q.observable.as_deref().is_none_or(|o| lists(e, o)))
        .map(|(_, e)| serde_json::to_value(e).unwrap_or_default())
        .collect();
    Ok(Json(EventsPage {
        events,
        next_cursor,
    }))
}

/// Which event of an id.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// The event's source (`user:alice`): ids are unique per source. Without it, the first
    /// event accepted under the id.
    source: Option<String>,
}

/// One stored event and the runs it started.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path, description = "the event's id"), EventQuery),
    responses((status = 200, description = "the event", body = EventView),
        (status = 400, description = "a bad parameter", body = Problem),
        (status = 401, description = "no or bad token", body = Problem),
        (status = 403, description = "role too low", body = Problem),
        (status = 404, description = "no such event", body = Problem)))]
pub async fn get_event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> ApiResult<Json<EventView>> {
    let Query(q) = query.map_err(bad_query)?;
    let store = &state.engine().store;
    let event = store
        .get_event(q.source.as_deref(), &id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no event `{id}`")))?;
    let runs = store
        .list_runs(&RunFilter {
            event_id: Some(id),
            ..Default::default()
        })
        .await?;
    Ok(Json(EventView {
        run_ids: runs
            .into_iter()
            .filter(|r| r.trigger_source().is_none_or(|s| s == event.source))
            .map(|r| r.id)
            .collect(),
        event: serde_json::to_value(event).unwrap_or_default(),
    }))
}
