//! Shared by the fuzz targets: a context shaped like the one the engine builds for a run.

use belay_playbook::context_value;
use minijinja::Value as MjValue;
use serde_json::json;
use std::sync::LazyLock;

/// A run context with every root an expression may use, holding strings, numbers, lists,
/// maps, nulls and booleans, so filters and tests get values of each kind.
pub static RICH: LazyLock<MjValue> = LazyLock::new(|| {
    context_value(&json!({
        "event": {
            "id": "01J0000000000000000000000",
            "kind": "ids.alert",
            "source": "suricata",
            "time": "2026-01-01T00:00:00Z",
            "severity": "high",
            "observables": {
                "ips": ["192.0.2.10", "198.51.100.20"],
                "cidrs": [], "domains": ["example.org"], "urls": ["https://example.org/a"],
                "hashes": [], "users": ["alice"], "hosts": ["laptop-7"], "emails": [], "macs": []
            },
            "data": {"message": "Hello", "count": 3, "ratio": 0.5, "nested": {"a": [1, 2, {"b": null}]}, "flag": true}
        },
        "vars": {"list": "egress", "limit": 5, "names": ["a", "B", "c"]},
        "steps": {
            "a": {"status": "succeeded", "output": {"urls": ["u1", "u2", "u3", "u4", "u5", "u6"], "changed": true}},
            "block": {"status": "succeeded", "output": [{"changed": true}, {"changed": false}]},
            "parse": {"status": "failed", "output": null}
        },
        "inputs": {"host": "laptop-7"},
        "run": {"id": "r1", "playbook": "fuzz"},
        "item": {"name": "x", "value": 1},
        "index": 0,
        "x": ["one", "two", "three"],
        "y": 7,
        "z": "a|b"
    }))
});
