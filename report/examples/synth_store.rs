//! Writes a synthetic store for the coverage benchmark (bench/report_coverage.py):
//! `synth_store DIR HOSTS DAYS SEGMENT_EVERY_MIN DIGEST_EVERY_MIN NOW_RFC3339`,
//! each host with the six streams of `six_streams()`, real signed records
//! and digests made with custody-evidence.

#[path = "../tests/common/synth.rs"]
mod synth;

use std::path::PathBuf;
use std::time::Instant;

use time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        return Err(
            "usage: synth_store DIR HOSTS DAYS SEGMENT_EVERY_MIN DIGEST_EVERY_MIN NOW_RFC3339"
                .into(),
        );
    }
    let root = PathBuf::from(&a[1]);
    let hosts: usize = a[2].parse()?;
    let days: i64 = a[3].parse()?;
    let seg_min: i64 = a[4].parse()?;
    let dig_min: i64 = a[5].parse()?;
    let now = custody_evidence::timefmt::parse_utc(&a[6])?;
    synth::init_store(&root)?;
    let started = Instant::now();
    let (mut segs, mut digs) = (0, 0);
    for i in 0..hosts {
        let spec = synth::HostSpec {
            name: format!("host{i:03}"),
            start: now - Duration::days(days),
            end: now - Duration::minutes(1),
            segment_every: Duration::minutes(seg_min),
            digest_every: Duration::minutes(dig_min),
            retain_months: 6,
            streams: synth::six_streams(),
        };
        let (s, d) = synth::write_host(&root, &spec)?;
        segs += s;
        digs += d;
    }
    println!(
        "{{\"hosts\":{hosts},\"segments\":{segs},\"digests\":{digs},\"seconds\":{:.1}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
