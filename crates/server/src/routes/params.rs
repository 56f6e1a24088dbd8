//! What the read routes share: query strings refused as problems, and opaque page cursors.

use crate::problem::Problem;
use axum::extract::rejection::QueryRejection;
use base64::Engine as _;

/// A query string that does not parse: 400 naming the parameter when serde says which.
pub(crate) fn bad_query(e: QueryRejection) -> Problem {
    let text = e.body_text();
    let field = text
        .split('`')
        .nth(1)
        .filter(|f| !f.is_empty() && f.len() < 64)
        .map(str::to_owned);
    let p = Problem::bad_request(text);
    match field {
        Some(f) => p.at_field(f),
        None => p,
    }
}

/// An opaque cursor for `text` (the position after which the next page starts).
pub(crate) fn encode_cursor(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The position a cursor this server gave stands for; 400 naming `cursor` otherwise.
pub(crate) fn decode_cursor(c: &str) -> Result<String, Problem> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Problem::bad_request("`cursor` is not a cursor this server gave").at_field("cursor")
        })
}

/// A page size: `limit` (default `default`), at least 1, at most `max`.
pub(crate) fn page_size(limit: Option<usize>, default: usize, max: usize) -> usize {
    limit.unwrap_or(default).clamp(1, max)
}
