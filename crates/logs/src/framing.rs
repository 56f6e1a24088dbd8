//! Syslog over TCP framing (RFC 6587): octet counting (`LEN SP MSG`) or one message per line.
//!
//! The mode is chosen per connection from its first byte: a digit means octet counting,
//! anything else newline framing. A malformed length switches the connection to newline framing
//! (counted as a framing error) rather than dropping it. Messages longer than the limit are
//! truncated to it and flagged; the rest of such a frame is skipped without being buffered, so
//! memory per connection stays below about twice the limit whatever the sender does.

/// One message cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message, without its length prefix or line ending, at most the framer's limit.
    pub bytes: Vec<u8>,
    /// The message was longer than the limit and was cut to it.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    OctetCounted,
    Lines,
}

/// What the framer is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// Inside an octet-counted frame with this many bytes still to come, of which the first
    /// `keep` are stored.
    Counted { remaining: usize, keep: usize },
    /// Skipping the rest of an over-long line up to its newline.
    SkipLine,
}

/// An incremental frame decoder for one connection.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    mode: Mode,
    state: State,
    buf: Vec<u8>,
    /// Bytes of the current counted frame kept so far.
    frame: Vec<u8>,
    truncated: bool,
    framing_errors: u64,
}

/// Longest length prefix accepted (`99999999` bytes); longer digit runs are malformed.
const MAX_LEN_DIGITS: usize = 8;

impl Framer {
    /// A framer that cuts messages to `max` bytes (at least 1).
    pub fn new(max: usize) -> Framer {
        Framer {
            max: max.max(1),
            mode: Mode::Unknown,
            state: State::Idle,
            buf: Vec::new(),
            frame: Vec::new(),
            truncated: false,
            framing_errors: 0,
        }
    }

    /// Malformed octet counts seen so far.
    pub fn framing_errors(&self) -> u64 {
        self.framing_errors
    }

    /// Whether the connection uses octet counting (`None` before its first byte).
    pub fn octet_counted(&self) -> Option<bool> {
        match self.mode {
            Mode::Unknown => None,
            Mode::OctetCounted => Some(true),
            Mode::Lines => Some(false),
        }
    }

    /// Bytes held for an unfinished frame.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.frame.len()
    }

    /// Feeds received bytes and appends every complete frame to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            if self.mode == Mode::Unknown {
                // Leading blank lines say nothing about the framing.
                let skip = data
                    .iter()
                    .take_while(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\0'))
                    .count();
                data = &data[skip..];
                let Some(&first) = data.first() else { return };
                self.mode = if first.is_ascii_digit() {
                    Mode::OctetCounted
                } else {
                    Mode::Lines
                };
            }
            let used = match (self.mode, self.state) {
                (_, State::Counted { remaining, keep }) => {
                    self.take_counted(data, remaining, keep, out)
                }
                (_, State::SkipLine) => match data.iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        self.state = State::Idle;
                        p + 1
                    }
                    None => data.len(),
                },
                (Mode::OctetCounted, State::Idle) => self.take_length(data),
                (_, State::Idle) => self.take_line(data, out),
            };
            data = &data[used..];
        }
    }

    /// Whatever is buffered when the peer closes: a last unterminated line is a message; a
    /// partial counted frame is flagged as truncated.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        match self.state {
            State::Counted { .. } => {
                let bytes = std::mem::take(&mut self.frame);
                if !bytes.is_empty() {
                    out.push(Frame {
                        bytes,
                        truncated: true,
                    });
                }
            }
            State::Idle if self.mode == Mode::Lines => {
                let bytes = std::mem::take(&mut self.buf);
                if let Some(f) = line_frame(bytes, false) {
                    out.push(f);
                }
            }
            _ => {}
        }
        self.buf.clear();
        self.state = State::Idle;
    }

    /// Reads `LEN SP`; returns bytes consumed.
    fn take_length(&mut self, data: &[u8]) -> usize {
        // Separators between counted frames (some senders add a newline) are skipped.
        if self.buf.is_empty() {
            let skip = data
                .iter()
                .take_while(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\0'))
                .count();
            if skip > 0 {
                return skip;
            }
        }
        for (i, &b) in data.iter().enumerate() {
            if b.is_ascii_digit() && self.buf.len() < MAX_LEN_DIGITS {
                self.buf.push(b);
                continue;
            }
            let len = (b == b' ' && !self.buf.is_empty())
                .then(|| std::str::from_utf8(&self.buf).ok()?.parse::<usize>().ok())
                .flatten();
            match len {
                Some(len) => {
                    self.buf.clear();
                    self.frame.clear();
                    self.truncated = len > self.max;
                    self.state = State::Counted {
                        remaining: len,
                        keep: len.min(self.max),
                    };
                    return i + 1;
                }
                None => {
                    // Not `digits SP`: treat the rest of the connection as newline framed,
                    // starting with the digits already read.
                    self.framing_errors += 1;
                    self.mode = Mode::Lines;
                    return i;
                }
            }
        }
        data.len()
    }

    fn take_counted(
        &mut self,
        data: &[u8],
        remaining: usize,
        keep: usize,
        out: &mut Vec<Frame>,
    ) -> usize {
        let n = remaining.min(data.len());
        let want = keep.saturating_sub(self.frame.len()).min(n);
        self.frame.extend_from_slice(&data[..want]);
        let remaining = remaining - n;
        if remaining == 0 {
            let bytes = std::mem::take(&mut self.frame);
            out.push(Frame {
                bytes,
                truncated: self.truncated,
            });
            self.state = State::Idle;
        } else {
            self.state = State::Counted { remaining, keep };
        }
        n
    }

    fn take_line(&mut self, data: &[u8], out: &mut Vec<Frame>) -> usize {
        let room = self.max - self.buf.len().min(self.max);
        match data.iter().take(room + 1).position(|&b| b == b'\n') {
            Some(p) => {
                let mut bytes = std::mem::take(&mut self.buf);
                bytes.extend_from_slice(&data[..p]);
                if let Some(f) = line_frame(bytes, false) {
                    out.push(f);
                }
                p + 1
            }
            None if data.len() <= room => {
                self.buf.extend_from_slice(data);
                data.len()
            }
            None => {
                // Over the limit without a newline: emit what fits, skip to the newline.
                let mut bytes = std::mem::take(&mut self.buf);
                bytes.extend_from_slice(&data[..room]);
                out.push(Frame {
                    bytes,
                    truncated: true,
                });
                self.state = State::SkipLine;
                room
            }
        }
    }
}

/// A line without its `\r` (and NUL) ending; `None` for a blank line.
fn line_frame(mut bytes: Vec<u8>, truncated: bool) -> Option<Frame> {
    while matches!(bytes.last(), Some(b'\r' | b'\0')) {
        bytes.pop();
    }
    (!bytes.iter().all(|b| b.is_ascii_whitespace())).then_some(Frame { bytes, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(max: usize, chunks: &[&[u8]]) -> (Vec<Frame>, Framer) {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        (out, f)
    }

    fn texts(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
            .collect()
    }

    #[test]
    fn octet_counted_frames_across_reads_keep_embedded_newlines() {
        let (out, f) = feed(1024, &[b"11 <13>a\nb c d", b"5 hello3", b" abc"]);
        assert_eq!(texts(&out), ["<13>a\nb c d", "hello", "abc"]);
        assert_eq!(f.octet_counted(), Some(true));
    }

    #[test]
    fn newline_framing_strips_cr_and_skips_blank_lines() {
        let (out, mut f) = feed(1024, &[b"<13>one\r\n\n<13>tw", b"o\n<13>three"]);
        assert_eq!(texts(&out), ["<13>one", "<13>two"]);
        let mut rest = Vec::new();
        f.finish(&mut rest);
        assert_eq!(texts(&rest), ["<13>three"]);
        assert_eq!(f.octet_counted(), Some(false));
    }

    #[test]
    fn oversize_messages_are_truncated_flagged_and_the_stream_stays_in_sync() {
        let (out, f) = feed(4, &[b"10 0123456789", b"3 abc"]);
        assert_eq!(texts(&out), ["0123", "abc"]);
        assert!(out[0].truncated && !out[1].truncated);
        assert!(f.pending() <= 8);
        let (out, _) = feed(4, &[b"<1>abcdefgh", b"ijk\n<1>x\n"]);
        assert_eq!(texts(&out), ["<1>a", "<1>x"]);
        assert!(out[0].truncated);
    }

    proptest::proptest! {
        #[test]
        fn frames_do_not_depend_on_how_the_stream_is_split(
            msgs in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..40), 1..8),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            counted in proptest::bool::ANY,
        ) {
            // Newline framing cannot carry newlines, and a line starting with a digit would
            // select octet counting.
            let msgs: Vec<Vec<u8>> = if counted {
                msgs
            } else {
                msgs.into_iter()
                    .map(|m| {
                        let mut m: Vec<u8> = m.into_iter().map(|b| if b == b'\n' || b == b'\r' || b == 0 { b'x' } else { b }).collect();
                        m.insert(0, b'<');
                        m
                    })
                    .collect()
            };
            let mut stream = Vec::new();
            for m in &msgs {
                if counted {
                    stream.extend_from_slice(format!("{} ", m.len()).as_bytes());
                    stream.extend_from_slice(m);
                } else {
                    stream.extend_from_slice(m);
                    stream.push(b'\n');
                }
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort();
            let mut f = Framer::new(1024);
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                f.push(&stream[at..c], &mut out);
                at = c;
            }
            f.finish(&mut out);
            let got: Vec<Vec<u8>> = out.into_iter().map(|f| f.bytes).collect();
            proptest::prop_assert_eq!(got, msgs);
        }
    }

    #[test]
    fn a_bad_length_falls_back_to_lines() {
        let (out, f) = feed(1024, &[b"2014-02-21T10:22:55 host prog: hi\nnext\n"]);
        assert_eq!(texts(&out), ["2014-02-21T10:22:55 host prog: hi", "next"]);
        assert_eq!(f.framing_errors(), 1);
    }
}
