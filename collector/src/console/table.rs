//! The console's tables without script: sorted on the server by a
//! `?sort=COLUMN&order=asc|desc` link in each header, and exported as CSV
//! (RFC 4180, every field quoted; a cell a spreadsheet would run as a
//! formula, starting with `=`, `+`, `-`, `@`, tab or CR, gets a leading `'`:
//! OWASP "CSV injection").

use serde_json::Value;

/// Sorts `rows` by `column` (a member of each row), text order, missing
/// values last; `descending` reverses it.
pub fn sort(rows: &mut [Value], column: &str, descending: bool) {
    rows.sort_by(|a, b| {
        let key = |v: &Value| match &v[column] {
            Value::Null => (1, String::new()),
            Value::String(s) => (0, s.clone()),
            other => (0, other.to_string()),
        };
        let (ka, kb) = (key(a), key(b));
        // Missing values stay last in both orders.
        match (ka.0, kb.0) {
            (0, 1) => std::cmp::Ordering::Less,
            (1, 0) => std::cmp::Ordering::Greater,
            _ if descending => kb.1.cmp(&ka.1),
            _ => ka.1.cmp(&kb.1),
        }
    });
}

fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let defused = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

/// `columns` of `rows` as CSV with a header row.
pub fn csv(rows: &[Value], columns: &[&str]) -> String {
    let mut out = columns
        .iter()
        .map(|c| cell(&Value::String(c.to_string())))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    for r in rows {
        out.push_str(
            &columns
                .iter()
                .map(|c| cell(&r[*c]))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorting_keeps_missing_last_and_csv_defuses_formulas() {
        let mut rows = vec![
            json!({"host": "b", "last_seen": null}),
            json!({"host": "a", "last_seen": "2026-12-03T00:00:00Z"}),
            json!({"host": "c", "last_seen": "2026-12-04T00:00:00Z"}),
        ];
        sort(&mut rows, "last_seen", true);
        let hosts: Vec<&str> = rows.iter().map(|r| r["host"].as_str().unwrap()).collect();
        assert_eq!(hosts, ["c", "a", "b"]);
        sort(&mut rows, "host", false);
        assert_eq!(rows[0]["host"], "a");
        let text = csv(
            &[json!({"id": "INC-1", "reason": "=HYPERLINK(\"x\")", "hosts": ["h1", "h2"]})],
            &["id", "reason", "hosts"],
        );
        assert_eq!(
            text,
            "\"id\",\"reason\",\"hosts\"\r\n\"INC-1\",\"'=HYPERLINK(\"\"x\"\")\",\"h1, h2\"\r\n"
        );
    }
}
