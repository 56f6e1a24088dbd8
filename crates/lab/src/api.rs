//! What the simulators share: the world state, API errors, request bodies, idempotent
//! mutations and pagination.

use crate::fleet::{self, Device};
use crate::{Shared, cmdb, edr, pcap, proxy, siem, takedown, training};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body accepted (takedown evidence may be a whole message).
pub const MAX_BODY: usize = 12 << 20;

/// An API error answered as `{"error": code, "message": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response()
    }
}

/// A handler's result: a status and a JSON body.
pub type ApiResult = Result<(StatusCode, Value), ApiError>;

pub fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, v))
}

pub fn created(v: Value) -> ApiResult {
    Ok((StatusCode::CREATED, v))
}

pub fn respond(r: ApiResult) -> Response {
    match r {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A request with its raw body, for handlers that parse and validate the body themselves
/// and may be replayed by idempotency key.
pub struct Req {
    /// The lab's state.
    pub lab: Arc<Shared>,
    pub method: Method,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: Bytes,
}

impl FromRequest<Arc<Shared>> for Req {
    type Rejection = ApiError;

    async fn from_request(req: Request, lab: &Arc<Shared>) -> Result<Self, Self::Rejection> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let idempotency_key = match req.headers().get("idempotency-key") {
            None => None,
            Some(v) => {
                let k = v
                    .to_str()
                    .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
                if k.is_empty() || k.len() > 255 {
                    return Err(ApiError::bad_request(
                        "Idempotency-Key must be 1 to 255 characters",
                    ));
                }
                Some(k.to_owned())
            }
        };
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("request body is larger than {MAX_BODY} bytes"),
                )
            })?;
        Ok(Req {
            lab: lab.clone(),
            method,
            path,
            idempotency_key,
            body,
        })
    }
}

impl Req {
    /// Applies a mutation to the lab's world once per idempotency key ([`Shared::mutate`]).
    pub fn mutate(&self, apply: impl FnOnce(&mut World) -> ApiResult) -> Response {
        self.lab.mutate(self, apply)
    }

    /// The JSON body as `T`; an empty body reads as `{}`. Malformed JSON is a 400, a body of
    /// the wrong shape (missing or unknown field, wrong type) a 422.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let bytes: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid(format!("invalid request body: {e}"))
            }
            _ => ApiError::bad_request(format!("request body is not valid JSON: {e}")),
        })
    }

    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.method.as_str());
        h.update(b" ");
        h.update(self.path.as_bytes());
        h.update(b"\n");
        h.update(&self.body);
        hex::encode(h.finalize())
    }
}

/// What the lab remembers of an idempotency key.
pub struct IdemRecord {
    route: String,
    fingerprint: String,
    status: StatusCode,
    body: Value,
    applied: u64,
    replayed: u64,
}

/// Every simulator's state.
pub struct World {
    pub fleet: Vec<Device>,
    pub edr: edr::State,
    pub siem: siem::State,
    pub training: training::State,
    pub takedown: takedown::State,
    pub proxy: proxy::State,
    pub pcap: pcap::State,
    idem: BTreeMap<String, IdemRecord>,
    /// Mutations applied without an idempotency key, by route.
    unkeyed: BTreeMap<String, u64>,
    seq: u64,
}

impl World {
    pub fn seeded() -> Self {
        World {
            fleet: fleet::seed(),
            edr: edr::State::default(),
            siem: siem::State::default(),
            training: training::State::seeded(),
            takedown: takedown::State::default(),
            proxy: proxy::State::seeded(),
            pcap: pcap::State::default(),
            idem: BTreeMap::new(),
            unkeyed: BTreeMap::new(),
            seq: 0,
        }
    }

    /// A fresh id like `scan-000007`.
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{:06}", self.seq)
    }

    /// The device with this id, hostname (any case) or IP address.
    pub fn device(&self, id: &str) -> Option<usize> {
        self.fleet
            .iter()
            .position(|d| d.device_id == id || d.hostname.eq_ignore_ascii_case(id) || d.ip == id)
    }

    pub fn snapshot(&self) -> Value {
        let idem: Map<String, Value> = self
            .idem
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    json!({ "route": r.route, "applied": r.applied, "replayed": r.replayed }),
                )
            })
            .collect();
        json!({
            "idempotency": idem,
            "unkeyed": self.unkeyed,
            "edr": edr::snapshot(self),
            "siem": self.siem.snapshot(),
            "cmdb": cmdb::snapshot(self),
            "training": self.training.snapshot(),
            "takedown": self.takedown.snapshot(),
            "proxy": self.proxy.snapshot(),
            "pcap": self.pcap.snapshot(),
        })
    }
}

impl Shared {
    /// Applies a mutation once per idempotency key: a repeated key with the same request gets
    /// the first answer back without applying again; with a different request, a 422.
    /// Validation failures are not remembered (the same request fails the same way again).
    pub fn mutate(&self, req: &Req, apply: impl FnOnce(&mut World) -> ApiResult) -> Response {
        let mut world = self.world();
        let route = format!("{} {}", req.method, req.path);
        let Some(key) = &req.idempotency_key else {
            let r = apply(&mut world);
            if r.is_ok() {
                *world.unkeyed.entry(route).or_default() += 1;
            }
            return respond(r);
        };
        let fingerprint = req.fingerprint();
        if let Some(rec) = world.idem.get_mut(key) {
            if rec.fingerprint != fingerprint {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    format!(
                        "Idempotency-Key was first used for a different request ({})",
                        rec.route
                    ),
                )
                .into_response();
            }
            rec.replayed += 1;
            let mut r = (rec.status, axum::Json(rec.body.clone())).into_response();
            r.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return r;
        }
        let r = apply(&mut world);
        if let Ok((status, body)) = &r {
            world.idem.insert(
                key.clone(),
                IdemRecord {
                    route,
                    fingerprint,
                    status: *status,
                    body: body.clone(),
                    applied: 1,
                    replayed: 0,
                },
            );
        }
        respond(r)
    }
}

/// `limit` and `cursor` of a list request.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;

/// One page of `items`: `(page, next offset)`.
pub fn page<T: Clone>(items: &[T], q: &PageQuery) -> Result<(Vec<T>, Option<usize>), ApiError> {
    let limit = match &q.limit {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, found `{l}`"
                )));
            }
        },
    };
    let offset = match &q.cursor {
        None => 0,
        Some(c) => c
            .strip_prefix("o")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::bad_request(format!("invalid cursor `{c}`")))?,
    };
    let end = (offset + limit).min(items.len());
    let next = (end < items.len()).then_some(end);
    Ok((items[offset..end].to_vec(), next))
}

/// A page as `{"items": [...], "next_cursor": "o20" | null}`.
pub fn cursor_page(items: &[Value], q: &PageQuery, extra: Value) -> ApiResult {
    let (items, next) = page(items, q)?;
    let mut body = json!({ "items": items, "next_cursor": next.map(|n| format!("o{n}")) });
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    ok(body)
}

/// Removes `key` from the named list, if both exist: whether it was there.
pub fn remove_from<K: Ord, V>(
    lists: &mut BTreeMap<String, BTreeMap<K, V>>,
    list: &str,
    key: &K,
) -> bool {
    lists.get_mut(list).and_then(|l| l.remove(key)).is_some()
}

/// Checks a name against a maximum length and a set of allowed characters.
pub fn check_name(what: &str, value: &str, max: usize, extra: &str) -> Result<(), ApiError> {
    let valid = !value.is_empty()
        && value.len() <= max
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} must be 1 to {max} letters, digits or `{extra}` starting with a letter or digit, found {value:?}"
        )))
    }
}

/// Checks that a value is one of a few.
pub fn check_enum(what: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} must be one of {}, found {value:?}",
            allowed.join(", ")
        )))
    }
}

/// Parses a duration like `30d`, `24h` or `15m`.
pub fn parse_duration(what: &str, value: &str) -> Result<std::time::Duration, ApiError> {
    humantime::parse_duration(value)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() <= 10 * 365 * 86_400)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{what} must be a duration like 15m, 24h or 30d, found {value:?}"
            ))
        })
}

/// Checks a text's length.
pub fn check_len(what: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if (min..=max).contains(&value.len()) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} must be {min} to {max} bytes long, found {}",
            value.len()
        )))
    }
}

pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
