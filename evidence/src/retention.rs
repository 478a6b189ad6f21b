//! Retention by responsibility level (REQUIREMENTS.md §1: Taipei §24,
//! Kaohsiung §壹拾.一): levels A, B and C must keep the most recent six
//! months; D and E are not bound by the table and default to the same.
//!
//! CONTRACT (implementer fills in; signatures fixed):
//! - `Level` enum A..E, FromStr/Display ("A".."E", case-insensitive parse), serde as "A".
//! - `RetentionPolicy::new(level, months: Option<u32>) -> Result<Self, RetentionError>`:
//!   default 6; A/B/C with months < 6 → `RetentionError::BelowMinimum` whose message
//!   cites the rule ("REQUIREMENTS.md §1 / Taipei §24, Kaohsiung §壹拾.一: levels A, B
//!   and C keep at least six months"); months == 0 refused for all levels.
//! - `retain_until(&self, written: OffsetDateTime) -> OffsetDateTime`: calendar
//!   months added (clamping the day, e.g. Aug 31 + 6 months = Feb 28/29), same time of day, UTC.
//! - `level()`, `months()`.
