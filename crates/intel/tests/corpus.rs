//! The real-world feeds of the corpus: every one imports, scores count independent feeds,
//! re-imports replace a feed's set, and every supported STIX indicator is found.

use belay_intel::import::{ImportOptions, NoProgress, import};
use belay_intel::parse::{VecSink, stix};
use belay_intel::{Index, IntelStore, Kind, normalize};
use belay_testkit::{corpus, corpus_file};
use std::path::Path;

fn import_as(data: &Path, source: &Path, feed: &str) -> belay_intel::ImportReport {
    let opts = ImportOptions {
        feed: feed.into(),
        ..Default::default()
    };
    import(data, &source.display().to_string(), &opts, &mut NoProgress)
        .unwrap_or_else(|e| panic!("import of {}: {e:#}", source.display()))
}

fn index(data: &Path) -> Index {
    Index::load(&IntelStore::open(data).unwrap()).unwrap()
}

/// Feed name, path under the corpus, and the least number of indicators it must yield.
const FEEDS: &[(&str, &str, u64)] = &[
    ("ipsum", "threat-intel/ipsum/ipsum.txt", 2213),
    ("feodo", "threat-intel/firehol/feodo.ipset", 1000),
    (
        "spamhaus_drop",
        "threat-intel/firehol/spamhaus_drop.netset",
        700,
    ),
    ("dshield", "threat-intel/firehol/dshield.netset", 18),
    (
        "blocklist_de",
        "threat-intel/firehol/blocklist_de.ipset",
        1900,
    ),
    (
        "et_compromised",
        "threat-intel/firehol/et_compromised.ipset",
        600,
    ),
    (
        "firehol_level1",
        "threat-intel/firehol/firehol_level1.netset",
        1900,
    ),
    (
        "urlhaus",
        "threat-intel/urlhaus/urlhaus_online_2025-04-21.csv",
        1990,
    ),
    (
        "urlhaus_head",
        "threat-intel/urlhaus/urlhaus_online_2026-08-18_head.csv",
        14,
    ),
    (
        "hosts",
        "threat-intel/domains/urlhaus-filter-hosts.txt",
        1900,
    ),
    (
        "domains",
        "threat-intel/domains/urlhaus-filter-domains-online.txt",
        1900,
    ),
    ("digitalside", "threat-intel/misp-feed-digitalside", 10),
];

#[test]
fn every_corpus_feed_imports() {
    let Some(corpus) = corpus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (feed, path, least) in FEEDS {
        let r = import_as(dir.path(), &corpus.join(path), feed);
        assert!(
            r.total >= *least,
            "{feed}: {} indicators, expected at least {least}",
            r.total
        );
        assert_eq!(
            r.added.len() as u64,
            r.total,
            "{feed}: a first import adds all"
        );
        assert!(r.removed.is_empty());
    }
    let ix = index(dir.path());
    // IPsum keeps all its 2,213 IPs, none lost to parsing.
    let ipsum = import_as(dir.path(), &corpus.join(FEEDS[0].1), "ipsum");
    assert_eq!(
        (ipsum.total, ipsum.invalid, ipsum.unchanged),
        (2213, 0, 2213)
    );
    // The URLhaus CSV yields URLs, normalized; the banner's commented header is understood.
    let u = ix
        .lookup(
            "http://117.209.87.242:60905/bin.sh",
            None,
            belay_model::now_ms(),
        )
        .unwrap();
    assert!(u.found && u.kind == Kind::Url, "{u:?}");
    let head = ix
        .lookup(
            "http://176.65.139.212/eclipse.sh4",
            None,
            belay_model::now_ms(),
        )
        .unwrap();
    assert_eq!(head.sources, ["urlhaus_head"]);
    // Hosts-format names are domains.
    let hosts = import_as(dir.path(), &corpus.join(FEEDS[9].1), "hosts");
    assert!(hosts.added.is_empty() && hosts.removed.is_empty());
    assert!(
        ix.lookup(&hosts_first_name(&corpus), None, belay_model::now_ms())
            .unwrap()
            .sources
            .contains(&"hosts".to_string())
    );
}

fn hosts_first_name(corpus: &Path) -> String {
    let text = std::fs::read_to_string(corpus.join(FEEDS[9].1)).unwrap();
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    line.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn misp_feed_loads_through_its_manifest() {
    let Some(corpus) = corpus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = import_as(
        dir.path(),
        &corpus.join("threat-intel/misp-feed-digitalside"),
        "digitalside",
    );
    // 3 events, each: md5, sha1, sha256, url and ip-dst marked for detection; the file
    // name, mime type and the VirusTotal object's attributes are not indicators.
    assert_eq!(r.total, 15, "{:?}", r.added);
    assert!(r.unsupported > 0);
    let ix = index(dir.path());
    let now = belay_model::now_ms();
    for v in [
        "45.14.224.68",
        "http://45.14.224.68/bins/aeneas.arm5",
        "b6fc973b0d4b71a4426f21ca7437e253",
        "9281c0eab516e77ce60589b0a728768a89e3ad030a7c4bd34bd57d958d368c71",
    ] {
        assert!(ix.lookup(v, None, now).unwrap().found, "{v}");
    }
    assert!(
        !ix.lookup("aeneas.arm5", Some(Kind::Domain), now)
            .unwrap()
            .found
    );
}

#[test]
fn an_ip_listed_by_three_feeds_scores_three() {
    let Some(corpus) = corpus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 92.63.193.140 is listed by et_compromised itself and by a network in dshield and in
    // firehol_level1; blocklist_de does not list it.
    for (feed, path, _) in FEEDS.iter().filter(|f| {
        matches!(
            f.0,
            "dshield" | "et_compromised" | "firehol_level1" | "blocklist_de"
        )
    }) {
        import_as(dir.path(), &corpus.join(path), feed);
    }
    let ix = index(dir.path());
    let r = ix
        .lookup("92.63.193.140", None, belay_model::now_ms())
        .unwrap();
    assert_eq!(r.score, 3.0, "{r:#?}");
    assert_eq!(r.sources, ["dshield", "et_compromised", "firehol_level1"]);
    // The IP itself (et_compromised) and one network listed by two feeds.
    assert_eq!(r.matches.len(), 2, "{r:#?}");
    let net = r
        .matches
        .iter()
        .find(|m| m.value == "92.63.193.0/24")
        .unwrap();
    assert_eq!(net.sources.len(), 2);
    // The same IP in another spelling is the same indicator.
    let mapped = ix
        .lookup("::ffff:92.63.193.140", None, belay_model::now_ms())
        .unwrap();
    assert_eq!(mapped.score, 3.0);
    // A feed weight scales its contribution.
    let opts = ImportOptions {
        feed: "dshield".into(),
        weight: Some(2.5),
        ..Default::default()
    };
    let dshield = corpus.join("threat-intel/firehol/dshield.netset");
    import(
        dir.path(),
        &dshield.display().to_string(),
        &opts,
        &mut NoProgress,
    )
    .unwrap();
    let r = index(dir.path())
        .lookup("92.63.193.140", None, belay_model::now_ms())
        .unwrap();
    assert_eq!(r.score, 4.5);
    // And the score decays with age: a half-life later each listing counts half.
    let later = belay_model::now_ms() + 30 * 24 * 3600 * 1000;
    let r = index(dir.path())
        .lookup("92.63.193.140", None, later)
        .unwrap();
    assert_eq!(r.score, 2.25);
}

#[test]
fn reimporting_a_feed_without_an_entry_removes_that_source() {
    let Some(firehol) = corpus_file("threat-intel/firehol") else {
        return;
    };
    let src = firehol.join("et_compromised.ipset");
    let dir = tempfile::tempdir().unwrap();
    import_as(dir.path(), &src, "et_compromised");
    import_as(dir.path(), &firehol.join("dshield.netset"), "dshield");
    let before = index(dir.path())
        .lookup("92.63.193.140", None, belay_model::now_ms())
        .unwrap();
    assert_eq!(before.sources, ["dshield", "et_compromised"]);

    let text = std::fs::read_to_string(&src).unwrap();
    let edited: String = text
        .lines()
        .filter(|l| l.trim() != "92.63.193.140")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(edited.len() < text.len(), "the corpus file lists the IP");
    let copy = dir.path().join("et_compromised.ipset");
    std::fs::write(&copy, edited).unwrap();
    let r = import_as(dir.path(), &copy, "et_compromised");
    assert_eq!(r.removed, [("92.63.193.140".to_string(), Kind::Ip)]);
    assert!(r.added.is_empty());
    let event = r.event();
    assert_eq!(event.kind, "intel.update");
    assert_eq!(event.source, "intel:et_compromised");
    assert_eq!(event.data["removed"], serde_json::json!(["92.63.193.140"]));
    assert_eq!(event.data["removed_count"], 1);
    assert_eq!(event.data["added_count"], 0);

    let after = index(dir.path())
        .lookup("92.63.193.140", None, belay_model::now_ms())
        .unwrap();
    assert_eq!(
        after.sources,
        ["dshield"],
        "only the network's feed is left"
    );
    assert_eq!(after.score, 1.0);
}

const STIX: &[(&str, usize)] = &[
    // file, indicators whose pattern is unsupported (compound, MATCHES, other paths)
    ("stix/indicator-for-c2-ip-address.json", 0),
    ("stix/indicator-to-campaign-relationship.json", 0),
    ("stix/indicators-for-C2-with-COA.json", 0),
    ("stix/malicious-email-indicator-with-attachment.json", 2),
    ("stix/apt1.json", 2),
    ("stix/poisonivy.json", 2),
    ("stix/infrastructure.json", 0),
    (
        "stix/real-world-stix20/digitalside-1e89c624-23fe-4c79-a310-a69d85e6820f.json",
        1,
    ),
    ("stix/taxii/taxii21-envelope-response.json", 0),
];

#[test]
fn every_supported_stix_indicator_is_found_by_lookup() {
    let Some(corpus) = corpus() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (i, (path, unsupported)) in STIX.iter().enumerate() {
        let bytes = std::fs::read(corpus.join(path)).unwrap();
        let mut sink = VecSink::default();
        stix::parse_stix(&bytes, &mut sink).unwrap();
        assert_eq!(
            sink.unsupported.len(),
            *unsupported,
            "{path}: {:?}",
            sink.unsupported
        );
        for (value, hint, valid_until) in &sink.records {
            if let Ok(ind) = normalize(value, *hint) {
                expected.push((path, ind, *valid_until));
            }
        }
        let r = import_as(dir.path(), &corpus.join(path), &format!("stix{i}"));
        assert_eq!(r.unsupported as usize, *unsupported, "{path}");
    }
    // Poison Ivy's `domain autuo.xicp.net` is the one value that is not an indicator.
    assert!(expected.len() >= 60, "{}", expected.len());
    let ix = index(dir.path());
    let now = belay_model::now_ms();
    for (path, ind, valid_until) in &expected {
        let r = ix.lookup(&ind.value, Some(ind.kind), now).unwrap();
        // The STIX 2.0 export's indicators are valid for an instant (valid_until equals
        // valid_from, in 2020): stored, shown, but expired.
        let live = valid_until.is_none_or(|t| t > now);
        assert_eq!(r.found, live, "{path}: {} ({})", ind.value, ind.kind);
        assert!(!r.matches.is_empty(), "{path}: {} not stored", ind.value);
    }
    let expired = ix
        .lookup("http://45.14.224.68/bins/aeneas.arm5", None, now)
        .unwrap();
    assert!(!expired.found && expired.score == 0.0);
    assert!(expired.matches[0].sources[0].expired);
    // Spot checks across kinds, including an IP inside an APT1 /15.
    for v in [
        "223.167.10.20",
        "hugesoft.org",
        "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c",
        "001dd76872d80801692ff942308c64e6",
        "www.webserver.dynssl.com",
        "http://x4z9arb.cn/4712",
    ] {
        assert!(ix.lookup(v, None, now).unwrap().found, "{v}");
    }
}
