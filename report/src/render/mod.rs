//! The report's output forms: [`json`] (the versioned schema), [`csv`] (one
//! row per host and stream), and [`html`] (one self-contained file), with
//! [`heatmap`] computing the hosts × days grid the HTML draws.

pub mod csv;
pub mod findings_csv;
pub mod findings_html;
pub mod heatmap;
pub mod html;
pub mod json;
