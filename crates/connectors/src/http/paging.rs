//! Requests that take more than one exchange: following a listing's pages (by cursor or by
//! next-page link) into one merged answer, bounded by `max_pages`, and polling a started job
//! until it is done, bounded by `max_attempts`. Every request still goes through the transport
//! (allow-list, auth, retries).

use super::Http;
use super::render::{drop_nulls, pairs};
use super::spec::{self, ActionMap, Next, Poll, RequestSpec};
use super::transport::message_of;
use crate::{ActionError, ErrorKind};
use belay_playbook::describe_value;
use reqwest::Method;
use serde_json::Value;

impl Http {
    /// Renders and sends an exchange's request, following pages; answers the status and the
    /// merged body.
    pub(super) async fn request(
        &self,
        req: &RequestSpec,
        paginate: Option<&spec::Paginate>,
        ctx: &minijinja::Value,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), ActionError> {
        let url = self.url(req, ctx)?;
        let mut query = match &req.query {
            Some(t) => pairs(&self.render(t, ctx, "query")?),
            None => Vec::new(),
        };
        let mut headers = Vec::new();
        for (k, t) in &req.headers {
            match self.render(t, ctx, &format!("header {k}"))? {
                Value::Null => {}
                Value::String(s) => headers.push((k.clone(), s)),
                other => headers.push((k.clone(), other.to_string())),
            }
        }
        let body = match &req.body {
            Some(t) => Some(drop_nulls(self.render(t, ctx, "body")?)),
            None => None,
        };
        let key = idempotency_key.filter(|_| req.method != Method::GET);
        let (status, first) = self
            .send(
                &req.method,
                url.clone(),
                &query,
                &headers,
                body.as_ref(),
                key,
            )
            .await?;
        let Some(p) = paginate.filter(|_| status != 404) else {
            return Ok((status, first));
        };
        let mut merged = first.clone();
        let mut items = self.items_at(&first, &p.items)?;
        let mut page = first;
        let mut pages = 1;
        loop {
            let next = match &p.next {
                Next::Cursor { pointer, .. } | Next::Url { pointer } => {
                    match page.pointer(pointer) {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) if s.is_empty() => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => Some(other.to_string()),
                    }
                }
            };
            let Some(next) = next else { break };
            if pages >= p.max_pages {
                return Err(self.fail(
                    ErrorKind::Permanent,
                    format!(
                        "{} has more than {} pages (raise paginate.max_pages in the spec)",
                        url.path(),
                        p.max_pages
                    ),
                ));
            }
            let (next_url, next_query) = match &p.next {
                Next::Cursor { param, .. } => {
                    query.retain(|(k, _)| k != param);
                    query.push((param.clone(), next));
                    (url.clone(), query.clone())
                }
                Next::Url { .. } => {
                    let u = self.base.join(&next).map_err(|e| {
                        self.fail(
                            ErrorKind::Permanent,
                            format!("the next-page link is not a URL: {e}"),
                        )
                    })?;
                    (u, Vec::new())
                }
            };
            let (_, body) = self
                .send(
                    &req.method,
                    next_url,
                    &next_query,
                    &headers,
                    body.as_ref(),
                    None,
                )
                .await?;
            items.extend(self.items_at(&body, &p.items)?);
            page = body;
            pages += 1;
        }
        if let Some(slot) = merged.pointer_mut(&p.items) {
            *slot = Value::Array(items);
        }
        Ok((status, merged))
    }

    pub(super) fn items_at(&self, page: &Value, pointer: &str) -> Result<Vec<Value>, ActionError> {
        match page.pointer(pointer) {
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(other) => Err(self.fail(
                ErrorKind::Permanent,
                format!(
                    "a page's `{pointer}` should be a list, found {}",
                    describe_value(other)
                ),
            )),
        }
    }

    /// Polls a started job (`poll` in the spec) until `until` holds, at most `max_attempts` times
    /// `interval` apart, when `when` says the answer needs it; answers the last status and body.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn poll(
        &self,
        action: &str,
        map: &ActionMap,
        p: &Poll,
        input: &Value,
        ctx: &minijinja::Value,
        mut status: u16,
        mut body: Value,
    ) -> Result<(u16, Value), ActionError> {
        let wanted = match &p.when {
            Some(w) => w
                .eval_bool(ctx)
                .map_err(|e| self.fail(ErrorKind::Permanent, format!("poll.when: {e}")))?,
            None => true,
        };
        if wanted {
            let mut done = false;
            for n in 0..p.max_attempts {
                if n > 0 {
                    tokio::time::sleep(p.interval).await;
                }
                let pctx = self.context(map, input, Some((status, &body)));
                let (s, b) = self.request(&p.request, None, &pctx, None).await?;
                if s == 404 {
                    return Err(self.fail(
                        ErrorKind::Permanent,
                        format!(
                            "{action}: the job vanished while polling: {}",
                            message_of(&b)
                        ),
                    ));
                }
                (status, body) = (s, b);
                let dctx = self.context(map, input, Some((status, &body)));
                if p.until
                    .eval_bool(&dctx)
                    .map_err(|e| self.fail(ErrorKind::Permanent, format!("poll.until: {e}")))?
                {
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(self.fail(
                    ErrorKind::Transient,
                    format!("{action}: still not done after {} polls", p.max_attempts),
                ));
            }
        }
        Ok((status, body))
    }
}
