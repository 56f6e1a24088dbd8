//! `dns.sinkhole_many` and `dns.unsinkhole_many`: a set of domains sinkholed or released in
//! one change, with Unbound's bulk commands that read many lines from standard input: one
//! `local_zones` (and, for redirects, one `local_datas`) to sinkhole, one
//! `local_zones_remove` to release. Unbound's zones are read once per batch.
//!
//! A domain that already has a sinkhole is left as it is; one with a local zone of another
//! type (from Unbound's configuration) refuses the whole batch. The state of a batch is the
//! part of it without a sinkhole (`sinkhole_many`), or with one and how (`unsinkhole_many`:
//! each domain's mode and answer, so the undo puts back exactly those sinkholes).

use super::{Unbound, parse_domain, sinkhole_mode};
use crate::ActionError;
use crate::native::batch;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;

/// One domain of a batch: its name (normalized) and, for `sinkhole_many`, its sinkhole.
struct Item {
    name: String,
    kind: &'static str,
    answer: Option<IpAddr>,
}

/// The zones Unbound holds, by name, and the apex answer of each redirect zone.
struct Zones {
    kinds: HashMap<String, String>,
    answers: HashMap<String, String>,
}

impl Unbound {
    /// The batch's domains without repeats, in order, each with its sinkhole: `modes[i]` and
    /// `answers[i]` (the undo of a release gives each domain its own), else `mode` and
    /// `answer` (or the configured default answer).
    fn batch(&self, input: &Value) -> Result<Vec<Item>, ActionError> {
        let each = |field: &str, i: usize| {
            input
                .get(field)
                .and_then(|v| v.get(i))
                .filter(|v| !v.is_null())
        };
        batch::items(input, "domains", "domain", |i, text| {
            let name = parse_domain(text)?;
            let mode = each("modes", i)
                .or_else(|| input.get("mode").filter(|v| !v.is_null()))
                .and_then(Value::as_str)
                .unwrap_or("redirect");
            let answer = each("answers", i)
                .or_else(|| input.get("answer"))
                .and_then(Value::as_str);
            let (kind, answer) = self.sinkhole_of(mode, answer)?;
            Ok((name.clone(), Item { name, kind, answer }))
        })
    }

    /// Every local zone, and (when `answers`) the apex A/AAAA answer of each redirect zone.
    async fn all_zones(&self, answers: bool) -> Result<Zones, ActionError> {
        let kinds: HashMap<String, String> = self.zones().await?.into_iter().collect();
        let mut apex = HashMap::new();
        if answers {
            let text = self.ctl(&["list_local_data"]).await?;
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                // name ttl class type rdata
                if f.len() >= 5 && f[2] == "IN" && matches!(f[3], "A" | "AAAA") {
                    apex.entry(super::fqdn_to_name(f[0]))
                        .or_insert_with(|| f[4].to_owned());
                }
            }
        }
        Ok(Zones {
            kinds,
            answers: apex,
        })
    }

    /// `dns.sinkhole_many`: the domains without a local zone; `dns.unsinkhole_many`: those
    /// sinkholed, with the mode and answer of each.
    pub(super) async fn many_read_state(
        &self,
        action: &str,
        input: &Value,
    ) -> Result<Value, ActionError> {
        let items = self.batch_names(input)?;
        let add = action == "dns.sinkhole_many";
        let zones = self.all_zones(!add).await?;
        if add {
            let absent: Vec<&str> = items
                .iter()
                .filter(|n| !zones.kinds.contains_key(*n))
                .map(String::as_str)
                .collect();
            return Ok(json!({ "absent": absent }));
        }
        let (mut present, mut modes, mut answers) = (Vec::new(), Vec::new(), Vec::new());
        for n in &items {
            if let Some(mode) = zones.kinds.get(n).and_then(|k| sinkhole_mode(k)) {
                present.push(n.as_str());
                modes.push(mode);
                answers.push(
                    zones
                        .answers
                        .get(n)
                        .filter(|_| mode == "redirect")
                        .map(String::as_str),
                );
            }
        }
        Ok(json!({ "present": present, "modes": modes, "answers": answers }))
    }

    /// The batch's domain names only (a release needs no sinkhole settings).
    fn batch_names(&self, input: &Value) -> Result<Vec<String>, ActionError> {
        batch::items(input, "domains", "domain", |_, text| {
            let name = parse_domain(text)?;
            Ok((name.clone(), name))
        })
    }

    /// Sinkholes every domain of the batch that has no local zone yet: one `local_zones` and
    /// one `local_datas`; if the records are refused, the zones just added are removed.
    pub(super) async fn sinkhole_many(&self, input: &Value) -> Result<Value, ActionError> {
        let ttl = match input.get("ttl") {
            None | Some(Value::Null) => 300,
            Some(v) => v
                .as_u64()
                .filter(|t| *t <= 86_400)
                .ok_or_else(|| ActionError::permanent("`ttl` must be 0 to 86400 seconds"))?,
        };
        let items = self.batch(input)?;
        let _guard = self.lock.lock().await;
        let zones = self.all_zones(false).await?;
        let others: Vec<String> = items
            .iter()
            .filter_map(|i| {
                let kind = zones.kinds.get(&i.name)?;
                sinkhole_mode(kind)
                    .is_none()
                    .then(|| format!("{} ({kind})", i.name))
            })
            .take(5)
            .collect();
        if !others.is_empty() {
            return Err(ActionError::permanent(format!(
                "{} already have a local zone of another type (from Unbound's configuration?); \
                 a sinkhole would replace it for good; nothing was applied",
                others.join(", ")
            )));
        }
        let todo: Vec<&Item> = items
            .iter()
            .filter(|i| !zones.kinds.contains_key(&i.name))
            .collect();
        if todo.is_empty() {
            return Ok(json!({ "added": 0, "changed": false }));
        }
        let mut zone_lines = String::new();
        let mut data_lines = String::new();
        for i in &todo {
            zone_lines += &format!("{} {}\n", i.name, i.kind);
            if let Some(a) = i.answer {
                let rtype = if a.is_ipv4() { "A" } else { "AAAA" };
                data_lines += &format!("{} {ttl} IN {rtype} {a}\n", i.name);
            }
        }
        self.ctl_stdin("local_zones", zone_lines).await?;
        if !data_lines.is_empty()
            && let Err(e) = self.ctl_stdin("local_datas", data_lines).await
        {
            // Leave no half-made sinkholes behind.
            let names: String = todo.iter().map(|i| format!("{}\n", i.name)).collect();
            let _ = self.ctl_stdin("local_zones_remove", names).await;
            return Err(e);
        }
        Ok(json!({ "added": todo.len(), "changed": true }))
    }

    /// Releases every sinkholed domain of the batch with one `local_zones_remove`.
    pub(super) async fn unsinkhole_many(&self, input: &Value) -> Result<Value, ActionError> {
        let names = self.batch_names(input)?;
        let _guard = self.lock.lock().await;
        let zones = self.all_zones(false).await?;
        let gone: Vec<&String> = names
            .iter()
            .filter(|n| zones.kinds.get(*n).and_then(|k| sinkhole_mode(k)).is_some())
            .collect();
        if gone.is_empty() {
            return Ok(json!({ "removed": 0, "changed": false }));
        }
        let lines: String = gone.iter().map(|n| format!("{n}\n")).collect();
        self.ctl_stdin("local_zones_remove", lines).await?;
        Ok(json!({ "removed": gone.len(), "changed": true }))
    }
}
