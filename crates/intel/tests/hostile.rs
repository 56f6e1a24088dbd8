//! Feeds written to block everything: networks wider than the limit are refused and
//! counted, invalid addresses are not reclassified as domains, weights stay finite.

use belay_intel::import::{ImportOptions, NoProgress, WideLimit, import};
use belay_intel::{Index, IntelStore, Kind, normalize};
use std::path::Path;

fn feed(dir: &Path, text: &str) -> String {
    let path = dir.join("feed.txt");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const EVERYTHING: &str = "0.0.0.0/0\n::/0\n0.0.0.0-255.255.255.255\n1.0.0.0/7\n\
                          10.0.0.0/8\n2001:db8::/32\n192.0.2.1\n";

#[test]
fn networks_wider_than_the_limit_are_refused_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let source = feed(tmp.path(), EVERYTHING);
    let opts = ImportOptions {
        feed: "wide".into(),
        ..Default::default()
    };
    let r = import(tmp.path(), &source, &opts, &mut NoProgress).unwrap();
    // 0.0.0.0/0, ::/0, the whole-range range (one /0) and the /7.
    assert_eq!(r.too_wide, 4, "{:?}", r.too_wide_examples);
    assert!(
        r.too_wide_examples[0].contains("--allow-wide"),
        "{:?}",
        r.too_wide_examples
    );
    let added: Vec<&str> = r.added.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(added, ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]);
    let event = r.event();
    assert!(!event.observables.cidrs.iter().any(|c| c.ends_with("/0")));
    assert_eq!(event.data["too_wide_count"], 4);
    assert!(r.summary().contains("4 too wide"), "{}", r.summary());

    // Not every address scores as listed.
    let index = Index::load(&IntelStore::open(tmp.path()).unwrap()).unwrap();
    let hit = index
        .lookup("198.51.100.7", None, belay_model::now_ms())
        .unwrap();
    assert!(!hit.found, "{hit:?}");

    // With --allow-wide the feed is taken as it is.
    let opts = ImportOptions {
        feed: "wide".into(),
        wide: WideLimit {
            allow_wide: true,
            ..WideLimit::default()
        },
        ..Default::default()
    };
    let r = import(tmp.path(), &source, &opts, &mut NoProgress).unwrap();
    assert_eq!(r.too_wide, 0);
    assert!(
        r.added.contains(&("0.0.0.0/0".into(), Kind::Cidr)),
        "{:?}",
        r.added
    );
}

#[test]
fn the_width_limit_is_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    let source = feed(tmp.path(), "10.0.0.0/8\n10.1.0.0/16\n");
    let opts = ImportOptions {
        feed: "narrow".into(),
        wide: WideLimit {
            min_prefix_v4: 12,
            ..WideLimit::default()
        },
        ..Default::default()
    };
    let r = import(tmp.path(), &source, &opts, &mut NoProgress).unwrap();
    assert_eq!(r.too_wide, 1);
    assert_eq!(r.added, [("10.1.0.0/16".to_owned(), Kind::Cidr)]);
}

#[test]
fn an_invalid_address_is_invalid_not_a_domain() {
    for value in ["300.1.1.1", "1.2.3.256", "evil.0x1f"] {
        assert!(normalize(value, None).is_err(), "{value}");
        assert!(normalize(value, Some(Kind::Domain)).is_err(), "{value}");
    }
    assert_eq!(normalize("1.2.3.4", None).unwrap().kind, Kind::Ip);
    assert_eq!(normalize("a1.example", None).unwrap().kind, Kind::Domain);

    let tmp = tempfile::tempdir().unwrap();
    let source = feed(tmp.path(), "300.1.1.1\nevil.example\n");
    let opts = ImportOptions {
        feed: "typos".into(),
        ..Default::default()
    };
    let r = import(tmp.path(), &source, &opts, &mut NoProgress).unwrap();
    assert_eq!(r.invalid, 1, "{:?}", r.invalid_examples);
    assert_eq!(r.added, [("evil.example".to_owned(), Kind::Domain)]);
}

#[test]
fn a_huge_weight_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let source = feed(tmp.path(), "192.0.2.1\n");
    for w in [1e308, 1001.0, -1.0, f64::NAN] {
        let opts = ImportOptions {
            feed: "heavy".into(),
            weight: Some(w),
            ..Default::default()
        };
        let err = import(tmp.path(), &source, &opts, &mut NoProgress).unwrap_err();
        assert!(
            err.to_string()
                .contains("--weight must be a number from 0 to 1000"),
            "{w}: {err}"
        );
    }
    let opts = ImportOptions {
        feed: "heavy".into(),
        weight: Some(1000.0),
        ..Default::default()
    };
    import(tmp.path(), &source, &opts, &mut NoProgress).unwrap();
}
