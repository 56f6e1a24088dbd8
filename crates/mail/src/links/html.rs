//! Links in an HTML body: html5ever's tokenizer and a walker that keeps no element stack.

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use std::cell::RefCell;
use std::time::Instant;

use super::text::floor_char_boundary;
use super::{LinkSet, MAX_LINK_TEXT, MAX_LINKS};

/// HTML beyond this many bytes is not searched for links (html5ever stays linear, but the
/// output must stay small).
const MAX_HTML_BYTES: usize = 8 << 20;

impl LinkSet {
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
