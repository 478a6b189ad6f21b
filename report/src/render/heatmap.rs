//! The heatmap: per category, hosts × local days, each cell one state, so a
//! reader sees at a glance where evidence is missing. Horizontal runs of
//! one state become one rectangle, which keeps six months × hundreds of
//! hosts to a few thousand SVG elements.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::coverage::{Coverage, ReportCategory};
use crate::input::Input;
use crate::localtime::{day_label, Zone};

/// A cell's state, worst wins: gap > unverified > kept > idle > none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// Nothing: before the host's first evidence, or no agent running.
    None,
    /// The agent ran (digests) but wrote no segment of this category.
    Idle,
    /// Segments of this category were preserved that day.
    Kept,
    /// Segments whose stream did not verify.
    Unverified,
    /// A gap overlaps the day (chain break, missing digest, quiet, agent down).
    Gap,
}

/// One run of equal cells in a row.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub start: usize,
    pub len: usize,
    pub cell: Cell,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub host: String,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    pub category: ReportCategory,
    pub rows: Vec<Row>,
}

/// The grids for every category present, sharing one day axis.
#[derive(Debug, Clone, Serialize)]
pub struct Heatmap {
    pub first_day: String,
    pub last_day: String,
    pub days: usize,
    pub grids: Vec<Grid>,
}

/// Builds the heatmap from the records (for their days) and the computed
/// coverage (for gaps and verification).
pub fn build(input: &Input, cov: &Coverage, zone: &Zone) -> Heatmap {
    let last = zone.day_number(cov.now);
    let first = input
        .segments
        .iter()
        .map(|s| s.first_read)
        .chain(input.digests.iter().map(|d| d.window_start))
        .min()
        .map_or(last, |t| zone.day_number(t))
        .min(last);
    let days = usize::try_from(last - first + 1).unwrap_or(1);
    let idx = |t: time::OffsetDateTime| -> Option<usize> {
        let d = zone.day_number(t) - first;
        usize::try_from(d).ok().filter(|d| *d < days)
    };
    let mut cells: BTreeMap<(ReportCategory, &str), Vec<Cell>> = BTreeMap::new();
    let mut verified: BTreeMap<(&str, &str), (ReportCategory, bool)> = BTreeMap::new();
    for h in &cov.hosts {
        for s in &h.streams {
            verified.insert((&h.host, &s.stream), (s.category, s.verified));
        }
    }
    let mark = |row: &mut Vec<Cell>, a: Option<usize>, b: Option<usize>, c: Cell| {
        if let (Some(a), Some(b)) = (a, b) {
            for cell in row.iter_mut().take(b + 1).skip(a) {
                *cell = (*cell).max(c);
            }
        }
    };
    // The agent ran: idle for every category the host has.
    for h in &cov.hosts {
        for c in &h.categories {
            cells.insert((c.category, &h.host), vec![Cell::None; days]);
        }
    }
    let mut alive: BTreeMap<&str, Vec<Cell>> = BTreeMap::new();
    for d in &input.digests {
        let row = alive
            .entry(d.host.as_str())
            .or_insert_with(|| vec![Cell::None; days]);
        mark(row, idx(d.window_start), idx(d.window_end), Cell::Idle);
    }
    for ((_, host), row) in cells.iter_mut() {
        if let Some(a) = alive.get(host) {
            for (c, x) in row.iter_mut().zip(a) {
                *c = (*c).max(*x);
            }
        }
    }
    for s in &input.segments {
        let Some(&(cat, ok)) = verified.get(&(s.host.as_str(), s.stream.as_str())) else {
            continue;
        };
        if let Some(row) = cells.get_mut(&(cat, s.host.as_str())) {
            let c = if ok { Cell::Kept } else { Cell::Unverified };
            mark(row, idx(s.first_read), idx(s.last_read), c);
        }
    }
    for h in &cov.hosts {
        for s in &h.streams {
            if let Some(row) = cells.get_mut(&(s.category, h.host.as_str())) {
                for g in &s.gaps {
                    let a = g.from.or(g.to).and_then(idx);
                    let b = g.to.or(g.from).and_then(idx);
                    mark(row, a, b, Cell::Gap);
                }
            }
        }
        let mut host_row = vec![Cell::None; days];
        for g in &h.gaps {
            mark(
                &mut host_row,
                g.from.and_then(idx),
                g.to.and_then(idx),
                Cell::Gap,
            );
        }
        for ((_, host), row) in cells.iter_mut() {
            if *host == h.host {
                for (c, x) in row.iter_mut().zip(&host_row) {
                    *c = (*c).max(*x);
                }
            }
        }
    }
    let mut grids: Vec<Grid> = Vec::new();
    for cat in ReportCategory::ALL {
        let rows: Vec<Row> = cells
            .iter()
            .filter(|((c, _), _)| *c == cat)
            .map(|((_, host), row)| Row {
                host: host.to_string(),
                runs: runs(row),
            })
            .collect();
        if !rows.is_empty() {
            grids.push(Grid {
                category: cat,
                rows,
            });
        }
    }
    Heatmap {
        first_day: day_label(first),
        last_day: day_label(last),
        days,
        grids,
    }
}

fn runs(row: &[Cell]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (i, c) in row.iter().enumerate() {
        match out.last_mut() {
            Some(r) if r.cell == *c => r.len += 1,
            _ => out.push(Run {
                start: i,
                len: 1,
                cell: *c,
            }),
        }
    }
    out
}
