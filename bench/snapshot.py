#!/usr/bin/env python3
"""Snapshot benchmark: figures, not a pass/fail test.

    python3 bench/snapshot.py [--size-gib 2] [--quick] [--no-build] [--repeat 3]

Two comparisons on the same bytes (the corpus of bench/corpus.py):
  1. `custody-agent snapshot --out X.tar` over the corpus files, against the
     reference `tar cf - FILES | sha256sum` (what a responder would do by
     hand: one archive, one hash);
  2. `custody-verify bundle X.tar`, against `sha256sum X.tar`.
Printed side by side with the ratio, and written to bench/out/snapshot.md
(raw figures in bench/out/snapshot.json). The page cache is warmed by a
first untimed run of each command; the median of --repeat runs is shown.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
MIB = 1 << 20
GIB = 1 << 30


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(cmd: list[str], **kw) -> tuple[float, float]:
    """Runs `cmd` to completion; returns (wall seconds, CPU seconds of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median_run(name: str, repeat: int, make_cmd, before_each=None) -> dict:
    """Warms the cache with one untimed run, then times `repeat` runs."""
    if before_each:
        before_each()
    subprocess.run(make_cmd(), capture_output=True, check=False)
    walls, cpus = [], []
    for i in range(repeat):
        if before_each:
            before_each()
        wall, cpu = timed(make_cmd())
        walls.append(wall)
        cpus.append(cpu)
        log(f"{name}: run {i + 1}/{repeat}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "runs": walls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=2.0, help="corpus size (default 2 GiB)")
    ap.add_argument("--quick", action="store_true", help="256 MiB corpus, one run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per command (median shown)")
    ap.add_argument("--no-build", action="store_true", help="use target/release as it is")
    args = ap.parse_args()
    size = 256 * MIB if args.quick else int(args.size_gib * GIB)
    repeat = 1 if args.quick else max(1, args.repeat)
    OUT.mkdir(exist_ok=True)
    if not args.no_build:
        log("building release binaries (cargo build --release -p custody-agent -p custody-evidence) ...")
        subprocess.run(["cargo", "build", "--release", "-p", "custody-agent", "-p", "custody-evidence"], cwd=ROOT, check=True)
    agent = ROOT / "target/release/custody-agent"
    verify = ROOT / "target/release/custody-verify"
    for b in (agent, verify):
        if not b.is_file():
            raise SystemExit(f"{b} missing: run without --no-build")

    corpus_dir = OUT / f"corpus-{size // MIB}MiB"
    manifest = corpus.ensure_corpus(corpus_dir, size, log=log)
    files = sorted(str(corpus_dir / rel) for rel in manifest["files"])
    total = manifest["total"]
    work = OUT / "snapshot"
    shutil.rmtree(work, ignore_errors=True)
    (work / "store").mkdir(parents=True)
    bundle = work / "bundle.tar"

    def fresh_bundle() -> None:
        bundle.unlink(missing_ok=True)
        shutil.rmtree(work / "state" / "bundles", ignore_errors=True)

    sources = []
    for rel in manifest["files"]:
        sources += ["--source", f"{rel.split('/')[0]}={corpus_dir / rel}"]
    snapshot_cmd = [
        str(agent), "snapshot", "--store", str(work / "store"), "--state-dir", str(work / "state"),
        "--host-id", "bench", "--level", "D", *sources,
        "--incident", "BENCH", "--operator", "bench", "--out", str(bundle),
    ]  # fmt: skip
    tar_cmd = ["bash", "-o", "pipefail", "-c", 'tar cf - "$@" | sha256sum', "tar-sha256", *files]
    # coreutils sha256sum may not use the CPU's SHA extensions; OpenSSL does
    # (as custody's sha2 crate does), so both references are shown.
    tar_ossl = ["bash", "-o", "pipefail", "-c", 'tar cf - "$@" | openssl dgst -sha256', "tar-openssl", *files]

    log(f"corpus: {total / MIB:.0f} MiB in {len(files)} files")
    ref = median_run("tar cf - | sha256sum", repeat, lambda: tar_cmd)
    ref_ossl = median_run("tar cf - | openssl dgst", repeat, lambda: tar_ossl)
    snap = median_run("custody-agent snapshot", repeat, lambda: snapshot_cmd, before_each=fresh_bundle)
    bundle_bytes = bundle.stat().st_size
    vref = median_run("sha256sum bundle", repeat, lambda: ["sha256sum", str(bundle)])
    vref_ossl = median_run("openssl dgst bundle", repeat, lambda: ["openssl", "dgst", "-sha256", str(bundle)])
    ver = median_run("custody-verify bundle", repeat, lambda: [str(verify), "bundle", str(bundle)])

    def mibs(n: int, s: float) -> str:
        return f"{n / MIB / s:.0f} MiB/s" if s > 0 else "-"

    rows = [
        ("tar cf - FILES | sha256sum", ref, total),
        ("tar cf - FILES | openssl dgst -sha256", ref_ossl, total),
        ("custody-agent snapshot --out", snap, total),
        ("sha256sum BUNDLE", vref, bundle_bytes),
        ("openssl dgst -sha256 BUNDLE", vref_ossl, bundle_bytes),
        ("custody-verify bundle BUNDLE", ver, bundle_bytes),
    ]
    lines = [
        f"Snapshot benchmark: {total / MIB:.0f} MiB of logs in {len(files)} files, bundle {bundle_bytes / MIB:.0f} MiB, "
        f"{os.cpu_count()} cores, warm page cache, median of {repeat}",
        "",
        "| command | wall s | CPU s | throughput |",
        "|---|---:|---:|---:|",
    ]
    for name, r, n in rows:
        lines.append(f"| `{name}` | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {mibs(n, r['wall_s'])} |")
    lines += [
        "",
        f"snapshot / (tar | sha256sum): {snap['wall_s'] / ref['wall_s']:.2f}x wall, "
        f"{snap['cpu_s'] / max(ref['cpu_s'], 1e-9):.2f}x CPU",
        f"snapshot / (tar | openssl dgst): {snap['wall_s'] / ref_ossl['wall_s']:.2f}x wall, "
        f"{snap['cpu_s'] / max(ref_ossl['cpu_s'], 1e-9):.2f}x CPU",
        f"custody-verify / sha256sum: {ver['wall_s'] / vref['wall_s']:.2f}x wall; "
        f"/ openssl dgst: {ver['wall_s'] / vref_ossl['wall_s']:.2f}x wall",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (OUT / "snapshot.md").write_text(text)
    (OUT / "snapshot.json").write_text(
        json.dumps(
            {"bytes": total, "bundle_bytes": bundle_bytes, "reference": ref, "reference_openssl": ref_ossl,
             "snapshot": snap, "sha256sum_bundle": vref, "openssl_bundle": vref_ossl, "verify_bundle": ver},
            indent=1,
        )  # fmt: skip
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
