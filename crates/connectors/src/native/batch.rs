//! The list input of a set-level action (`firewall.block_many`, `proxy.block_many`,
//! `ips.dataset_add_many`, `dns.sinkhole_many` and their pairs): read the same way by every
//! connector, each parsing its own targets.

use crate::ActionError;
use serde_json::Value;
use std::collections::HashSet;
use std::hash::Hash;

/// Most items one set-level change takes.
pub(crate) const MAX_BATCH: usize = 1_000_000;

/// The items of the list input `field`, each parsed by `parse` (given its position and text)
/// into the key that identifies it on the target and what the action keeps of it; once per
/// key, in order. The whole batch is refused, nothing applied, when `field` is not a list,
/// holds more than [`MAX_BATCH`] items, or an item is not text (`noun` names one) or does not
/// parse.
pub(crate) fn items<K: Eq + Hash, T>(
    input: &Value,
    field: &str,
    noun: &str,
    mut parse: impl FnMut(usize, &str) -> Result<(K, T), ActionError>,
) -> Result<Vec<T>, ActionError> {
    let Some(Value::Array(list)) = input.get(field) else {
        return Err(ActionError::permanent(format!(
            "`{field}` must be a list of {field}"
        )));
    };
    if list.len() > MAX_BATCH {
        return Err(ActionError::permanent(format!(
            "`{field}` holds {} items, more than the {MAX_BATCH} one change may take; nothing was applied",
            list.len()
        )));
    }
    let mut seen = HashSet::with_capacity(list.len());
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let text = v
            .as_str()
            .ok_or_else(|| ActionError::permanent(format!("{noun} `{v}` is not text")))?;
        let (key, item) = parse(i, text)?;
        if seen.insert(key) {
            out.push(item);
        }
    }
    Ok(out)
}

/// The state of a set-level change from whether the target holds each item (`held`, in the
/// items' order): for an add (`add`), `("absent", the items it lacks)`; for a removal,
/// `("present", the items it holds)`. Both are empty once the change is applied.
pub(crate) fn diff<T: serde::Serialize>(
    items: impl IntoIterator<Item = T>,
    held: &[bool],
    add: bool,
) -> (&'static str, Value) {
    let diff: Vec<T> = items
        .into_iter()
        .zip(held)
        .filter(|(_, h)| **h != add)
        .map(|(item, _)| item)
        .collect();
    (
        if add { "absent" } else { "present" },
        serde_json::json!(diff),
    )
}

/// The items an add's before-state (`{"absent": [...]}`, as the engine read it just before
/// the call under its lock) names, each found by `lookup` among the batch's own; `None` when
/// there is no such state or one of its items is not the batch's (the target is read instead).
pub(crate) fn absent_before<T>(
    before: Option<&Value>,
    mut lookup: impl FnMut(&str) -> Option<T>,
) -> Option<Vec<T>> {
    before?
        .get("absent")?
        .as_array()?
        .iter()
        .map(|v| lookup(v.as_str()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_keeps_what_the_change_would_do() {
        let held = [true, false, true];
        assert_eq!(diff(["a", "b", "c"], &held, true), ("absent", json!(["b"])));
        assert_eq!(
            diff(["a", "b", "c"], &held, false),
            ("present", json!(["a", "c"]))
        );
        assert_eq!(diff(Vec::<&str>::new(), &[], true), ("absent", json!([])));
        let batch = ["a", "b"];
        let find = |t: &str| batch.iter().position(|b| *b == t);
        assert_eq!(
            absent_before(Some(&json!({ "absent": ["b"] })), find),
            Some(vec![1])
        );
        assert_eq!(absent_before(Some(&json!({ "absent": ["z"] })), find), None);
        assert_eq!(absent_before(Some(&json!({ "present": [] })), find), None);
        assert_eq!(absent_before(None, find), None);
    }

    fn numbers(input: &Value) -> Result<Vec<u32>, ActionError> {
        items(input, "values", "value", |_, t| {
            let n: u32 = t
                .parse()
                .map_err(|_| ActionError::permanent(format!("`{t}` is not a number")))?;
            Ok((n, n))
        })
    }

    #[test]
    fn items_are_kept_once_per_key_in_order_or_the_batch_is_refused_whole() {
        assert_eq!(
            numbers(&json!({"values": ["3", "1", "03", "2", "1"]})).unwrap(),
            [3, 1, 2]
        );
        for (input, says) in [
            (json!({}), "`values` must be a list of values"),
            (json!({"values": "1"}), "`values` must be a list of values"),
            (json!({"values": ["1", 2]}), "value `2` is not text"),
            (json!({"values": ["1", "x"]}), "`x` is not a number"),
        ] {
            let e = numbers(&input).unwrap_err();
            assert!(e.message.contains(says), "{input}: {}", e.message);
        }
        let over = json!({ "values": vec!["1"; MAX_BATCH + 1] });
        let e = numbers(&over).unwrap_err();
        assert!(e.message.contains("more than the 1000000"), "{}", e.message);
    }
}
