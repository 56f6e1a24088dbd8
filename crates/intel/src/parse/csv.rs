//! CSV feeds with a column mapping.
//!
//! The header is the first non-comment row, or, when that row already holds data, the last
//! `#` comment line before it (abuse.ch puts `# id,dateadded,url,...` in its banner). The value
//! column is named by [`CsvOptions::value_column`] (a header name or a 1-based number) or,
//! by default, the first of `url`, `value`, `indicator`, `ioc`, `ip`, `ip_address`, `domain`,
//! `hash`, `sha256_hash`, `md5_hash` present; the type column likewise, by default `type`,
//! `ioc_type`, `indicator_type` or `kind` when present. Without a type column, a value column
//! named after a kind (`url`, `ip`, ...) gives that kind; otherwise the kind is guessed.

use super::Sink;
use crate::indicator::{Kind, normalize};

/// Which columns hold what.
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    /// The value column: a header name (case-insensitive) or a 1-based column number.
    pub value_column: Option<String>,
    /// The type column, read with [`Kind::from_label`].
    pub type_column: Option<String>,
}

const VALUE_NAMES: &[&str] = &[
    "url",
    "value",
    "indicator",
    "ioc",
    "ip",
    "ip_address",
    "domain",
    "hash",
    "sha256_hash",
    "md5_hash",
];
const TYPE_NAMES: &[&str] = &["type", "ioc_type", "indicator_type", "kind"];

/// Why a CSV feed cannot be read at all (a bad row is only skipped).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// A column named in the options is not in the header: the name asked for, and the
    /// header's columns joined with `,`.
    #[error("CSV column `{0}` not found (columns: {1})")]
    NoColumn(String, String),
    /// A column number in the options is 0 or past the header: the number (1-based), and
    /// the header's column count.
    #[error("CSV column number {0} is out of range: the header has {1} columns")]
    ColumnOutOfRange(usize, usize),
}

/// Parses CSV text with the given mapping.
pub fn parse_csv(text: &str, opts: &CsvOptions, sink: &mut dyn Sink) -> Result<(), CsvError> {
    let text = text.trim_start_matches('\u{feff}');
    // The body starts at the first line that is neither blank nor a `#` comment.
    let mut banner_header: Option<&str> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.is_empty() {
            offset += line.len();
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            let c = c.trim();
            if c.contains(',') {
                banner_header = Some(c);
            }
            offset += line.len();
            continue;
        }
        break;
    }
    let body = &text[offset..];
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(::csv::Trim::All)
        .from_reader(body.as_bytes());
    let mut rows = reader.records();
    let first = loop {
        match rows.next() {
            None => return Ok(()),
            Some(Ok(r)) => break r,
            Some(Err(e)) => sink.unsupported(format!("CSV row: {e}")),
        }
    };
    let first_is_data = first.iter().any(|f| normalize(f, None).is_ok());
    let header: Vec<String> = if first_is_data {
        match banner_header {
            Some(h) => split_header(h),
            None => Vec::new(),
        }
    } else {
        first.iter().map(|f| f.to_ascii_lowercase()).collect()
    };
    let value_col = match &opts.value_column {
        Some(c) => column(c, &header)?,
        None => VALUE_NAMES
            .iter()
            .find_map(|n| header.iter().position(|h| h == n))
            .or_else(|| {
                // No known name: the first column whose first data value is an indicator.
                if first_is_data {
                    first.iter().position(|f| normalize(f, None).is_ok())
                } else {
                    None
                }
            })
            .unwrap_or(0),
    };
    let type_col = match &opts.type_column {
        Some(c) => Some(column(c, &header)?),
        None => TYPE_NAMES
            .iter()
            .find_map(|n| header.iter().position(|h| h == n)),
    };
    let column_kind = header.get(value_col).and_then(|h| Kind::from_label(h));
    let handle = |row: &::csv::StringRecord, sink: &mut dyn Sink| {
        let Some(value) = row.get(value_col).filter(|v| !v.is_empty()) else {
            return;
        };
        let hint = match type_col.and_then(|c| row.get(c)) {
            Some(label) => match Kind::from_label(label) {
                Some(k) => Some(k),
                None => {
                    sink.unsupported(format!("CSV value `{value}` of type `{label}`"));
                    return;
                }
            },
            None => column_kind,
        };
        sink.record(value, hint, None);
    };
    if first_is_data {
        handle(&first, sink);
    }
    for row in rows {
        match row {
            Ok(r) => handle(&r, sink),
            Err(e) => sink.unsupported(format!("CSV row: {e}")),
        }
    }
    Ok(())
}

fn split_header(line: &str) -> Vec<String> {
    line.split(',')
        .map(|h| h.trim().trim_matches('"').to_ascii_lowercase())
        .collect()
}

fn column(spec: &str, header: &[String]) -> Result<usize, CsvError> {
    if let Ok(n) = spec.parse::<usize>() {
        if n == 0 || (!header.is_empty() && n > header.len()) {
            return Err(CsvError::ColumnOutOfRange(n, header.len()));
        }
        return Ok(n - 1);
    }
    let want = spec.to_ascii_lowercase();
    header
        .iter()
        .position(|h| *h == want)
        .ok_or_else(|| CsvError::NoColumn(spec.to_owned(), header.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::VecSink;

    #[test]
    fn urlhaus_banner_header_is_used() {
        let text = "####\n# abuse.ch\n#\n# id,dateadded,url,url_status\n\"1\",\"2026-08-18\",\"http://a.example/x\",\"online\"\n";
        let mut s = VecSink::default();
        parse_csv(text, &CsvOptions::default(), &mut s).unwrap();
        assert_eq!(
            s.records,
            vec![("http://a.example/x".to_string(), Some(Kind::Url), None)]
        );
    }

    #[test]
    fn named_and_numbered_columns_and_a_type_column() {
        let text = "indicator,type\n1.2.3.4,ip-dst\nevil.example,hostname\nzzz,mutex\n";
        let mut s = VecSink::default();
        parse_csv(text, &CsvOptions::default(), &mut s).unwrap();
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.records[1].1, Some(Kind::Domain));
        assert_eq!(s.unsupported.len(), 1);

        let mut s = VecSink::default();
        let opts = CsvOptions {
            value_column: Some("1".into()),
            type_column: None,
        };
        parse_csv("a,b\nx.example,1.2.3.4\n", &opts, &mut s).unwrap();
        assert_eq!(s.records[0].0, "x.example");

        let opts = CsvOptions {
            value_column: Some("nope".into()),
            type_column: None,
        };
        let err = parse_csv("a,b\n1,2\n", &opts, &mut VecSink::default()).unwrap_err();
        assert!(err.to_string().contains("`nope` not found"), "{err}");
    }
}
