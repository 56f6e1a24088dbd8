//! Fuzzes expressions: compile, evaluate and template splitting.
//!
//! Input layout: `EXPRESSION [NUL JSON-CONTEXT]`. The part before the first NUL byte is the
//! expression source; the part after it, if it is valid JSON, is the evaluation context;
//! otherwise a fixed context shaped like a real run's is used.

#![no_main]

mod common;

use belay_playbook::expr::split_template;
use belay_playbook::{Expr, Pos, context_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (src, json) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let src = String::from_utf8_lossy(src);
    let own = json
        .and_then(|j| serde_json::from_slice::<serde_json::Value>(j).ok())
        .map(|v| context_value(&v));
    let ctx = own.as_ref().unwrap_or(&common::RICH);

    if let Ok(e) = Expr::compile(&src, Pos::default()) {
        let _ = e.eval_json(ctx);
        let _ = e.eval_bool(ctx);
    }

    let start = Pos { line: 3, col: 7 };
    let _ = split_template(&src, start, true);
    let _ = split_template(&src, start, false);
});
