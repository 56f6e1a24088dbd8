//! The SaaS web proxy simulator (`/proxy/v1`): custom block lists of addresses (IPs, CIDR
//! networks, domains with their subdomains, URLs), a stricter per-address policy (detailed
//! logging, traffic capture), and a status lookup that says which entry or rule matches.

use crate::Shared;
use crate::api::{
    ApiError, PageQuery, Req, check_enum, check_len, check_name, cursor_page, now, ok,
    parse_duration, remove_from, respond, rfc3339,
};
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

pub struct State {
    lists: BTreeMap<String, BTreeMap<String, Option<String>>>,
    policies: BTreeMap<String, Policy>,
    categories: BTreeMap<String, String>,
}

#[derive(Clone)]
struct Policy {
    logging: String,
    pcap: bool,
    expires: Option<String>,
}

impl State {
    pub fn seeded() -> Self {
        let categories = [
            ("news.example", "news"),
            ("login-microsoftonline.example", "phishing"),
            ("files.sharehost.example", "file_sharing"),
        ];
        State {
            lists: BTreeMap::new(),
            policies: BTreeMap::new(),
            categories: categories
                .iter()
                .map(|(d, c)| (d.to_string(), c.to_string()))
                .collect(),
        }
    }

    pub fn snapshot(&self) -> Value {
        json!({
            "lists": self.lists.iter().map(|(l, e)| (l.clone(), e.keys().cloned().collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
            "policies": self.policies.iter().map(|(a, p)| (a.clone(), json!({ "logging": p.logging, "pcap": p.pcap }))).collect::<BTreeMap<_, _>>(),
        })
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/status", get(status))
        .route(
            "/lists/{list}/entries",
            get(list_entries).post(block).delete(unblock),
        )
        .route("/lists/{list}/batch", post(block_batch))
        .route("/lists/{list}/batch/remove", post(unblock_batch))
        .route("/lists/{list}/lookup", post(lookup))
        .route("/policies", post(tighten).delete(relax))
}

/// Lower-cases an address and drops a trailing dot.
fn normalize(address: &str) -> Result<String, ApiError> {
    check_len("address", address, 1, 2048)?;
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid(format!(
            "address must not contain spaces, found {address:?}"
        )));
    }
    Ok(address.trim_end_matches('.').to_ascii_lowercase())
}

/// The host part of an address (a URL's host, or the address itself).
fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.starts_with('[') {
        return host
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

fn in_network(ip: IpAddr, net: &str) -> bool {
    let Some((base, len)) = net.split_once('/') else {
        return net.parse::<IpAddr>().is_ok_and(|n| n == ip);
    };
    let (Ok(base), Ok(len)) = (base.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (ip, base) {
        (IpAddr::V4(a), IpAddr::V4(b)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Whether a block-list entry covers an address.
fn covers(entry: &str, address: &str) -> bool {
    if entry == address {
        return true;
    }
    let host = host_of(address);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return in_network(ip, entry);
    }
    if entry.contains('/') {
        // A URL entry covers the URLs under it.
        return address.starts_with(entry);
    }
    host == entry || host.ends_with(&format!(".{entry}"))
}

/// The `address` query parameter, required.
fn address_param(q: &BTreeMap<String, String>) -> Result<&String, ApiError> {
    q.get("address")
        .ok_or_else(|| ApiError::bad_request("query parameter `address` is required"))
}

async fn status(
    AxState(s): AxState<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let address = address_param(&q)?;
    let address = normalize(address)?;
    let w = s.world();
    let p = &w.proxy;
    let matched = p.lists.iter().find_map(|(list, entries)| {
        entries
            .keys()
            .find(|e| covers(e, &address))
            .map(|e| (list.clone(), e.clone()))
    });
    let host = host_of(&address).to_owned();
    let policy = p.policies.get(&address).or_else(|| p.policies.get(&host));
    let category = p
        .categories
        .iter()
        .find(|(d, _)| covers(d, &host))
        .map(|(_, c)| c.clone());
    Ok(respond(ok(json!({
        "address": address,
        "blocked": matched.is_some(),
        "list": matched.as_ref().map(|(l, _)| l),
        "matched": matched.as_ref().map(|(_, e)| e),
        "policy": if policy.is_some() { "tightened" } else { "default" },
        "logging": policy.map_or("standard", |p| p.logging.as_str()),
        "pcap": policy.is_some_and(|p| p.pcap),
        "expires": policy.and_then(|p| p.expires.clone()),
        "category": category,
    }))))
}

async fn list_entries(
    AxState(s): AxState<Arc<Shared>>,
    Path(list): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let w = s.world();
    let items: Vec<Value> = w
        .proxy
        .lists
        .get(&list)
        .map(|e| {
            e.iter()
                .map(|(a, r)| json!({ "address": a, "reason": r }))
                .collect()
        })
        .unwrap_or_default();
    respond(cursor_page(&items, &q, json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    address: String,
    reason: Option<String>,
}

async fn block(Path(list): Path<String>, req: Req) -> Result<Response, ApiError> {
    let body: BlockBody = req.json()?;
    Ok(req.mutate(|w| {
        check_name("list", &list, 64, "_.-")?;
        check_len("reason", body.reason.as_deref().unwrap_or(""), 0, 256)?;
        let address = normalize(&body.address)?;
        let entries = w.proxy.lists.entry(list.clone()).or_default();
        let changed = !entries.contains_key(&address);
        if changed {
            entries.insert(address.clone(), body.reason.clone());
        }
        ok(json!({ "address": address, "list": list, "changed": changed }))
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    addresses: Vec<String>,
    reason: Option<String>,
}

/// Most addresses one batch request takes.
const MAX_BATCH: usize = 100_000;

/// The batch's addresses normalized, without repeats, in order, each with the address as given.
fn batch_addresses(body: &BatchBody) -> Result<Vec<(String, String)>, ApiError> {
    if body.addresses.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!(
            "`addresses` holds more than {MAX_BATCH} items"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(body.addresses.len());
    for a in &body.addresses {
        let n = normalize(a)?;
        if seen.insert(n.clone()) {
            out.push((a.clone(), n));
        }
    }
    Ok(out)
}

/// Adds every address of a batch to a list in one request (a SaaS proxy's bulk import).
async fn block_batch(Path(list): Path<String>, req: Req) -> Result<Response, ApiError> {
    let body: BatchBody = req.json()?;
    Ok(req.mutate(|w| {
        check_name("list", &list, 64, "_.-")?;
        check_len("reason", body.reason.as_deref().unwrap_or(""), 0, 256)?;
        let addresses = batch_addresses(&body)?;
        let entries = w.proxy.lists.entry(list.clone()).or_default();
        let mut added = 0;
        for (_, a) in addresses {
            if let std::collections::btree_map::Entry::Vacant(e) = entries.entry(a) {
                e.insert(body.reason.clone());
                added += 1;
            }
        }
        ok(json!({ "list": list, "added": added, "changed": added > 0 }))
    }))
}

/// Removes every address of a batch from a list in one request.
async fn unblock_batch(Path(list): Path<String>, req: Req) -> Result<Response, ApiError> {
    let body: BatchBody = req.json()?;
    Ok(req.mutate(|w| {
        check_name("list", &list, 64, "_.-")?;
        let addresses = batch_addresses(&body)?;
        let mut removed = 0;
        for (_, a) in addresses {
            if remove_from(&mut w.proxy.lists, &list, &a) {
                removed += 1;
            }
        }
        ok(json!({ "list": list, "removed": removed, "changed": removed > 0 }))
    }))
}

/// Which addresses of a batch a list holds (`present`) and which it lacks (`absent`), each
/// as given, in order: an exact entry counts, a covering one does not.
async fn lookup(
    AxState(s): AxState<Arc<Shared>>,
    Path(list): Path<String>,
    req: Req,
) -> Result<Response, ApiError> {
    let body: BatchBody = req.json()?;
    check_name("list", &list, 64, "_.-")?;
    let addresses = batch_addresses(&body)?;
    let w = s.world();
    let entries = w.proxy.lists.get(&list);
    let (present, absent): (Vec<_>, Vec<_>) = addresses
        .into_iter()
        .partition(|(_, n)| entries.is_some_and(|e| e.contains_key(n)));
    let given = |v: Vec<(String, String)>| v.into_iter().map(|(a, _)| a).collect::<Vec<_>>();
    Ok(respond(ok(
        json!({ "list": list, "present": given(present), "absent": given(absent) }),
    )))
}

async fn unblock(
    Path(list): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    req: Req,
) -> Result<Response, ApiError> {
    let address = address_param(&q)?.clone();
    Ok(req.mutate(|w| {
        check_name("list", &list, 64, "_.-")?;
        let address = normalize(&address)?;
        let changed = remove_from(&mut w.proxy.lists, &list, &address);
        ok(json!({ "address": address, "list": list, "changed": changed }))
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    address: String,
    #[serde(default = "detailed")]
    logging: String,
    #[serde(default = "yes")]
    pcap: bool,
    duration: Option<String>,
}

fn detailed() -> String {
    "detailed".into()
}

fn yes() -> bool {
    true
}

async fn tighten(req: Req) -> Result<Response, ApiError> {
    let body: PolicyBody = req.json()?;
    Ok(req.mutate(|w| {
        let address = normalize(&body.address)?;
        check_enum("logging", &body.logging, &["detailed", "full"])?;
        let expires = match &body.duration {
            Some(d) => Some(rfc3339(
                now() + chrono::Duration::seconds(parse_duration("duration", d)?.as_secs() as i64),
            )),
            None => None,
        };
        let new = Policy {
            logging: body.logging.clone(),
            pcap: body.pcap,
            expires: expires.clone(),
        };
        let old = w.proxy.policies.insert(address.clone(), new);
        let changed = old
            .as_ref()
            .is_none_or(|o| o.logging != body.logging || o.pcap != body.pcap);
        ok(json!({
            "address": address, "policy": "tightened", "logging": body.logging,
            "pcap": body.pcap, "expires": expires, "changed": changed,
        }))
    }))
}

async fn relax(Query(q): Query<BTreeMap<String, String>>, req: Req) -> Result<Response, ApiError> {
    let address = address_param(&q)?.clone();
    Ok(req.mutate(|w| {
        let address = normalize(&address)?;
        let old = w.proxy.policies.remove(&address);
        ok(json!({
            "address": address, "policy": "default", "changed": old.is_some(),
            "previous": old.map(|p| json!({ "logging": p.logging, "pcap": p.pcap })),
        }))
    }))
}
