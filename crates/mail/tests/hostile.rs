//! Hostile messages: parsers stay linear, budgets keep a message instead of
//! stalling, URLs are found whatever their host's form, quoted-printable follows RFC 2045.

use belay_mail::links::LinkSet;
use belay_mail::{Budget, ParseOptions, parse, parse_with, to_event};
use std::time::Duration;

fn message(content_type: &str, encoding: &str, body: &str) -> Vec<u8> {
    format!(
        "From: a@sender.example\r\nTo: b@corp.example\r\nSubject: hostile\r\n\
         Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}"
    )
    .into_bytes()
}

fn nested_divs(n: usize) -> String {
    format!(
        "<html><body>{}<a href=\"https://evil.example/login\">Sign in</a></body></html>",
        "<div>".repeat(n)
    )
}

#[test]
fn unclosed_nesting_costs_one_step_per_tag() {
    // html5ever's tree builder re-scanned its open elements for each of these tags
    // (80,000 took 11 s); the walker must do a bounded amount of work per tag.
    let mut steps = Vec::new();
    for n in [20_000, 80_000] {
        let mut set = LinkSet::default();
        let scan = set.add_html(&nested_divs(n), None);
        assert_eq!(scan.stopped, None);
        assert!(
            scan.steps <= n as u64 + 16,
            "{n} tags took {} steps",
            scan.steps
        );
        let urls: Vec<&str> = set.links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(urls, ["https://evil.example/login"]);
        steps.push(scan.steps);
    }
    // 4x the input, about 4x the work.
    let ratio = steps[1] as f64 / steps[0] as f64;
    assert!((3.9..=4.1).contains(&ratio), "{steps:?}");
}

#[test]
fn a_tag_with_very_many_attributes_does_not_exhaust_the_stack() {
    // A tokenizer that recursed once per attribute aborted the process here (a stack
    // overflow cannot be caught), in a test thread's 2 MiB stack as in release builds.
    let html = format!(
        "<a{} href=\"https://evil.example/\">x</a>",
        " x=\"1\"".repeat(200_000)
    );
    let mut set = LinkSet::default();
    set.add_html(&html, None);
    assert_eq!(set.links.len(), 1);
}

#[test]
fn deeply_nested_reported_message_is_parsed_with_its_link() {
    let raw = message("text/html; charset=utf-8", "8bit", &nested_divs(80_000));
    let parsed = parse(&raw).expect("parsed");
    assert_eq!(parsed.urls, ["https://evil.example/login"]);
    assert_eq!(parsed.parse_incomplete, None);
}

#[test]
fn a_spent_budget_keeps_the_message_and_marks_it_incomplete() {
    let raw = message("text/plain", "8bit", "go to https://evil.example/a\r\n");
    let options = ParseOptions {
        budget: Budget {
            time: Duration::ZERO,
            ..Budget::default()
        },
        ..Default::default()
    };
    std::thread::sleep(Duration::from_millis(2));
    let parsed = parse_with(&raw, &options).expect("kept");
    assert_eq!(parsed.subject.as_deref(), Some("hostile"));
    let why = parsed.parse_incomplete.clone().expect("marked incomplete");
    assert!(why.contains("time budget"), "{why}");
    let event = to_event(&raw, &parsed, "test");
    assert_eq!(event.data["parse_incomplete"], why.as_str());

    let small = ParseOptions {
        budget: Budget {
            body_bytes: 8,
            ..Budget::default()
        },
        ..Default::default()
    };
    let parsed = parse_with(&raw, &small).expect("kept");
    let why = parsed.parse_incomplete.expect("marked incomplete");
    assert!(why.contains("8 bytes"), "{why}");
    // A message within its budget says nothing.
    let event = to_event(&raw, &parse(&raw).unwrap(), "test");
    assert!(event.data["parse_incomplete"].is_null());
}

/// The one URL, IP list and domain list found in a text/plain body.
fn plain(body: &str) -> (Vec<String>, Vec<String>, Vec<String>, Vec<belay_mail::Link>) {
    let parsed = parse(&message("text/plain; charset=utf-8", "8bit", body)).expect("parsed");
    (parsed.urls, parsed.ips, parsed.domains, parsed.links)
}

#[test]
fn plain_text_urls_with_ip_literal_hosts_are_found() {
    let (urls, ips, _, links) = plain("click http://[2001:db8::1]/login now\r\n");
    assert_eq!(urls, ["http://[2001:db8::1]/login"]);
    assert_eq!(ips, ["2001:db8::1"]);
    assert!(links[0].ip_literal);

    // IPv4-mapped: the address is the IPv4 one, as the intel store keeps it.
    let (urls, ips, _, _) = plain("click http://[::ffff:192.0.2.7]/x\r\n");
    assert_eq!(urls, ["http://[::ffff:c000:207]/x"]);
    assert_eq!(ips, ["192.0.2.7"]);

    // An integer IPv4 host is an IP literal (a suspicious one), as in an href.
    let (urls, ips, _, links) = plain("see http://3232235777/pay.\r\n");
    assert_eq!(urls, ["http://192.168.1.1/pay"]);
    assert_eq!(ips, ["192.168.1.1"]);
    assert!(links[0].ip_literal);
}

#[test]
fn plain_text_urls_with_international_and_userinfo_hosts_are_found() {
    // "раypal.com" with a Cyrillic "р" and "а": normalized to punycode as the intel store does.
    let (urls, _, domains, links) = plain("login at https://\u{440}\u{430}ypal.com/verify\r\n");
    assert_eq!(urls, ["https://xn--ypal-43d9g.com/verify"]);
    assert_eq!(domains, ["xn--ypal-43d9g.com"]);
    assert!(links[0].punycode);

    let (urls, _, domains, links) = plain("http://user:pw@bank.example@evil.example/ here\r\n");
    assert_eq!(urls, ["http://user:pw%40bank.example@evil.example/"]);
    assert_eq!(domains, ["evil.example"]);
    assert!(links[0].userinfo);
}

#[test]
fn a_url_cut_by_a_space_in_its_host_gives_no_bogus_host() {
    for body in [
        "http://evil .example/login\r\n",
        "http://bank.example .evil.example/login\r\n",
        "http://evil example.com/login\r\n",
    ] {
        let (urls, _, domains, _) = plain(body);
        assert!(
            urls.is_empty() && domains.is_empty(),
            "{body}: {urls:?} {domains:?}"
        );
    }
    // A URL ending where a sentence goes on is still a URL.
    let (urls, _, _, _) = plain("see http://bank.example and call us\r\n");
    assert_eq!(urls, ["http://bank.example/"]);
}

#[test]
fn quoted_printable_soft_breaks_are_removed_before_escapes_are_read() {
    // An encoder that split `=2E` (".") over a soft line break: the host is evil.example.
    let raw = message(
        "text/plain; charset=utf-8",
        "quoted-printable",
        "Open hxxps://login=2=\r\nEevil=2Eexample/reset now\r\n",
    );
    let parsed = parse(&raw).expect("parsed");
    assert_eq!(parsed.urls, ["https://login.evil.example/reset"]);

    // A trailing escape that is not one is kept, not dropped.
    let raw = message(
        "text/plain; charset=utf-8",
        "quoted-printable",
        "https://evil.example/a?b=",
    );
    let parsed = parse(&raw).expect("parsed");
    assert_eq!(parsed.urls, ["https://evil.example/a?b="]);
    assert_eq!(parsed.text.as_deref(), Some("https://evil.example/a?b="));
}
