//! Reports over custody stores, for auditors and for the incident report
//! form (REQUIREMENTS.md §4): which hosts and categories are kept, from when
//! to when, where evidence is missing, and whether it verifies.
//!
//! One module per job, so later reports (findings, timeline) reuse the
//! input and the renderers:
//! - [`input`]: opens a store (filesystem or `s3://`) through
//!   `custody-store`, verifies what a report uses with
//!   `custody_evidence::verify` (records, chains, digests, signatures;
//!   payloads are not read by `coverage`), and hands back compact
//!   [`input::SegmentSummary`] / [`input::DigestSummary`] values with the
//!   verification [`custody_evidence::verify::Report`].
//! - [`coverage`]: per host × stream × category: earliest and latest
//!   preserved time, bytes, retain-until against the level's rule, gaps,
//!   the form's bucket, flags ([`coverage::Coverage`], the JSON schema
//!   `custody-report/coverage/v1` in `SCHEMA.md`).
//! - [`render`]: JSON, CSV, and one self-contained HTML file with a
//!   heatmap (inline CSS and SVG, no script, every value escaped).
//! - [`i18n`]: the Fluent message catalogues (`i18n/en`, `i18n/zh-TW`).
//! - [`localtime`]: `--tz`, for the HTML's local times and day columns.
//!
//! ```
//! use custody_report::coverage::{Bucket, bucket_for};
//! use time::macros::datetime;
//! let now = datetime!(2026-12-01 00:00 UTC);
//! assert_eq!(bucket_for(datetime!(2026-11-20 00:00 UTC), now), Bucket::UnderOneMonth);
//! assert_eq!(bucket_for(datetime!(2026-09-01 00:00 UTC), now), Bucket::OneToSixMonths);
//! assert_eq!(bucket_for(datetime!(2026-06-01 00:00 UTC), now), Bucket::SixMonthsOrMore);
//! ```
#![forbid(unsafe_code)]

pub mod bundle_input;
pub mod coverage;
pub mod duration;
pub mod findings;
pub mod i18n;
pub mod incident;
pub mod input;
pub mod localtime;
pub mod parse;
pub mod render;
pub mod timeline;
