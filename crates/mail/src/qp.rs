//! Quoted-printable bodies decoded per RFC 2045 §6.7.
//!
//! Soft line breaks (`=` at the end of a line, optionally followed by spaces or tabs) are
//! removed before any escape is read, so `=2=\nE` is `.` as the sender's encoder meant; an
//! `=` not followed by two hex digits is kept literally, at the end of the body too. Hard
//! line breaks are kept as they were written. This module only decodes bytes: charsets are the
//! caller's.

/// Decodes a quoted-printable body. Linear in its input; never fails.
pub fn decode(input: &[u8]) -> Vec<u8> {
    let joined = remove_soft_breaks(input);
    let mut out = Vec::with_capacity(joined.len());
    let mut i = 0;
    while i < joined.len() {
        let b = joined[i];
        if b == b'='
            && let (Some(h), Some(l)) = (
                joined.get(i + 1).and_then(|&c| hex(c)),
                joined.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h << 4) | l);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// The input without its soft line breaks: `=`, then spaces or tabs, then LF or CRLF.
fn remove_soft_breaks(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'=' {
            let mut j = i + 1;
            while matches!(input.get(j), Some(b' ' | b'\t')) {
                j += 1;
            }
            match (input.get(j), input.get(j + 1)) {
                (Some(b'\n'), _) => {
                    i = j + 1;
                    continue;
                }
                (Some(b'\r'), Some(b'\n')) => {
                    i = j + 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn soft_breaks_go_before_escapes_are_read() {
        assert_eq!(decode(b"evil=2=\r\nEexample"), b"evil.example");
        assert_eq!(decode(b"evil=\n.example=  \nX"), b"evil.exampleX");
        assert_eq!(decode(b"a=3D=\r\nb\r\nc"), b"a=b\r\nc");
    }

    #[test]
    fn invalid_and_trailing_escapes_are_kept_literally() {
        assert_eq!(decode(b"100=%"), b"100=%");
        assert_eq!(decode(b"x=4"), b"x=4");
        assert_eq!(decode(b"x="), b"x=");
        assert_eq!(decode(b"=G1=41"), b"=G1A");
        // The first `=` is literal, and the `=4` after it is an escape of its own.
        assert_eq!(decode(b"==41"), b"=A");
    }
}
