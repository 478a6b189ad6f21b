#!/usr/bin/env python3
"""Benchmark of `custody-report findings` against the shell reference.

Builds a filesystem store with the real agent from a corpus of
`bench/corpus.py` (the logon and web categories: sshd/pam syslog and Apache
combined lines), then, on the same store in the same run:

  * `custody-report findings --format json` over a window covering everything
    (reads and verifies every record and payload, parses every line, applies
    the default rules);
  * the reference `zstd -dc OBJECTS... | grep -c 'Failed password'` over the
    same payload objects (decompression and one substring search, no hashing,
    no parsing).

Prints both wall times and MB/s of raw (decompressed) bytes, and the peak RSS
of custody-report. Figures, not a pass/fail test. Writes bench/out/report_findings.json.

    python3 bench/report_findings.py --mb 64          # default
    python3 bench/report_findings.py --mb 16 --no-build
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))

import corpus  # noqa: E402  (the corpus generator next to this file)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """Runs `cmd`; returns (wall s, max RSS KiB of that process alone, stdout)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    # communicate() reaped it; its own rusage is not kept by Popen, so the
    # figure comes from wait4 on a second run only when needed: use
    # /proc-free accounting instead (RUSAGE_CHILDREN delta is not per
    # process). See measure_rss below.
    if proc.returncode not in (0, 1):
        sys.exit(f"{cmd} failed with {proc.returncode}:\n{err.decode(errors='replace')[-2000:]}")
    return wall, measure_rss(cmd), out.decode(errors="replace")


def measure_rss(cmd: list[str]) -> int:
    """Peak RSS (KiB) of one run of `cmd`, from wait4 on that very process."""
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_maxrss


def raw_bytes_in_store(store: Path) -> int:
    total = 0
    for p in store.rglob("*.seg.json"):
        try:
            total += json.loads(p.read_bytes())["raw_len"]
        except (OSError, ValueError, KeyError):
            pass  # a record being written; counted on the next round
    return total


def build_store(agent: Path, files: list[Path], store: Path, state: Path, timeout: float) -> float:
    """The real agent ships `files` into `store`; returns the wall time."""
    want = sum(f.stat().st_size for f in files)
    cmd = [str(agent), "run", "--store", str(store), "--state-dir", str(state), "--host-id", "bench01",
           "--level", "D", "--segment-max-age-ms", "500"]
    for f in files:
        cmd += ["--source", f"{f.parent.name}={f}"]
    logf = open(store.parent / "agent.log", "wb")  # noqa: SIM115 (closed below)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    try:
        while raw_bytes_in_store(store) < want:
            if proc.poll() is not None:
                sys.exit(f"agent exited with {proc.returncode}; see {store.parent / 'agent.log'}")
            if time.monotonic() - t0 > timeout:
                sys.exit(f"agent did not store {want} bytes within {timeout:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        logf.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=64, help="corpus size in MiB (all categories; logon and web are used)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--agent", help="custody-agent binary [default: target/release, else target/debug]")
    a = ap.parse_args()

    if not a.no_build:
        log("building custody-report (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "custody-report", "--bin", "custody-report"],
                       cwd=ROOT, check=True)
    report = ROOT / "target" / "release" / "custody-report"
    agent = Path(a.agent) if a.agent else next(
        (p for p in [ROOT / "target" / "release" / "custody-agent", ROOT / "target" / "debug" / "custody-agent"]
         if p.exists()), None)
    if agent is None:
        sys.exit("no custody-agent binary: cargo build -p custody-agent (the agent's speed is not measured here)")

    OUT.mkdir(exist_ok=True)
    cdir = OUT / "findings-corpus"
    manifest = corpus.ensure_corpus(cdir, a.mb * 2**20, log=log)
    files = [cdir / rel for rel in sorted(manifest["files"]) if rel.startswith(("logon/", "web/access"))]
    work = OUT / "findings-work"
    if work.exists():
        shutil.rmtree(work)
    store, state = work / "store", work / "state"
    store.mkdir(parents=True)
    state.mkdir()
    log(f"agent {agent} ships {', '.join(str(f.relative_to(cdir)) for f in files)}")
    ship_s = build_store(agent, files, store, state, timeout=1800)
    raw = raw_bytes_in_store(store)
    objects = sorted(str(p) for p in store.rglob("*.zst"))
    log(f"store: {len(objects)} payloads, {raw / 2**20:.1f} MiB raw, shipped in {ship_s:.1f} s")

    out = work / "findings.json"
    cmd = [str(report), "findings", "--store", str(store), "--from", "1970-01-01T00:00:00Z",
           "--to", "2100-01-01T00:00:00Z", "--out", str(out)]
    f_wall, rss, _ = timed(cmd)
    rep = json.loads(out.read_text())
    failed_lines = sum(len(f["evidence"]) for f in rep["findings"]
                       if f["rule"] in ("failed_logon_burst",))
    lines = sum(s["lines_read"] for s in rep["streams"])
    ref = 'zstd -dc "$@" | grep -c "Failed password"'
    r_wall, _, r_out = timed(["/bin/bash", "-c", ref, "bash", *objects])
    figures = {
        "corpus_mib": a.mb, "raw_mib": round(raw / 2**20, 1), "payloads": len(objects), "lines": lines,
        "cpus": os.cpu_count(),
        "findings": {"wall_s": round(f_wall, 2), "mb_per_s": round(raw / 2**20 / f_wall, 1),
                     "max_rss_kib": rss, "count": len(rep["findings"]),
                     "failed_lines_in_bursts": failed_lines, "notes": len(rep["notes"]),
                     "unverified_segments": len(rep["unverified_segments"])},
        "reference_zstd_grep": {"wall_s": round(r_wall, 2), "mb_per_s": round(raw / 2**20 / r_wall, 1),
                                "failed_password_lines": int(r_out.strip() or 0)},
    }
    (OUT / "report_findings.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"| custody-report findings | {f_wall:.2f} s | {figures['findings']['mb_per_s']} MB/s | "
          f"peak RSS {rss // 1024} MiB | {len(rep['findings'])} findings over {lines} lines |")
    print(f"| zstd -dc | grep -c 'Failed password' | {r_wall:.2f} s | "
          f"{figures['reference_zstd_grep']['mb_per_s']} MB/s | {figures['reference_zstd_grep']['failed_password_lines']} lines |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
