//! URLs written in plain text, found in one pass.

use std::borrow::Cow;

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

pub(super) fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(super) fn has_scheme(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    })
}

pub(super) fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
