//! The stand-ins serve the set-level actions as the native connectors do: one change for the
//! batch, its state the exact item diff, the catalog's inverse restoring exactly that.

use belay_connectors::standin::Standin;
use serde_json::json;

mod common;
use common::{inverse, invoke, state};

#[tokio::test]
async fn set_level_actions_change_the_batch_and_roll_back_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (family, single, many, list, item, extra, items) in [
        (
            "ips",
            "ips.dataset_add",
            "ips.dataset_add_many",
            "values",
            "value",
            json!({ "dataset": "belay-ips", "type": "ip" }),
            ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        ),
        (
            "dns",
            "dns.sinkhole_domain",
            "dns.sinkhole_many",
            "domains",
            "domain",
            json!({ "answer": "10.0.0.1" }),
            ["a.example.com", "b.example.com", "c.example.com"],
        ),
        (
            "firewall",
            "firewall.block_ip",
            "firewall.block_many",
            "addresses",
            "address",
            json!({ "set": "egress" }),
            ["198.51.100.1", "198.51.100.2", "198.51.100.0/28"],
        ),
    ] {
        let s = Standin::new(family, dir.path());
        // One item there before the batch, by the single-value action.
        let mut one = extra.clone();
        one[item] = json!(items[0]);
        // (Outputs are not checked against the catalog: the stand-ins add `simulated: true`.)
        let out = invoke(&s, single, one.clone()).await.expect("single");
        assert_eq!(out["changed"], true);
        let mut batch = extra.clone();
        batch[list] = json!([items[0], items[1], items[2], items[1]]);
        let before = state(&s, many, &batch).await;
        assert_eq!(before["absent"], json!([items[1], items[2]]), "{family}");
        let out = invoke(&s, many, batch.clone()).await.expect("batch");
        assert_eq!(out["changed"], true);
        assert_eq!(out["added"], 2, "{family}");
        assert_eq!(state(&s, many, &batch).await["absent"], json!([]));
        let mut last = extra.clone();
        last[item] = json!(items[2]);
        assert_eq!(state(&s, single, &last).await["present"], true, "{family}");
        let (undo, with) = inverse(many, &batch, &before);
        let out = invoke(&s, &undo, with).await.expect("undo");
        assert_eq!(out["removed"], 2, "{family}");
        assert_eq!(state(&s, many, &batch).await, before, "{family}");
        assert_eq!(
            state(&s, single, &one).await["present"],
            true,
            "{family}: the item there before stays"
        );
    }
}
