//! The SIEM simulator (`/siem/v1`): named watch lists of users (with an optional expiry) and
//! alerts raised for the SOC.

use crate::Shared;
use crate::api::{
    ApiError, PageQuery, Req, check_enum, check_len, check_name, created, cursor_page, now, ok,
    parse_duration, remove_from, respond, rfc3339,
};
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Default)]
pub struct State {
    /// list → user → entry.
    lists: BTreeMap<String, BTreeMap<String, Entry>>,
    alerts: Vec<Value>,
}

#[derive(Clone)]
struct Entry {
    since: String,
    expires: Option<String>,
    reason: Option<String>,
}

impl State {
    pub fn snapshot(&self) -> Value {
        json!({
            "watchlists": self.lists.iter().map(|(l, users)| (l.clone(), users.keys().cloned().collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
            "alerts": self.alerts,
        })
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/watchlists/{list}/entries", get(list_entries))
        .route(
            "/watchlists/{list}/entries/{user}",
            put(watch).delete(unwatch),
        )
        .route("/users/{user}/watchlists", get(user_lists))
        .route("/alerts", post(raise).get(list_alerts))
}

const USER_EXTRA: &str = "._@+\\-";

fn check_user(user: &str) -> Result<(), ApiError> {
    check_name("user", user, 256, USER_EXTRA)
}

fn check_list(list: &str) -> Result<(), ApiError> {
    check_name("watch list", list, 64, "_.-")
}

async fn list_entries(
    AxState(s): AxState<Arc<Shared>>,
    Path(list): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let w = s.world();
    let Some(users) = w.siem.lists.get(&list) else {
        return respond(Err(ApiError::not_found(format!("no watch list `{list}`"))));
    };
    let items: Vec<Value> = users
        .iter()
        .map(|(u, e)| json!({ "user": u, "since": e.since, "expires": e.expires, "reason": e.reason }))
        .collect();
    respond(cursor_page(&items, &q, json!({})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WatchBody {
    reason: Option<String>,
    duration: Option<String>,
}

async fn watch(Path((list, user)): Path<(String, String)>, req: Req) -> Result<Response, ApiError> {
    let body: WatchBody = req.json()?;
    Ok(req.mutate(|w| {
        check_list(&list)?;
        check_user(&user)?;
        check_len("reason", body.reason.as_deref().unwrap_or(""), 0, 256)?;
        let expires = match &body.duration {
            Some(d) => Some(rfc3339(
                now() + chrono::Duration::seconds(parse_duration("duration", d)?.as_secs() as i64),
            )),
            None => None,
        };
        let users = w.siem.lists.entry(list.clone()).or_default();
        let changed = !users.contains_key(&user);
        let entry = users.entry(user.clone()).or_insert_with(|| Entry {
            since: rfc3339(now()),
            expires: None,
            reason: None,
        });
        entry.expires = expires;
        entry.reason = body.reason.clone();
        ok(json!({
            "user": user, "list": list, "changed": changed,
            "since": entry.since, "expires": entry.expires,
        }))
    }))
}

async fn unwatch(Path((list, user)): Path<(String, String)>, req: Req) -> Response {
    req.mutate(|w| {
        check_list(&list)?;
        check_user(&user)?;
        let changed = remove_from(&mut w.siem.lists, &list, &user);
        ok(json!({ "user": user, "list": list, "changed": changed }))
    })
}

async fn user_lists(AxState(s): AxState<Arc<Shared>>, Path(user): Path<String>) -> Response {
    if let Err(e) = check_user(&user) {
        return respond(Err(e));
    }
    let w = s.world();
    let mut lists = Vec::new();
    let mut since: Option<String> = None;
    for (name, users) in &w.siem.lists {
        if let Some(e) = users.get(&user) {
            lists.push(name.clone());
            if since.as_ref().is_none_or(|s| &e.since < s) {
                since = Some(e.since.clone());
            }
        }
    }
    respond(ok(json!({
        "user": user,
        "watched": !lists.is_empty(),
        "lists": lists,
        "since": since,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertBody {
    entity: String,
    title: String,
    #[serde(default = "high")]
    severity: String,
    description: Option<String>,
    #[serde(default)]
    observables: Vec<String>,
    case: Option<String>,
}

fn high() -> String {
    "high".into()
}

async fn raise(req: Req) -> Result<Response, ApiError> {
    let body: AlertBody = req.json()?;
    let base = req.lab.base_url.clone();
    Ok(req.mutate(|w| {
        check_len("entity", &body.entity, 1, 2048)?;
        check_len("title", &body.title, 1, 256)?;
        check_enum(
            "severity",
            &body.severity,
            &["low", "medium", "high", "critical"],
        )?;
        check_len(
            "description",
            body.description.as_deref().unwrap_or(""),
            0,
            65_536,
        )?;
        if body.observables.len() > 1000 {
            return Err(ApiError::invalid("at most 1000 observables"));
        }
        if let Some(c) = &body.case {
            check_name("case", c, 128, "_.:-")?;
        }
        let alert_id = w.next_id("alert");
        let alert = json!({
            "alert_id": alert_id,
            "url": format!("{base}/siem/v1/alerts/{alert_id}"),
            "entity": body.entity,
            "title": body.title,
            "severity": body.severity,
            "observables": body.observables,
            "case": body.case,
            "status": "open",
            "created_at": rfc3339(now()),
        });
        w.siem.alerts.push(alert.clone());
        created(alert)
    }))
}

#[derive(Deserialize)]
struct AlertQuery {
    entity: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list_alerts(AxState(s): AxState<Arc<Shared>>, Query(q): Query<AlertQuery>) -> Response {
    let w = s.world();
    let items: Vec<Value> = w
        .siem
        .alerts
        .iter()
        .filter(|a| {
            q.entity
                .as_deref()
                .is_none_or(|e| a["entity"].as_str() == Some(e))
        })
        .cloned()
        .collect();
    respond(cursor_page(&items, &q.page, json!({})))
}
