//! CSV (RFC 4180): one row per host and stream, for spreadsheets. Every
//! field is quoted; a text field from the logged host that a spreadsheet
//! would run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) is
//! prefixed with `'` (OWASP "CSV injection"). The JSON keeps the exact text.

use crate::coverage::Coverage;
use custody_evidence::timefmt::format_utc;

const HEADER: [&str; 20] = [
    "schema",
    "host",
    "category",
    "form_group",
    "stream",
    "source_kind",
    "sources",
    "verified",
    "problems",
    "first_preserved",
    "last_preserved",
    "first_seq",
    "last_seq",
    "segments",
    "bytes",
    "retain_until_earliest",
    "retain_short_segments",
    "bucket",
    "gaps",
    "flagged",
];

/// The report as CSV text with a header row.
pub fn render(c: &Coverage) -> String {
    let mut out = String::new();
    row(&mut out, HEADER.iter().map(|s| s.to_string()));
    let t = |v: Option<time::OffsetDateTime>| v.map(format_utc).unwrap_or_default();
    for h in &c.hosts {
        for s in &h.streams {
            let flagged = h
                .categories
                .iter()
                .any(|cat| cat.category == s.category && cat.flagged);
            row(
                &mut out,
                [
                    c.schema.to_string(),
                    h.host.clone(),
                    s.category.as_str().to_string(),
                    s.category.form_group().as_str().to_string(),
                    s.stream.clone(),
                    format!("{:?}", s.source_kind).to_lowercase(),
                    defuse(&s.sources.join(" | ")),
                    s.verified.to_string(),
                    s.problems.join(" "),
                    t(s.first_preserved),
                    t(s.last_preserved),
                    s.first_seq.map(|v| v.to_string()).unwrap_or_default(),
                    s.last_seq.map(|v| v.to_string()).unwrap_or_default(),
                    s.segments.to_string(),
                    s.bytes.to_string(),
                    t(s.retain_until_earliest),
                    s.retain_short_segments.to_string(),
                    s.bucket.map(|b| b.as_str().to_string()).unwrap_or_default(),
                    s.gaps.len().to_string(),
                    flagged.to_string(),
                ]
                .into_iter(),
            );
        }
    }
    out
}

pub(crate) fn defuse(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

pub(crate) fn row(out: &mut String, fields: impl Iterator<Item = String>) {
    let mut first = true;
    for f in fields {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_and_formula_defusing() {
        let mut out = String::new();
        super::row(
            &mut out,
            ["a\"b".to_string(), super::defuse("=cmd()")].into_iter(),
        );
        assert_eq!(out, "\"a\"\"b\",\"'=cmd()\"\r\n");
    }
}
