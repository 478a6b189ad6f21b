//! JSON: the [`Coverage`] value as is, schema `custody-report/coverage/v1`
//! (report/SCHEMA.md), pretty-printed, UTC RFC 3339 times.

use crate::coverage::Coverage;

/// The report as JSON text, ending in a newline.
pub fn render(c: &Coverage) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(c)?;
    s.push('\n');
    Ok(s)
}
