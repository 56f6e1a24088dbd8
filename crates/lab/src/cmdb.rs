//! The CMDB simulator (`/cmdb/v1`): devices with their class, owner and criticality, found by
//! IP address, MAC address or hostname. Lists are paginated with `links.next` URLs, as many
//! CMDB APIs do.

use crate::Shared;
use crate::api::{ApiError, ApiResult, PageQuery, World, check_name, ok, page, respond};
use crate::fleet::Device;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/devices", get(list_devices))
        .route("/devices/{id}", get(get_device))
        .route("/owners/{username}", get(get_owner))
        .route("/classes", get(classes))
}

pub fn snapshot(w: &World) -> Value {
    json!({ "devices": w.fleet.len() })
}

fn device_json(d: &Device) -> Value {
    json!({
        "device_id": d.device_id,
        "hostname": d.hostname,
        "ip": d.ip,
        "mac": d.mac,
        "class": d.class,
        "os": d.os,
        "owner": d.owner,
        "criticality": d.criticality,
        "high_profile": d.high_profile,
    })
}

#[derive(Deserialize)]
struct DeviceQuery {
    ip: Option<String>,
    mac: Option<String>,
    hostname: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

fn normalize_mac(mac: &str) -> Result<String, ApiError> {
    let m = mac.to_ascii_lowercase().replace('-', ":");
    let valid = m.len() == 17
        && m.split(':').count() == 6
        && m.split(':')
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if valid {
        Ok(m)
    } else {
        Err(ApiError::bad_request(format!(
            "mac must look like aa:bb:cc:dd:ee:ff, found {mac:?}"
        )))
    }
}

fn find(s: &Shared, q: DeviceQuery) -> ApiResult {
    if let Some(ip) = &q.ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "ip must be an IPv4 or IPv6 address, found {ip:?}"
        )));
    }
    let mac = q.mac.as_deref().map(normalize_mac).transpose()?;
    if let Some(h) = &q.hostname {
        check_name("hostname", h, 253, "_.-").map_err(|e| ApiError::bad_request(e.message))?;
    }
    let w = s.world();
    let items: Vec<Value> = w
        .fleet
        .iter()
        .filter(|d| q.ip.as_deref().is_none_or(|ip| d.ip == ip))
        .filter(|d| mac.as_deref().is_none_or(|m| d.mac == m))
        .filter(|d| {
            q.hostname
                .as_deref()
                .is_none_or(|h| d.hostname.eq_ignore_ascii_case(h))
        })
        .map(device_json)
        .collect();
    let total = items.len();
    let (data, next) = page(&items, &q.page)?;
    let next = next.map(|n| {
        let mut link = format!("{}/cmdb/v1/devices?cursor=o{n}", s.base_url);
        for (k, v) in [
            ("ip", &q.ip),
            ("mac", &mac),
            ("hostname", &q.hostname),
            ("limit", &q.page.limit),
        ] {
            if let Some(v) = v {
                link.push_str(&format!("&{k}={v}"));
            }
        }
        link
    });
    ok(json!({ "data": data, "links": { "next": next }, "meta": { "total": total } }))
}

async fn list_devices(State(s): State<Arc<Shared>>, Query(q): Query<DeviceQuery>) -> Response {
    respond(find(&s, q))
}

async fn get_device(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let w = s.world();
    respond(
        w.device(&id)
            .map(|i| device_json(&w.fleet[i]))
            .ok_or_else(|| ApiError::not_found(format!("no device `{id}`")))
            .and_then(ok),
    )
}

async fn get_owner(State(s): State<Arc<Shared>>, Path(username): Path<String>) -> Response {
    let w = s.world();
    let devices: Vec<&str> = w
        .fleet
        .iter()
        .filter(|d| d.owner.username == username)
        .map(|d| d.device_id.as_str())
        .collect();
    let Some(owner) = w.fleet.iter().find(|d| d.owner.username == username) else {
        return respond(Err(ApiError::not_found(format!("no owner `{username}`"))));
    };
    respond(ok(json!({ "owner": owner.owner, "devices": devices })))
}

async fn classes(State(s): State<Arc<Shared>>) -> Response {
    let w = s.world();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &w.fleet {
        *counts.entry(d.class.as_str()).or_default() += 1;
    }
    let data: Vec<Value> = counts
        .into_iter()
        .map(|(c, n)| json!({ "class": c, "devices": n }))
        .collect();
    respond(ok(json!({ "data": data, "links": { "next": null } })))
}
