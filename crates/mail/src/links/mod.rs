//! URLs in a message: found in text bodies and HTML `href`s, refanged, normalized and classified.
//!
//! What counts as a URL of the message (the `urls` list):
//! - every `href` of an `<a>` or `<area>` element of an HTML body;
//! - every URL written in a text body, and in the visible text of an HTML body outside links
//!   (with a scheme, or starting with `www.`).
//!
//! The text of a link is not a URL of the message: when it names a host, it is recorded with the
//! link (`text_host`), and the link is flagged `text_mismatch` when that host's registrable domain
//! differs from the href's (the classic "the text says bank.com, the link goes elsewhere").
//! Only `http`, `https` and `ftp` URLs are kept; `mailto:`, `tel:`, `cid:` and scripts are not.
//!
//! Both scanners are linear in their input and keep no tree: HTML goes through html5ever's
//! WHATWG tokenizer (a loop, no recursion) and a walker that only remembers the link it is
//! in, so hostile nesting (`<div>` opened 100,000 times) costs one step per tag, and a tag
//! with a million attributes costs no stack; plain text is scanned once,
//! each URL from its scheme (or `www.`) to its end. Neither may ever re-scan what it read.
//!
//! The files: `html.rs` walks HTML bodies, `text.rs` scans plain text, `url.rs` parses and
//! classifies one URL; this one holds what they produce and the set that keeps it.

mod html;
mod text;
mod url;

pub use html::HtmlScan;
pub use text::text_urls;
pub use url::{SHORTENERS, classify, is_shortener, registrable};

use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashSet;
use text::collapse_whitespace;

/// Longest URL kept (browsers accept about 2 MB, but nothing useful is that long).
const MAX_URL_LEN: usize = 8192;
/// Most links kept per message, so a hostile message cannot make the output unbounded.
pub const MAX_LINKS: usize = 2000;
/// Link text kept per link.
const MAX_LINK_TEXT: usize = 2048;

/// Where a link was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkSource {
    /// A URL written in a text body (or in an HTML body's visible text).
    Text,
    /// The `href` of an HTML link.
    Html,
}

/// One URL of the message, with what makes it suspicious.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The normalized URL (lower-case scheme and host, punycode host, default port dropped).
    pub url: String,
    /// The host as in the URL (ASCII, punycode for international names).
    pub host: String,
    /// The host in Unicode, when it is an internationalized (punycode) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_unicode: Option<String>,
    /// The registrable domain of the host by the public suffix list (none for IP hosts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registrable_domain: Option<String>,
    /// Where it was found: a text body or an HTML `href`.
    pub source: LinkSource,
    /// The link's visible text (HTML links), whitespace collapsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The host that the link text names, when it looks like a URL or a domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_host: Option<String>,
    /// The link text names a host of another registrable domain than the href's.
    pub text_mismatch: bool,
    /// The host is a known URL shortener.
    pub shortener: bool,
    /// The host is an IP address literal.
    pub ip_literal: bool,
    /// A label of the host is punycode (`xn--`).
    pub punycode: bool,
    /// The URL has a user part (`https://bank.com@evil.example/`), which hides the real host.
    pub userinfo: bool,
}

/// Undoes the usual defanging of indicators: `hxxp`, `[.]`, `(.)`, `[dot]`, `[:]`, `[://]`.
pub fn refang(text: &str) -> Cow<'_, str> {
    const PAIRS: &[(&str, &str)] = &[
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("(dot)", "."),
        ("[://]", "://"),
        ("[:]", ":"),
    ];
    let lower_has_hxxp = contains_ignore_case(text, "hxxp");
    if !lower_has_hxxp && !PAIRS.iter().any(|(from, _)| text.contains(from)) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for (from, to) in PAIRS {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    if lower_has_hxxp {
        out = replace_hxxp(&out);
    }
    Cow::Owned(out)
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `hxxp`/`hXXp` → `http` (the letters around keep their case; URL schemes are case-blind).
fn replace_hxxp(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while i + 4 <= bytes.len() {
        if bytes[i..i + 4].eq_ignore_ascii_case(b"hxxp") {
            out.push_str(&text[last..i]);
            out.push_str("http");
            i += 4;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Collects the links of one message, keeping each (url, text) pair once, in order.
#[derive(Default)]
pub struct LinkSet {
    /// The links found so far (at most [`MAX_LINKS`]).
    pub links: Vec<Link>,
    seen: HashSet<(String, Option<String>)>,
}

impl LinkSet {
    fn push(&mut self, link: Link) {
        if self.links.len() >= MAX_LINKS {
            return;
        }
        if self.seen.insert((link.url.clone(), link.text.clone())) {
            self.links.push(link);
        }
    }

    /// URLs written in text. See [`text_urls`] for what counts as one.
    pub fn add_text(&mut self, text: &str) {
        let text = refang(text);
        for candidate in text_urls(&text) {
            if let Some(link) = classify(&candidate, LinkSource::Text, None) {
                self.push(link);
            }
        }
    }

    fn close_link(&mut self, link: Option<(Option<String>, String)>) {
        let Some((Some(href), text)) = link else {
            return;
        };
        let text = collapse_whitespace(&text);
        let text = (!text.is_empty()).then_some(text);
        if let Some(link) = classify(&refang(href.trim()), LinkSource::Html, text) {
            self.push(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url::host_named_by;
    use super::*;

    #[test]
    fn refang_restores_defanged_urls() {
        assert_eq!(
            refang("hxxps://evil[.]example[.]com/login"),
            "https://evil.example.com/login"
        );
        assert_eq!(refang("HXXP://a(.)b"), "http://a.b");
        assert!(matches!(refang("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn defanged_url_in_text_is_found_and_normalized() {
        let mut set = LinkSet::default();
        set.add_text("report: hxxps://Login.Example[.]COM:443/a/../b?x=1 thanks");
        assert_eq!(set.links.len(), 1);
        let l = &set.links[0];
        assert_eq!(l.url, "https://login.example.com/b?x=1");
        assert_eq!(l.registrable_domain.as_deref(), Some("example.com"));
    }

    #[test]
    fn www_without_scheme_is_a_url_but_a_file_name_is_not() {
        let mut set = LinkSet::default();
        set.add_text("see www.example.org/page or open Statement.pdf");
        assert_eq!(host_named_by("Statement.pdf"), None);
        assert_eq!(host_named_by("Login"), None);
        assert_eq!(host_named_by("https://intranet/"), Some("intranet".into()));
        assert_eq!(host_named_by("www.Bank.com"), Some("www.bank.com".into()));
        let urls: Vec<_> = set.links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(urls, ["http://www.example.org/page"]);
    }

    #[test]
    fn link_text_naming_another_domain_is_a_mismatch() {
        let mut set = LinkSet::default();
        set.add_html(
            r#"<p>Go to <a href="https://evil.example.net/x?a=1&amp;b=2">https://www.bank.com/login</a>
               <a href="https://www.bank.com/help">bank.com</a> <a href="https://t.co/abc">Click here</a></p>"#,
            None,
        );
        assert_eq!(set.links.len(), 3);
        let evil = &set.links[0];
        assert_eq!(evil.url, "https://evil.example.net/x?a=1&b=2");
        assert_eq!(evil.text_host.as_deref(), Some("www.bank.com"));
        assert!(evil.text_mismatch);
        assert!(!set.links[1].text_mismatch, "same registrable domain");
        assert!(set.links[2].shortener);
        assert_eq!(set.links[2].text_host, None);
    }

    #[test]
    fn a_punycode_host_that_does_not_decode_is_kept_as_written() {
        let l = classify(
            "https://XN--B-123MILHAS-XBAZSKD3DQ-UC.a.run.app/?bra=x\n",
            LinkSource::Html,
            Some("https://www.123milhas.com/consultar-destinos".into()),
        )
        .expect("kept");
        assert_eq!(
            l.url,
            "https://xn--b-123milhas-xbazskd3dq-uc.a.run.app/?bra=x"
        );
        assert!(l.punycode && l.text_mismatch);
        assert_eq!(
            l.registrable_domain.as_deref(),
            Some("xn--b-123milhas-xbazskd3dq-uc.a.run.app")
        );
    }

    #[test]
    fn ip_punycode_and_userinfo_urls_are_flagged() {
        let ip = classify("http://45.90.99.64/t/x", LinkSource::Html, None).unwrap();
        assert!(ip.ip_literal && ip.registrable_domain.is_none());
        // "раypal.com" with a Cyrillic "р" and "а".
        let idn = classify("https://\u{440}\u{430}ypal.com/", LinkSource::Text, None).unwrap();
        assert!(idn.punycode && idn.host.starts_with("xn--"), "{}", idn.host);
        assert_eq!(idn.host_unicode.as_deref(), Some("\u{440}\u{430}ypal.com"));
        let puny = classify(&idn.url, LinkSource::Html, None).unwrap();
        assert_eq!(puny.host, idn.host);
        let ui = classify("https://www.bank.com@evil.example/", LinkSource::Html, None).unwrap();
        assert!(ui.userinfo);
        assert_eq!(ui.host, "evil.example");
    }

    #[test]
    fn scripts_mail_and_relative_links_are_not_urls() {
        let mut set = LinkSet::default();
        set.add_html(
            r#"<a href="mailto:a@b.c">x</a><a href="javascript:alert(1)">y</a><a href="/rel">z</a>
               <script>var u = "https://in-script.example/";</script>"#,
            None,
        );
        assert!(set.links.is_empty(), "{:?}", set.links);
    }

    #[test]
    fn shortener_matches_subdomains_only_on_a_label_boundary() {
        assert!(is_shortener("bit.ly"));
        assert!(is_shortener("www.bit.ly"));
        assert!(!is_shortener("notbit.ly"));
    }

    #[test]
    fn text_with_a_multibyte_character_near_its_start_is_scanned_without_panicking() {
        // Found by the email_parse fuzzer: a link candidate "inv\u{FFFD}…" was sliced at byte 4.
        let mut set = LinkSet::default();
        set.add_text("name=\"inv\u{FFFD}\u{FFFD}.pdf\" www.\u{e9}x.example and www.example.com/a");
        let urls: Vec<&str> = set.links.iter().map(|l| l.url.as_str()).collect();
        assert!(urls.contains(&"http://www.example.com/a"), "{urls:?}");
    }
}
