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

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use serde::Serialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Instant;

/// Longest URL kept (browsers accept about 2 MB, but nothing useful is that long).
const MAX_URL_LEN: usize = 8192;
/// Most links kept per message, so a hostile message cannot make the output unbounded.
pub const MAX_LINKS: usize = 2000;
/// HTML beyond this many bytes is not searched for links (html5ever stays linear, but the
/// output must stay small).
const MAX_HTML_BYTES: usize = 8 << 20;
/// Link text kept per link.
const MAX_LINK_TEXT: usize = 2048;

/// URL shortener hosts (a link through one hides where it goes).
pub const SHORTENERS: &[&str] = &[
    "bit.ly",
    "bitly.com",
    "bl.ink",
    "buff.ly",
    "cutt.ly",
    "goo.gl",
    "is.gd",
    "lnkd.in",
    "ow.ly",
    "qrco.de",
    "rb.gy",
    "rebrand.ly",
    "s.id",
    "shorturl.at",
    "t.co",
    "t.ly",
    "tiny.cc",
    "tinyurl.com",
    "tr.im",
    "urlz.fr",
    "v.gd",
    "x.co",
];

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

    /// Hrefs of links (with their text) and URLs in the visible text outside links.
    ///
    /// Stops early, saying why in [`HtmlScan::stopped`], when `deadline` passes.
    pub fn add_html(&mut self, html: &str, deadline: Option<Instant>) -> HtmlScan {
        let mut stopped = None;
        let html = if html.len() > MAX_HTML_BYTES {
            stopped = Some(format!(
                "HTML body of {} bytes: only the first {MAX_HTML_BYTES} were searched for links",
                html.len()
            ));
            &html[..floor_char_boundary(html, MAX_HTML_BYTES)]
        } else {
            html
        };
        let tokenizer = Tokenizer::new(Walker::default(), TokenizerOpts::default());
        let input = BufferQueue::default();
        // Fed in chunks, so the clock is looked at while a long body is read.
        let mut rest = html;
        while !rest.is_empty() {
            let cut = floor_char_boundary(rest, HTML_CHUNK.min(rest.len()));
            let cut = if cut == 0 { rest.len() } else { cut };
            let (chunk, tail) = rest.split_at(cut);
            input.push_back(StrTendril::from_slice(chunk));
            let _ = tokenizer.feed(&input);
            rest = tail;
            if !rest.is_empty() && deadline.is_some_and(|d| Instant::now() > d) {
                stopped = Some(format!(
                    "the time budget ran out after {} of {} HTML bytes",
                    html.len() - rest.len(),
                    html.len()
                ));
                break;
            }
        }
        tokenizer.end();
        let walker = tokenizer.sink.state.into_inner();
        for (href, text) in walker.links {
            self.close_link(Some((Some(href), text)));
        }
        self.add_text(&walker.outside);
        HtmlScan {
            steps: walker.steps,
            stopped,
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

/// HTML is fed to the tokenizer this many bytes at a time.
const HTML_CHUNK: usize = 64 << 10;

/// Receives html5ever's tokens (its tokenizer, not its tree builder: the tree builder re-scans
/// its open elements on hostile nesting). Keeps no element stack: only the link being read
/// (HTML has no nested links: an `<a>` closes the one before) and whether it is inside a
/// script or style, whose contents it has the tokenizer read as raw text, as a browser does.
#[derive(Default)]
struct Walker {
    state: RefCell<WalkState>,
}

#[derive(Default)]
struct WalkState {
    steps: u64,
    /// Hrefs with their link text, in order.
    links: Vec<(String, String)>,
    /// The link being read: its href (none for an `<a>` without one) and text so far.
    open: Option<(Option<String>, String)>,
    /// Inside a script, style or other raw-text element whose text is not shown.
    hidden: bool,
    outside: String,
}

impl WalkState {
    fn close(&mut self) {
        if let Some((Some(href), text)) = self.open.take()
            && self.links.len() < MAX_LINKS
        {
            self.links.push((href, text));
        }
    }
}

impl TokenSink for Walker {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut st = self.state.borrow_mut();
        st.steps += 1;
        match token {
            Token::TagToken(tag) if tag.kind == TagKind::StartTag => {
                let href = || {
                    tag.attrs
                        .iter()
                        .find(|a| &*a.name.local == "href")
                        .map(|a| a.value.to_string())
                };
                match &*tag.name {
                    "script" if !tag.self_closing => {
                        st.hidden = true;
                        return TokenSinkResult::RawData(RawKind::ScriptData);
                    }
                    "style" | "xmp" | "iframe" | "noembed" | "noframes" if !tag.self_closing => {
                        st.hidden = true;
                        return TokenSinkResult::RawData(RawKind::Rawtext);
                    }
                    "title" | "textarea" if !tag.self_closing => {
                        return TokenSinkResult::RawData(RawKind::Rcdata);
                    }
                    "plaintext" => return TokenSinkResult::Plaintext,
                    "a" => {
                        st.close();
                        st.open = (!tag.self_closing).then(|| (href(), String::new()));
                    }
                    "area" => {
                        if let Some(h) = href() {
                            st.close();
                            st.open = Some((Some(h), String::new()));
                            st.close();
                        }
                    }
                    _ => {}
                }
            }
            Token::TagToken(tag) => match &*tag.name {
                "script" | "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                    st.hidden = false;
                }
                "a" => st.close(),
                _ => {}
            },
            Token::CharacterTokens(t) if !st.hidden => {
                if let Some((_, text)) = &mut st.open {
                    if text.len() < MAX_LINK_TEXT {
                        text.push_str(&t);
                    }
                } else if st.outside.len() < MAX_HTML_BYTES {
                    st.outside.push_str(&t);
                    st.outside.push(' ');
                }
            }
            Token::EOFToken => st.close(),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// What one HTML body cost, and whether it was read to its end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HtmlScan {
    /// Tokens the walker handled: one per tag, text run, comment or doctype, so a number
    /// linear in the input whatever its nesting.
    pub steps: u64,
    /// Why the body was not read to its end (size or time budget), when it was not.
    pub stopped: Option<String>,
}

/// The URLs written in plain text, in order: each `http://`, `https://` or `ftp://` URL, and
/// each `www.` name (given `http://`), from its start to the first whitespace, `<`, `>`, `"`
/// or backtick, less trailing punctuation and unbalanced closing brackets.
///
/// Whatever the URL's host: an IPv6 literal (`[2001:db8::1]`), an IPv4-mapped one, an
/// integer IPv4 (`http://3232235777/`), an internationalized name, or a user part hiding the
/// real host (`http://user:pw@bank.example@evil.example/`). A URL whose host is cut by a
/// space (`http://evil .example/`, `http://bank.example .evil.example/`) is not a URL: taking
/// the part before the space would report a host the sender never meant.
///
/// One pass: each byte is looked at a bounded number of times.
pub fn text_urls(text: &str) -> Vec<Cow<'_, str>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let at_word_start = i == 0 || !is_url_word_byte(bytes[i - 1]);
        let start = if !at_word_start || !matches!(b | 0x20, b'h' | b'f' | b'w') {
            None
        } else if let Some(n) = ["https://", "http://", "ftp://"]
            .iter()
            .find(|p| starts_with_ignore_case(&bytes[i..], p.as_bytes()))
            .map(|p| p.len())
        {
            Some((n, true))
        } else if starts_with_ignore_case(&bytes[i..], b"www.") {
            Some((0, false))
        } else {
            None
        };
        let Some((scheme_len, explicit)) = start else {
            i += 1;
            continue;
        };
        let end = url_end(bytes, i);
        let url = trim_url_end(&text[i..end]);
        let authority_start = i + scheme_len;
        let in_authority = !text[authority_start..end].contains(['/', '?', '#']);
        i = end.max(i + 1);
        if url.len() <= scheme_len + usize::from(!explicit) * 4 {
            continue;
        }
        let cut_by_space = text[end..].starts_with(char::is_whitespace);
        if in_authority && cut_by_space && host_continues_after_space(text, end, url) {
            continue;
        }
        out.push(if explicit {
            Cow::Borrowed(url)
        } else {
            Cow::Owned(format!("http://{url}"))
        });
    }
    out
}

/// Bytes that join a URL start to the word before it (`xhttp://` or `a.www.` start no URL).
fn is_url_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'@')
}

fn starts_with_ignore_case(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Where a URL starting at `start` ends: the first whitespace (Unicode too), control
/// character, `<`, `>`, `"` or backtick.
fn url_end(bytes: &[u8], start: usize) -> usize {
    let text = std::str::from_utf8(&bytes[start..]).unwrap_or("");
    text.char_indices()
        .find(|&(_, c)| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`'))
        .map_or(bytes.len(), |(n, _)| start + n)
}

/// Drops trailing sentence punctuation and closing brackets that open nowhere in the URL.
fn trim_url_end(mut url: &str) -> &str {
    loop {
        let Some(last) = url.chars().last() else {
            return url;
        };
        let trim = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' => url.matches('(').count() < url.matches(')').count(),
            ']' => url.matches('[').count() < url.matches(']').count(),
            '}' => url.matches('{').count() < url.matches('}').count(),
            _ => false,
        };
        if !trim {
            return url;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
}

/// Whether the text after the space that ended a URL's host goes on with that host: the
/// next word starts with `.`, or the host is one label and the next word is a dotted name.
fn host_continues_after_space(text: &str, end: usize, url: &str) -> bool {
    let next = text[end..].trim_start();
    let word_end = next
        .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#'))
        .unwrap_or(next.len());
    let word = &next[..word_end];
    if word.starts_with('.') {
        return true;
    }
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .rsplit('@')
        .next()
        .unwrap_or("");
    let one_label = !host.contains(['.', '[', ':']) && !host.bytes().all(|b| b.is_ascii_digit());
    (one_label && word.contains('.')) || host.ends_with('.')
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn has_scheme(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    })
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses and classifies one URL; `None` for what is not an http(s)/ftp URL with a host.
pub fn classify(raw: &str, source: LinkSource, text: Option<String>) -> Option<Link> {
    if raw.len() > MAX_URL_LEN {
        return None;
    }
    let UrlParts {
        text: url,
        scheme,
        userinfo,
        host,
        ip: ip_literal,
    } = parse_url(raw)?;
    if !matches!(scheme.as_str(), "http" | "https" | "ftp") {
        return None;
    }
    if host.is_empty() {
        return None;
    }
    let punycode = !ip_literal && host.split('.').any(|l| l.starts_with("xn--"));
    let host_unicode = punycode
        .then(|| idna::domain_to_unicode(&host).0)
        .filter(|u| *u != host);
    let registrable_domain = registrable(&host, ip_literal);
    let shortener = !ip_literal && is_shortener(&host);
    let text_host = text.as_deref().and_then(host_named_by);
    let text_mismatch = text_host.as_deref().is_some_and(|th| {
        let theirs = registrable(th, th.parse::<IpAddr>().is_ok());
        let ours = registrable_domain.as_deref().unwrap_or(&host);
        theirs.as_deref().unwrap_or(th) != ours
    });
    Some(Link {
        url,
        host,
        host_unicode,
        registrable_domain,
        source,
        text,
        text_host,
        text_mismatch,
        shortener,
        ip_literal,
        punycode,
        userinfo,
    })
}

struct UrlParts {
    text: String,
    scheme: String,
    userinfo: bool,
    host: String,
    ip: bool,
}

/// A parsed URL with its host (ASCII form) and whether that is an IP address.
///
/// A host with a punycode label that does not decode (`xn--b-123milhas-xbazskd3dq-uc.a.run.app`)
/// fails WHATWG parsing, yet such links are sent, and are exactly the suspicious ones: the
/// URL is then normalized around a placeholder host and the original host, lower-cased, is
/// put back.
fn parse_url(raw: &str) -> Option<UrlParts> {
    match url::Url::parse(raw) {
        Ok(url) => {
            let (host, ip) = match url.host()? {
                url::Host::Domain(d) => (d.trim_end_matches('.').to_owned(), false),
                url::Host::Ipv4(ip) => (ip.to_string(), true),
                // An IPv4-mapped address is the IPv4 one (as the intel store keeps it).
                url::Host::Ipv6(ip) => match ip.to_ipv4_mapped() {
                    Some(v4) => (v4.to_string(), true),
                    None => (ip.to_string(), true),
                },
            };
            Some(UrlParts {
                text: url.to_string(),
                scheme: url.scheme().to_owned(),
                userinfo: !url.username().is_empty() || url.password().is_some(),
                host,
                ip,
            })
        }
        Err(url::ParseError::IdnaError) => {
            let (scheme, rest) = raw.split_once("://")?;
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
                _ => (hostport, None),
            };
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let ldh = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ldh {
                return None;
            }
            const PLACEHOLDER: &str = "belay-placeholder.invalid";
            let mut rebuilt = format!("{scheme}://");
            if let Some(u) = userinfo {
                rebuilt.push_str(u);
                rebuilt.push('@');
            }
            rebuilt.push_str(PLACEHOLDER);
            if let Some(p) = port {
                rebuilt.push(':');
                rebuilt.push_str(p);
            }
            rebuilt.push_str(&rest[end..]);
            let url = url::Url::parse(&rebuilt).ok()?;
            Some(UrlParts {
                // Put the real host back without IDNA processing: it is already ASCII.
                text: url.as_str().replacen(PLACEHOLDER, &host, 1),
                scheme: url.scheme().to_owned(),
                userinfo: !url.username().is_empty() || url.password().is_some(),
                host,
                ip: false,
            })
        }
        Err(_) => None,
    }
}

/// The registrable domain (eTLD+1) of a host name, lower-case.
pub fn registrable(host: &str, ip: bool) -> Option<String> {
    if ip {
        return None;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&host).map(str::to_owned)
}

/// Whether a host (or a parent domain of it) is a known shortener.
pub fn is_shortener(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    SHORTENERS.iter().any(|s| {
        host.eq_ignore_ascii_case(s)
            || (host.len() > s.len()
                && host.as_bytes()[host.len() - s.len() - 1] == b'.'
                && host[host.len() - s.len()..].eq_ignore_ascii_case(s))
    })
}

/// The host a link text names: a URL (`https://bank.example/login`) or a bare domain
/// (`www.bank.example`, `bank.example`) with a known public suffix. Text that is a sentence
/// ("Click here", "Sign in to bank.example") names no host: only the whole text counts.
fn host_named_by(text: &str) -> Option<String> {
    let t = refang(text.trim());
    let t = t.trim_matches(|c: char| c == '<' || c == '>' || c == '"' || c == '\'');
    if t.is_empty() || t.len() > MAX_URL_LEN || t.contains(char::is_whitespace) {
        return None;
    }
    let explicit = has_scheme(t);
    let with_scheme: Cow<str> = if explicit {
        Cow::Borrowed(t)
    } else {
        Cow::Owned(format!("http://{t}"))
    };
    let parts = parse_url(&with_scheme)?;
    // A text with a scheme is a URL whatever its host; without one, a bare word ("Login") is
    // not a host, and a dotted name needs a real public suffix to count ("invoice.pdf" no).
    if parts.ip || explicit {
        return Some(parts.host);
    }
    if !parts.host.contains('.') {
        return None;
    }
    let suffix_known = psl::suffix(parts.host.as_bytes()).is_some_and(|s| s.is_known());
    suffix_known.then_some(parts.host)
}

#[cfg(test)]
mod tests {
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
