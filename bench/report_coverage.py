#!/usr/bin/env python3
"""custody-report coverage benchmark: figures, not a pass/fail test.

    python3 bench/report_coverage.py [--hosts 100] [--days 183] [--segment-every-min 120]
                                     [--digest-every-min 120] [--no-build] [--keep]

Generates a store of `--hosts` hosts x 6 streams over `--days` days with the
report crate's generator (report/examples/synth_store.rs: real records,
digests and sshsig signatures made with custody-evidence, payloads hard-linked),
then times `custody-report coverage` on it, pinned to one core with
`taskset -c 0`, once with the page cache cold for the store's files as far as
the generator left it and then warm (median of --repeat), for JSON and HTML.
The issue's target: under 60 s with one core for 100 hosts x 6 streams x
six months. Prints one table, also written to bench/out/report_coverage.md
(raw figures in bench/out/report_coverage.json). The store is deleted at the
end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
NOW = "2026-12-01T00:00:00Z"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(cmd: list[str]) -> tuple[float, float, int, str]:
    """Runs `cmd`; returns (wall s, CPU s of the children, max RSS KiB, stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed with {done.returncode}:\n{done.stderr}")
    return wall, cpu, after.ru_maxrss, done.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--days", type=int, default=183)
    ap.add_argument("--segment-every-min", type=int, default=120)
    ap.add_argument("--digest-every-min", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated store in bench/out/report-store")
    ap.add_argument("--reuse", action="store_true", help="reuse a store kept by --keep (same parameters)")
    a = ap.parse_args()

    release = ROOT / "target" / "release"
    if not a.no_build:
        log("building custody-report and the generator (release)")
        subprocess.run(
            ["cargo", "build", "--release", "-p", "custody-report", "--bin", "custody-report",
             "--example", "synth_store"],
            cwd=ROOT, check=True,
        )
    report = release / "custody-report"
    synth = release / "examples" / "synth_store"
    OUT.mkdir(exist_ok=True)
    store = OUT / "report-store"
    if a.reuse and store.exists():
        gen_figures = json.loads((OUT / "report_store.json").read_text())
        log(f"reusing {store}: {gen_figures}")
    else:
        if store.exists():
            shutil.rmtree(store)
        log(f"generating {a.hosts} hosts x 6 streams x {a.days} days "
            f"(a segment every {a.segment_every_min} min, a digest every {a.digest_every_min} min)")
        t0 = time.monotonic()
        gen = subprocess.run(
            [str(synth), str(store), str(a.hosts), str(a.days), str(a.segment_every_min),
             str(a.digest_every_min), NOW],
            capture_output=True, text=True, check=True,
        )
        gen_figures = json.loads(gen.stdout)
        gen_figures["wall_s"] = round(time.monotonic() - t0, 1)
        (OUT / "report_store.json").write_text(json.dumps(gen_figures) + "\n")
        log(f"generated: {gen_figures}")
    du = subprocess.run(["du", "-sk", str(store)], capture_output=True, text=True, check=True)
    store_kib = int(du.stdout.split()[0])

    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    results = {}
    for fmt in ["json", "html"]:
        out = OUT / f"report_coverage_out.{fmt}"
        cmd = one_core + [str(report), "coverage", "--store", str(store), "--now", NOW, "--level", "A",
                          "--format", fmt, "--out", str(out)]
        runs = []
        for i in range(max(1, a.repeat)):
            wall, cpu, rss, _ = timed(cmd)
            runs.append({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})
            log(f"coverage --format {fmt} run {i + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU")
        results[fmt] = {
            "runs": runs,
            "median_wall_s": statistics.median(r["wall_s"] for r in runs),
            "output_bytes": out.stat().st_size,
            "max_rss_kib_any_child": rss,
        }
    figures = {
        "hosts": a.hosts, "streams_per_host": 6, "days": a.days,
        "segment_every_min": a.segment_every_min, "digest_every_min": a.digest_every_min,
        "generator": gen_figures, "store_kib": store_kib, "one_core": bool(one_core),
        "cpus": os.cpu_count(), "coverage": results,
    }
    (OUT / "report_coverage.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = [
        f"| store | {a.hosts} hosts x 6 streams x {a.days} days: {gen_figures['segments']} segments, "
        f"{gen_figures['digests']} digests, {store_kib // 1024} MiB |",
        "|---|---|",
    ]
    for fmt, r in results.items():
        lines.append(f"| coverage --format {fmt} (one core, median of {len(r['runs'])}) | "
                     f"{r['median_wall_s']:.1f} s (target < 60 s), output {r['output_bytes'] // 1024} KiB |")
    table = "\n".join(lines)
    (OUT / "report_coverage.md").write_text(table + "\n")
    print(table)
    if not a.keep:
        shutil.rmtree(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
