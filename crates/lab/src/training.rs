//! The training platform simulator (`/training/v1`): modules, and users' enrollments in them.

use crate::Shared;
use crate::api::{
    ApiError, PageQuery, Req, check_name, created, cursor_page, now, ok, respond, rfc3339,
};
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct State {
    modules: BTreeMap<String, String>,
    /// (user, module) → enrollment.
    enrollments: BTreeMap<(String, String), Enrollment>,
}

#[derive(Clone)]
struct Enrollment {
    id: String,
    due: Option<String>,
    enrolled_at: String,
    completed: bool,
}

impl State {
    pub fn seeded() -> Self {
        let modules = [
            ("data-handling-101", "Handling confidential data"),
            ("phishing-awareness-201", "Recognising phishing"),
            ("secure-passwords-101", "Passwords and MFA"),
            ("acceptable-use-101", "Acceptable use of IT"),
        ];
        State {
            modules: modules
                .iter()
                .map(|(id, t)| (id.to_string(), t.to_string()))
                .collect(),
            enrollments: BTreeMap::new(),
        }
    }

    pub fn snapshot(&self) -> Value {
        json!({
            "enrollments": self.enrollments.iter().map(|((u, m), e)| json!({
                "user": u, "module": m, "enrollment_id": e.id, "due": e.due,
            })).collect::<Vec<_>>(),
        })
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/modules", get(modules))
        .route("/enrollments", post(enroll))
        .route(
            "/users/{user}/enrollments/{module}",
            get(status).delete(unenroll),
        )
}

fn check_user(user: &str) -> Result<(), ApiError> {
    check_name("user", user, 256, "._@+\\-")
}

fn check_module(module: &str) -> Result<(), ApiError> {
    check_name("module", module, 128, "_.-")
}

async fn modules(AxState(s): AxState<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    let w = s.world();
    let items: Vec<Value> = w
        .training
        .modules
        .iter()
        .map(|(id, title)| json!({ "module": id, "title": title }))
        .collect();
    respond(cursor_page(&items, &q, json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    user: String,
    module: String,
    due: Option<String>,
}

async fn enroll(req: Req) -> Result<Response, ApiError> {
    let body: EnrollBody = req.json()?;
    Ok(req.mutate(|w| {
        check_user(&body.user)?;
        check_module(&body.module)?;
        if let Some(due) = &body.due
            && chrono::NaiveDate::parse_from_str(due, "%Y-%m-%d").is_err()
        {
            return Err(ApiError::invalid(format!(
                "due must be a date YYYY-MM-DD, found {due:?}"
            )));
        }
        if !w.training.modules.contains_key(&body.module) {
            return Err(ApiError::invalid(format!(
                "unknown module `{}` (GET /training/v1/modules lists them)",
                body.module
            )));
        }
        let key = (body.user.clone(), body.module.clone());
        if let Some(e) = w.training.enrollments.get(&key) {
            return ok(json!({
                "enrollment_id": e.id, "user": body.user, "module": body.module,
                "due": e.due, "changed": false,
            }));
        }
        let id = w.next_id("enr");
        w.training.enrollments.insert(
            key,
            Enrollment {
                id: id.clone(),
                due: body.due.clone(),
                enrolled_at: rfc3339(now()),
                completed: false,
            },
        );
        created(json!({
            "enrollment_id": id, "user": body.user, "module": body.module,
            "due": body.due, "changed": true,
        }))
    }))
}

async fn status(
    AxState(s): AxState<Arc<Shared>>,
    Path((user, module)): Path<(String, String)>,
) -> Response {
    if let Err(e) = check_user(&user).and_then(|_| check_module(&module)) {
        return respond(Err(e));
    }
    let w = s.world();
    match w.training.enrollments.get(&(user.clone(), module.clone())) {
        Some(e) => respond(ok(json!({
            "enrollment_id": e.id, "user": user, "module": module, "due": e.due,
            "enrolled_at": e.enrolled_at, "completed": e.completed,
        }))),
        None => respond(Err(ApiError::not_found(format!(
            "`{user}` is not enrolled in `{module}`"
        )))),
    }
}

async fn unenroll(Path((user, module)): Path<(String, String)>, req: Req) -> Response {
    req.mutate(|w| {
        check_user(&user)?;
        check_module(&module)?;
        let changed = w
            .training
            .enrollments
            .remove(&(user.clone(), module.clone()))
            .is_some();
        ok(json!({ "user": user, "module": module, "changed": changed }))
    })
}
