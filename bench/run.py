#!/usr/bin/env python3
"""The custody agent benchmark: one command, figures not a pass/fail test.

    python3 bench/run.py [--size-gib 1] [--quick] [--no-build]

Phases (see bench/README.md for what each figure means):
  1. corpus     generate (or reuse) a mixed log corpus under bench/out/corpus-*
  2. reference  stock tools on the same bytes: openssl dgst -sha256, zstd -3 -T1,
                and both piped through tee
  3. catch-up   the agent ships the whole corpus into a filesystem store;
                wall, CPU, peak RSS; then custody-verify and a byte-for-byte
                check that the store holds exactly the corpus
  4. idle       100 watched files, no writes: CPU % and RSS
  5. latency    10,000 lines/s appended to a file; time from write() to the
                segment being in the store, per line
Everything is printed as a table and written to bench/out/results.md (and
results.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
import procstat

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
HOST = "bench"
MIB = 1 << 20
GIB = 1 << 30
CATEGORIES = ["os", "logon", "web", "app"]
SEG_NAME = re.compile(r"^(\d{20})-([0-9a-f]{64})\.(zst|seg\.json)$")

# Figures other tools reached on this kind of machine shipping 1 GiB of such
# logs from files into a zstd-compressed file (given to us; none of them hashes).
# Other processes' CPU during the measured windows (see procstat.Foreign).
FOREIGN = procstat.Foreign()

OTHER_TOOLS = [
    ("Vector 0.57", 51.6, 83.6, "43 MB RSS, 0.12 % idle CPU"),
    ("rsyslog", 52.5, 60.7, ""),
    ("Fluent Bit (no compression)", 24.8, 15.5, "80 MB RSS"),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    """A phase could not produce its figure; the message says why."""


# --------------------------------------------------------------------------
# The store, seen from outside: what objects exist and when they appeared.
# --------------------------------------------------------------------------


class StoreWatch:
    """Polls `<store>/v1/<host>/streams/*/` and notes, per segment, when its
    payload (.zst) and record (.seg.json) were first seen (monotonic ns).

    A record that does not parse yet is retried on the next poll, so a store
    that writes in place rather than by rename is not misread.
    """

    def __init__(self, store: Path, host: str = HOST):
        self.streams = store / "v1" / host / "streams"
        self.seen_zst: dict[tuple[str, str], int] = {}
        self.seen_meta: dict[tuple[str, str], int] = {}
        self.meta: dict[tuple[str, str], dict] = {}
        self.raw_total = 0

    def poll(self) -> None:
        now = time.monotonic_ns()
        try:
            streams = list(os.scandir(self.streams))
        except FileNotFoundError:
            return
        for s in streams:
            try:
                entries = list(os.scandir(s.path))
            except FileNotFoundError:
                continue
            for e in entries:
                m = SEG_NAME.match(e.name)
                if not m:
                    continue
                key = (s.name, f"{m.group(1)}-{m.group(2)}")
                if m.group(3) == "zst":
                    self.seen_zst.setdefault(key, now)
                elif key not in self.meta:
                    try:
                        rec = json.loads(Path(e.path).read_bytes())
                    except (OSError, ValueError):
                        continue
                    self.meta[key] = rec
                    self.seen_meta[key] = now
                    self.raw_total += int(rec.get("raw_len", 0))

    def durable_at(self, key) -> int | None:
        """When both objects of a segment were present: the segment is only
        usable (and verifiable) with its record."""
        a, b = self.seen_zst.get(key), self.seen_meta.get(key)
        return max(a, b) if a is not None and b is not None else None

    def payload_path(self, key) -> Path:
        return self.streams / key[0] / f"{key[1]}.zst"


def read_status(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None


def status_caught_up(st: dict | None) -> bool:
    """The definition from the brief: every file's behind == 0 and an empty spool."""
    if not st:
        return False
    files = [f for src in st.get("sources", []) for f in src.get("files", [])]
    return bool(files) and all(f.get("behind", 1) == 0 for f in files) and st.get("spool", {}).get("segments", 1) == 0


# --------------------------------------------------------------------------
# The agent as a child process.
# --------------------------------------------------------------------------


class Agent:
    def __init__(self, binary: Path, workdir: Path, sources: dict[str, str], extra: list[str]):
        if workdir.exists():
            shutil.rmtree(workdir)
        self.store = workdir / "store"
        self.state = workdir / "state"
        self.store.mkdir(parents=True)
        self.state.mkdir(parents=True)
        self.binary = binary
        self.argv = [
            str(binary),
            "run",
            "--store",
            str(self.store),
            "--state-dir",
            str(self.state),
            "--host-id",
            HOST,
            "--level",
            "D",
        ]
        for cat, pattern in sources.items():
            self.argv += ["--source", f"{cat}={pattern}"]
        self.argv += extra
        self.log_path = workdir / "agent.log"
        self.proc: subprocess.Popen | None = None
        self.exit_rusage = None
        self.exit_code: int | None = None
        self.t_start = 0.0

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (open for the agent's lifetime; closed in stop())
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        """Raises if the agent exited on its own (keeping its rusage)."""
        if self.exit_code is not None:
            raise BenchError(f"agent exited with {self.exit_code}; see {self.log_path}:\n{self.log_tail()}")
        pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        if pid:
            self.exit_code = os.waitstatus_to_exitcode(status)
            self.exit_rusage = ru
            self.proc.returncode = self.exit_code
            raise BenchError(f"agent exited with {self.exit_code}; see {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM (flush, ship, exit 0) and wait; returns seconds to exit."""
        if self.exit_code is not None:
            return 0.0
        t0 = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        while True:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                self.exit_rusage = ru
                self.proc.returncode = self.exit_code
                break
            if time.monotonic() - t0 > timeout:
                os.kill(self.pid, signal.SIGKILL)
                _, status, ru = os.wait4(self.pid, 0)
                self.exit_code = os.waitstatus_to_exitcode(status)
                self.exit_rusage = ru
                self.proc.returncode = self.exit_code
                raise BenchError(f"agent did not exit within {timeout:.0f} s of SIGTERM; killed")
            time.sleep(0.02)
        self._log.close()
        return time.monotonic() - t0

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def kill_quietly(self) -> None:
        if self.proc is not None and self.exit_code is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.wait4(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.exit_code = -9


# --------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------


def warm_cache(files: list[Path]) -> None:
    """Reads the corpus once so every contender reads it from the page cache."""
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(8 * MIB):
                pass


def median_run(argv: list[str], repeat: int) -> tuple[procstat.Timed, list[float]]:
    """Runs a command `repeat` times; returns the run with the median wall
    time and every wall time (to show the spread)."""
    runs = []
    for _ in range(repeat):
        FOREIGN.begin()
        runs.append(procstat.run_timed(argv))
        FOREIGN.end(0.0)  # a waited-for child is in self_cpu_seconds already
    runs.sort(key=lambda t: t.wall)
    failed = [t.rc for t in runs if t.rc != 0]
    if failed:
        raise BenchError(f"reference command {argv[0]} {argv[1]} failed (exit codes {failed})")
    return runs[len(runs) // 2], [t.wall for t in runs]


def phase_reference(files: list[Path], work: Path, repeat: int) -> dict:
    warm_cache(files)
    names = [str(f) for f in files]
    sha, sha_walls = median_run(["openssl", "dgst", "-sha256", *names], repeat)
    zst, zstd_walls = median_run(["zstd", "-q", "-3", "-T1", "-c", *names], repeat)
    if sha.rc or zst.rc:
        raise BenchError(f"reference tools failed: openssl rc={sha.rc}, zstd rc={zst.rc}")
    # Piped: tee feeds openssl through a FIFO (not `>(...)`, whose process
    # bash does not wait for) so the wall time covers both consumers.
    fifo_dir = work / "fifo"
    shutil.rmtree(fifo_dir, ignore_errors=True)
    fifo_dir.mkdir(parents=True)
    script = (
        'set -e; f="$1"; shift; rm -f "$f"; mkfifo "$f"; '
        'openssl dgst -sha256 < "$f" > /dev/null & '
        'cat "$@" | tee "$f" | zstd -q -3 -T1 -c > /dev/null; wait'
    )
    piped, piped_walls = median_run(["bash", "-c", script, "bash", str(fifo_dir / "f"), *names], repeat)
    shutil.rmtree(fifo_dir, ignore_errors=True)
    if piped.rc:
        raise BenchError(f"piped reference failed with rc={piped.rc}")
    # The compression ratio of the corpus with stock zstd -3 (whole files).
    compressed = 0
    for f in files:
        out = subprocess.run(["zstd", "-q", "-3", "-T1", "-c", str(f)], stdout=subprocess.PIPE, check=True)
        compressed += len(out.stdout)
    return {
        "sha": sha,
        "zstd": zst,
        "piped": piped,
        "compressed": compressed,
        "walls": {"sha": sha_walls, "zstd": zstd_walls, "piped": piped_walls},
    }


def phase_catchup(
    agent_bin: Path, verify_bin: Path, corpus_dir: Path, manifest: dict, work: Path, segment_age_ms: int
) -> dict:
    files = [corpus_dir / rel for rel in manifest["files"]]
    total = manifest["total"]
    warm_cache(files)
    sources = {c: str(corpus_dir / c / "*.log") for c in CATEGORIES}
    agent = Agent(agent_bin, work / "catchup", sources, ["--segment-max-age-ms", str(segment_age_ms)])
    watch = StoreWatch(agent.store)
    r: dict = {"segment_age_ms": segment_age_ms}
    deadline = 120 + total / MIB  # generous: 1 s per MiB
    max_rss = 0
    FOREIGN.begin()
    agent.start()
    try:
        t_store = t_status = None
        while t_store is None or t_status is None:
            time.sleep(0.05)
            agent.check_alive()
            max_rss = max(max_rss, procstat.status_kib(agent.pid, "VmRSS"))
            watch.poll()
            now = time.monotonic()
            if t_store is None and watch.raw_total >= total:
                t_store = now - agent.t_start
                r["cpu_at_store_complete"] = procstat.cpu_seconds(agent.pid)
                FOREIGN.end(r["cpu_at_store_complete"])
                r["hwm_kib"] = procstat.status_kib(agent.pid, "VmHWM")
                r["threads"] = procstat.thread_count(agent.pid)
                r["io"] = procstat.io_bytes(agent.pid)
                r["cpu_by_thread"] = procstat.by_thread_name(agent.pid, {}, procstat.thread_sample(agent.pid))
            if t_status is None and status_caught_up(read_status(agent.state)):
                t_status = now - agent.t_start
                r["cpu_at_status_caught_up"] = procstat.cpu_seconds(agent.pid)
            if now - agent.t_start > deadline:
                raise BenchError(
                    f"agent not caught up after {deadline:.0f} s: store holds {watch.raw_total} of {total} raw bytes, "
                    f"status caught up: {t_status is not None}"
                )
        # Steady RSS: a second after catching up, with nothing left to do.
        time.sleep(1.0)
        r["rss_after_kib"] = procstat.status_kib(agent.pid, "VmRSS")
        # While it runs: the CLI exits non-zero for an agent that is not running.
        r["status_cli"] = run_status_cli(agent_bin, agent.state)
        r["stop_s"] = agent.stop()
    finally:
        agent.kill_quietly()
    ru = agent.exit_rusage
    r.update(
        wall_store=t_store,
        wall_status=t_status,
        max_rss_sampled_kib=max_rss,
        exit_code=agent.exit_code,
        cpu_total=ru.ru_utime + ru.ru_stime,
        maxrss_exit_kib=ru.ru_maxrss,
    )
    r["verify"] = run_verify(agent_bin, verify_bin, agent.store, agent.state)
    watch.poll()
    r["completeness"] = check_complete(watch, corpus_dir, manifest)
    r["segments"] = len(watch.meta)
    r["store_bytes"] = sum(f.stat().st_size for f in agent.store.rglob("*") if f.is_file())
    r["object_bytes"] = sum(int(m.get("object_len", 0)) for m in watch.meta.values())
    return r


def phase_catchup_repeated(repeat: int, *args) -> dict:
    """Runs the catch-up `repeat` times on fresh stores; the table shows the
    run with the median wall time, and the spread of all runs. Every run is
    verified and checked for completeness, not only the one shown."""
    runs = []
    for i in range(repeat):
        r = phase_catchup(*args)
        log(f"catch-up run {i + 1}/{repeat}: {r['wall_store']:.2f} s, {r['cpu_at_store_complete']:.2f} CPU-s")
        runs.append(r)
    runs.sort(key=lambda r: r["wall_store"])
    chosen = dict(runs[len(runs) // 2])
    chosen["runs"] = [
        {
            "wall": r["wall_store"],
            "cpu": r["cpu_at_store_complete"],
            "hwm_kib": r["hwm_kib"],
            "verify_rc": r["verify"]["rc"],
            "complete": not r["completeness"]["problems"],
        }
        for r in runs
    ]
    return chosen


def run_status_cli(agent_bin: Path, state: Path) -> dict:
    p = subprocess.run(
        [str(agent_bin), "status", "--state-dir", str(state), "--json"], check=False, capture_output=True, text=True
    )
    ok = p.returncode == 0
    try:
        parsed = json.loads(p.stdout) if ok else None
    except ValueError:
        parsed, ok = None, False
    return {"ok": ok, "rc": p.returncode, "caught_up": status_caught_up(parsed), "stderr": p.stderr.strip()[-500:]}


def run_verify(agent_bin: Path, verify_bin: Path, store: Path, state: Path) -> dict:
    """custody-verify as an auditor runs it: signatures checked against the
    host key taken from the agent (`key show`), not only against the keys the
    store publishes about itself."""
    signers = state.parent / "allowed_signers"
    argv = [str(verify_bin), "store", str(store)]
    key = subprocess.run(
        [str(agent_bin), "key", "show", "--state-dir", str(state), "--host-id", HOST],
        check=False,
        capture_output=True,
        text=True,
    )
    if key.returncode == 0 and key.stdout.strip():
        signers.write_text(key.stdout)
        argv += ["--allowed-signers", str(signers)]
    t0 = time.monotonic()
    p = subprocess.run(argv, check=False, capture_output=True, text=True)
    return {
        "argv": " ".join(argv),
        "rc": p.returncode,
        "wall": time.monotonic() - t0,
        "allowed_signers": "--allowed-signers" in argv,
        "output": (p.stdout + p.stderr).strip()[-1500:],
    }


def check_complete(watch: StoreWatch, corpus_dir: Path, manifest: dict) -> dict:
    """Proof that nothing was lost or added: per source file, the segments'
    byte ranges tile [0, size) without gap or overlap, raw_len sums to the
    file size, and the decompressed payloads, concatenated in range order,
    have the file's SHA-256."""
    by_path: dict[str, list] = {}
    for key, m in watch.meta.items():
        by_path.setdefault(m["source"]["path"], []).append((m["range"]["start"], m["range"]["end"], key, m))
    problems = []
    files_ok = 0
    for rel, size in manifest["files"].items():
        path = str((corpus_dir / rel).resolve())
        segs = sorted(by_path.pop(path, []), key=lambda s: s[0])
        raw_sum = sum(int(m["raw_len"]) for *_, m in segs)
        if raw_sum != size:
            problems.append(f"{rel}: raw_len sums to {raw_sum}, file has {size} bytes")
        pos = 0
        for start, end, key, m in segs:
            if start != pos:
                problems.append(f"{rel}: segment {key[1][:26]} starts at {start}, expected {pos}")
            if end - start != int(m["raw_len"]):
                problems.append(f"{rel}: segment {key[1][:26]} range {start}..{end} but raw_len {m['raw_len']}")
            pos = end
        digest, n, rc, feed_error = decompressed_sha256([watch.payload_path(key) for *_, key, _m in segs])
        if feed_error:
            problems.append(f"{rel}: feeding payloads to zstd: {feed_error}")
        want = file_sha256(Path(path))
        if rc != 0:
            problems.append(f"{rel}: zstd -dc failed on the payloads (rc {rc})")
        elif digest != want:
            problems.append(
                f"{rel}: payloads decompress to {n} bytes with sha256 {digest[:16]}…, "
                f"file has {size} bytes with {want[:16]}…"
            )
        else:
            files_ok += 1
    for path in by_path:
        problems.append(f"store has segments of unexpected source {path}")
    return {"files_ok": files_ok, "files": len(manifest["files"]), "problems": problems}


def decompressed_sha256(payloads: list[Path]) -> tuple[str, int, int, str | None]:
    """SHA-256 and length of the payloads decompressed by stock zstd, in order.

    zstd frames concatenate: one `zstd -dc` over all payloads yields the
    concatenated raw bytes. Returns (hex digest, bytes, zstd exit code, the
    error met while feeding zstd, if any).
    """
    dec = subprocess.Popen(["zstd", "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    errors: list[str] = []

    def feed() -> None:
        try:
            for p in payloads:
                dec.stdin.write(p.read_bytes())
        except OSError as e:  # a missing payload, or zstd gave up early
            errors.append(str(e))
        finally:
            dec.stdin.close()

    th = threading.Thread(target=feed)
    th.start()
    h = hashlib.sha256()
    n = 0
    while chunk := dec.stdout.read(4 * MIB):
        h.update(chunk)
        n += len(chunk)
    th.join()
    dec.stdout.close()
    dec.wait()
    return h.hexdigest(), n, dec.returncode, errors[0] if errors else None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def phase_idle(agent_bin: Path, corpus_dir: Path, manifest: dict, work: Path, seconds: float) -> dict:
    """100 watched files (25 per category), filled once, then left alone."""
    files_dir = work / "idle-files"
    shutil.rmtree(files_dir, ignore_errors=True)
    total = 0
    src_for = {"os": "os/syslog.log", "logon": "logon/auth.log", "web": "web/access.log", "app": "app/app.log"}
    for cat in CATEGORIES:
        (files_dir / cat).mkdir(parents=True)
        with open(corpus_dir / src_for[cat], "rb") as f:
            sample = f.read(64 * 1024)
        for i in range(25):
            # A different whole-line slice per file, so no two files share a fingerprint.
            lo = sample.find(b"\n", i * 1000) + 1
            hi = sample.rfind(b"\n", 0, lo + 2000 + i * 50) + 1
            (files_dir / cat / f"f{i:02d}.log").write_bytes(sample[lo:hi])
            total += hi - lo
    sources = {c: str(files_dir / c / "*.log") for c in CATEGORIES}
    agent = Agent(agent_bin, work / "idle", sources, [])
    watch = StoreWatch(agent.store)
    r: dict = {"files": 100, "seconds": seconds}
    agent.start()
    try:
        t0 = time.monotonic()
        while watch.raw_total < total or not status_caught_up(read_status(agent.state)):
            time.sleep(0.1)
            agent.check_alive()
            watch.poll()
            if time.monotonic() - t0 > 60:
                raise BenchError(f"idle set-up: only {watch.raw_total} of {total} bytes shipped after 60 s")
        r["watched_files"] = sum(len(s.get("files", [])) for s in (read_status(agent.state) or {}).get("sources", []))
        time.sleep(2.0)  # let the last segment's follow-up work (digest, status write) finish
        c0, th0, w0 = procstat.cpu_seconds(agent.pid), procstat.thread_sample(agent.pid), time.monotonic()
        time.sleep(seconds)
        agent.check_alive()
        c1, th1, w1 = procstat.cpu_seconds(agent.pid), procstat.thread_sample(agent.pid), time.monotonic()
        cpu, wakes = procstat.thread_delta(th0, th1)
        r["by_thread"] = procstat.by_thread_name(agent.pid, th0, th1)
        r.update(
            cpu_pct=100 * cpu / (w1 - w0),
            wakeups_per_s=wakes / (w1 - w0),
            cpu_pct_ticks=100 * (c1 - c0) / (w1 - w0),
            rss_kib=procstat.status_kib(agent.pid, "VmRSS"),
            hwm_kib=procstat.status_kib(agent.pid, "VmHWM"),
            threads=procstat.thread_count(agent.pid),
        )
        agent.stop()
    finally:
        agent.kill_quietly()
    r["exit_code"] = agent.exit_code
    return r


LAT_LINE = re.compile(rb'"seq":(\d+),"mono_ns":(\d+)')


def latency_writer(path: str, rate: int, seconds: float) -> None:
    """Appends `rate` lines per second for `seconds`, each carrying its
    sequence number and the CLOCK_MONOTONIC time of the write() that carries it.

    Lines due are written together each millisecond, so the rate is steady at
    the millisecond scale and the stamp is at most the build time of one small
    batch before the write.
    """
    total = int(rate * seconds)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    t0 = time.monotonic_ns()
    seq = 0
    while seq < total:
        now = time.monotonic_ns()
        due = min(total, (now - t0) * rate // 1_000_000_000)
        if due > seq:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            now = time.monotonic_ns()
            batch = "".join(
                f'{{"ts":"{stamp}Z","level":"INFO","host":"app-01","logger":"bench.Latency",'
                f'"seq":{n},"mono_ns":{now},"msg":"request handled","path":"/api/v1/cases/{n % 9973}",'
                f'"status":200,"duration_ms":{n % 97}}}\n'
                for n in range(seq, due)
            )
            os.write(fd, batch.encode())
            seq = due
        time.sleep(0.001)
    os.close(fd)


def percentile(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[k]


def phase_latency(agent_bin: Path, work: Path, rate: int, seconds: float, segment_age_ms: int | None) -> dict:
    files_dir = work / "latency-files"
    shutil.rmtree(files_dir, ignore_errors=True)
    (files_dir / "app").mkdir(parents=True)
    target = files_dir / "app" / "latency.log"
    target.write_bytes(b"")
    sources = {"app": str(files_dir / "app" / "*.log")}
    extra = [] if segment_age_ms is None else ["--segment-max-age-ms", str(segment_age_ms)]
    agent = Agent(agent_bin, work / "latency", sources, extra)
    watch = StoreWatch(agent.store)
    r: dict = {"rate": rate, "seconds": seconds, "segment_age_ms": segment_age_ms}
    agent.start()
    try:
        t0 = time.monotonic()
        # Start writing once the agent reports following the (empty) file.
        while not any(
            f.get("path") == str(target)
            for src in (read_status(agent.state) or {}).get("sources", [])
            for f in src.get("files", [])
        ):
            time.sleep(0.05)
            agent.check_alive()
            if time.monotonic() - t0 > 30:
                raise BenchError(f"latency: the agent's status does not list {target} after 30 s")
        ctx = multiprocessing.get_context("fork")
        writer = ctx.Process(target=latency_writer, args=(str(target), rate, seconds), daemon=True)
        writer.start()
        # Watch at 5 ms while the writer runs and until the store holds every byte.
        c0 = procstat.cpu_seconds(agent.pid)
        tail_deadline = None
        while True:
            time.sleep(0.005)
            watch.poll()
            if not writer.is_alive():
                if writer.exitcode != 0:
                    raise BenchError(f"latency writer exited with {writer.exitcode}")
                if tail_deadline is None:
                    tail_deadline = time.monotonic() + 30
                    r["cpu_pct_under_load"] = 100 * (procstat.cpu_seconds(agent.pid) - c0) / seconds
                if watch.raw_total >= target.stat().st_size:
                    break
                if time.monotonic() > tail_deadline:
                    break
                agent.check_alive()
        r["rss_kib"] = procstat.status_kib(agent.pid, "VmRSS")
        agent.stop()
    finally:
        agent.kill_quietly()
    watch.poll()
    expected = int(rate * seconds)
    lat_durable: list[float] = []
    lat_zst: list[float] = []
    seen_seq: set[int] = set()
    first_mono = last_mono = None
    dups = 0
    no_payload = 0
    for key in sorted(watch.meta):
        durable = watch.durable_at(key)
        if durable is None:  # a record whose payload never appeared: its lines count as missing
            no_payload += 1
            continue
        raw = subprocess.run(["zstd", "-dc", str(watch.payload_path(key))], check=True, capture_output=True).stdout
        for seq_b, mono_b in LAT_LINE.findall(raw):
            seq, mono = int(seq_b), int(mono_b)
            if seq in seen_seq:
                dups += 1
                continue
            seen_seq.add(seq)
            first_mono = mono if first_mono is None else min(first_mono, mono)
            last_mono = mono if last_mono is None else max(last_mono, mono)
            lat_durable.append((durable - mono) / 1e9)
            lat_zst.append((watch.seen_zst[key] - mono) / 1e9)
    lat_durable.sort()
    lat_zst.sort()
    r.update(
        achieved_rate=(len(seen_seq) - 1) / ((last_mono - first_mono) / 1e9) if last_mono != first_mono else 0.0,
        expected=expected,
        records_without_payload=no_payload,
        received=len(seen_seq),
        missing=expected - len(seen_seq),
        duplicates=dups,
        segments=len(watch.meta),
        exit_code=agent.exit_code,
        p50=percentile(lat_durable, 0.50),
        p99=percentile(lat_durable, 0.99),
        max=lat_durable[-1] if lat_durable else float("nan"),
        zst_p50=percentile(lat_zst, 0.50),
        zst_p99=percentile(lat_zst, 0.99),
    )
    return r


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def build_report(
    args,
    info: dict,
    manifest: dict,
    ref: dict | None,
    cu: dict | None,
    idle: dict | None,
    lat: dict | None,
    errors: list[str],
) -> str:
    total = manifest["total"]
    mib = total / MIB
    rows: list[tuple[str, str, str, str, str]] = []

    def row(fig, measured, reference="", target="", ok=None):
        rows.append((fig, measured, reference, target, verdict(ok)))

    row(
        "corpus",
        f"{mib:.0f} MiB in {len(manifest['files'])} files",
        "",
        "≥ 1 GiB" if not args.quick else "64 MiB (quick)",
        total >= GIB if not args.quick else None,
    )
    if ref:
        ratio = total / ref["compressed"]
        row("corpus zstd -3 ratio", f"{ratio:.1f}x", "real logs ~8-15x", "8-15x", 8 <= ratio <= 15)
        s, z, p = ref["sha"], ref["zstd"], ref["piped"]
        if len(ref["walls"]["sha"]) > 1:
            row(
                f"ref: wall of {len(ref['walls']['sha'])} runs (sha / zstd / piped)",
                " / ".join(", ".join(f"{w:.2f}" for w in ref["walls"][k]) for k in ("sha", "zstd", "piped")) + " s",
            )
        row("ref: openssl dgst -sha256", f"{s.wall:.2f} s wall, {s.cpu:.2f} CPU-s ({mib / s.wall:.0f} MiB/s)")
        row("ref: zstd -3 -T1", f"{z.wall:.2f} s wall, {z.cpu:.2f} CPU-s ({mib / z.wall:.0f} MiB/s)")
        row(
            "ref: cat \\| tee(openssl) \\| zstd (piped)",
            f"{p.wall:.2f} s wall, {p.cpu:.2f} CPU-s ({mib / p.wall:.0f} MiB/s)",
        )
    if cu:
        wall = cu["wall_store"]
        row("agent catch-up wall (all bytes in store)", f"{wall:.2f} s ({mib / wall:.0f} MiB/s)")
        if cu.get("wall_status") is not None:
            row("agent catch-up wall (status says caught up)", f"{cu['wall_status']:.2f} s")
        row(
            "agent CPU at catch-up",
            f"{cu['cpu_at_store_complete']:.2f} CPU-s "
            f"(to exit: {cu['cpu_total']:.2f}); {cu['cpu_at_store_complete'] / wall:.2f} of "
            f"{info['cores']} cores busy on average",
        )
        if ref:
            ref_cpu = ref["sha"].cpu + ref["zstd"].cpu
            cpu_ratio = cu["cpu_at_store_complete"] / ref_cpu
            row(
                "agent CPU / reference CPU",
                f"{cpu_ratio:.2f}",
                f"sha + zstd = {ref_cpu:.2f} CPU-s",
                "≤ 1.1",
                cpu_ratio <= 1.1,
            )
            single = ref["sha"].wall + ref["zstd"].wall
            tp = single / wall
            row(
                "agent throughput / single-threaded reference",
                f"{tp:.2f}",
                f"sha then zstd = {single:.2f} s ({mib / single:.0f} MiB/s)",
                "≥ 1.5",
                tp >= 1.5,
            )
            row(
                "agent throughput / piped reference",
                f"{ref['piped'].wall / wall:.2f}",
                f"piped = {ref['piped'].wall:.2f} s",
                "",
            )
        hwm = cu["hwm_kib"] / 1024
        row("agent peak RSS (VmHWM) in catch-up", f"{hwm:.1f} MiB", "", "")
        steady = cu["rss_after_kib"] / 1024
        row("agent RSS after catch-up (steady)", f"{steady:.1f} MiB", "", "< 32 MiB", steady < 32)
        row("agent threads", f"{cu.get('threads', '?')}")
        if len(cu.get("runs", [])) > 1:
            row(
                f"agent catch-up, all {len(cu['runs'])} runs (median shown)",
                "; ".join(f"{r['wall']:.2f} s {r['cpu']:.2f} CPU-s" for r in cu["runs"]),
                "",
                "every run verified and complete",
                all(r["verify_rc"] == 0 and r["complete"] for r in cu["runs"]),
            )
        row(
            "agent CPU by thread name at catch-up",
            ", ".join(f"{name} {cpu:.2f} s" for name, (cpu, _) in cu.get("cpu_by_thread", {}).items() if cpu >= 0.01),
        )
        row(
            "segments / stored bytes",
            f"{cu['segments']} segments, {cu['store_bytes'] / MIB:.1f} MiB in store "
            f"({total / max(1, cu['object_bytes']):.1f}x on payloads)",
        )
        io = cu.get("io")
        if io:
            row(
                "agent I/O at catch-up",
                f"read() {io['rchar'] / MIB:.0f} MiB, write() {io['wchar'] / MIB:.0f} MiB "
                f"({io['wchar'] / max(1, cu['object_bytes']):.1f}x the stored payloads: spool + store), "
                f"to disk {io['write_bytes'] / MIB:.0f} MiB",
            )
        row("shutdown on SIGTERM", f"{cu['stop_s']:.2f} s, exit {cu['exit_code']}", "", "exit 0", cu["exit_code"] == 0)
        v = cu["verify"]
        last = v["output"].splitlines()[-1][:200].replace("|", "\\|") if v["output"] else "no output"
        row(
            "custody-verify store",
            f"rc {v['rc']} in {v['wall']:.1f} s"
            + (" (with the host key as allowed signer)" if v.get("allowed_signers") else "")
            + f": {last}",
            "",
            "rc 0 with a report",
            v["rc"] == 0 if v["output"] else None,
        )
        c = cu["completeness"]
        row(
            "store raw bytes == corpus bytes (ranges, sha256)",
            f"{c['files_ok']}/{c['files']} files exact" + (f"; {len(c['problems'])} problems" if c["problems"] else ""),
            "",
            "all",
            not c["problems"] and c["files_ok"] == c["files"],
        )
        st = cu["status_cli"]
        row("`custody-agent status --json`", "ok" if st["ok"] else f"failed rc {st['rc']}", "", "parses", st["ok"])
        scale = GIB / total
        row(
            "agent scaled to 1 GiB",
            f"{wall * scale:.1f} s, {cu['cpu_at_store_complete'] * scale:.1f} CPU-s, "
            f"{hwm:.0f} MiB peak RSS, with SHA-256 + chain + signing",
        )
    for name, w, c, extra in OTHER_TOOLS:
        row(f"other: {name}, 1 GiB", f"{w} s, {c} CPU-s" + (f", {extra}" if extra else ""), "given", "")
    if idle:
        row(
            f"idle CPU ({idle['files']} files, {idle['seconds']:.0f} s)",
            f"{idle['cpu_pct']:.3f} % (in 10 ms ticks: {idle['cpu_pct_ticks']:.2f} %; "
            f"status lists {idle['watched_files']} files)",
            "Vector 0.12 %",
            "",
        )
        per = ", ".join(
            f"{name} {wake / idle['seconds']:.1f}"
            for name, (_, wake) in sorted(idle.get("by_thread", {}).items(), key=lambda kv: -kv[1][1])
            if wake
        )
        row("idle wake-ups (threads scheduled in, per s)", f"{idle['wakeups_per_s']:.1f}/s ({per})")
        row(
            "idle RSS",
            f"{idle['rss_kib'] / 1024:.1f} MiB (peak {idle['hwm_kib'] / 1024:.1f})",
            "",
            "< 32 MiB",
            idle["rss_kib"] / 1024 < 32,
        )
    if lat:
        age = "default" if lat["segment_age_ms"] is None else f"{lat['segment_age_ms']} ms"
        row(
            f"latency write→durable p50 ({lat['rate']} lines/s, {lat['seconds']:.0f} s, segment age {age})",
            f"{lat['p50'] * 1000:.0f} ms (writer achieved {lat['achieved_rate']:.0f} lines/s)",
        )
        row("latency write→durable p99", f"{lat['p99'] * 1000:.0f} ms", "", "< 1000 ms", lat["p99"] < 1.0)
        row("latency write→durable max", f"{lat['max'] * 1000:.0f} ms")
        row("latency write→.zst seen p50 / p99", f"{lat['zst_p50'] * 1000:.0f} / {lat['zst_p99'] * 1000:.0f} ms")
        row(
            "latency lines received",
            f"{lat['received']}/{lat['expected']} ({lat['duplicates']} dup, {lat['segments']} segments)",
            "",
            "all",
            lat["missing"] == 0 and lat["duplicates"] == 0,
        )
        if "cpu_pct_under_load" in lat:
            row("agent CPU at 10k lines/s", f"{lat['cpu_pct_under_load']:.1f} %")

    out = [
        "# custody agent benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; `python3 bench/run.py "
        + " ".join(sys.argv[1:])
        + "`",
        "",
        (
            f"Machine: {info['cpu']}, {info['cores']} cores (sha_ni: {info['sha_ni']}), {info['mem']}, "
            f"kernel {info['kernel']}; {info['openssl']}; {info['zstd']}; agent {info.get('agent', '?')}"
        ),
        "",
        "| figure | measured | reference | target | |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    cores = info["cores"] or 1
    share = FOREIGN.total / max(1e-9, FOREIGN.wall * cores)
    out += [
        "",
        f"Other processes used {FOREIGN.total:.2f} CPU-s during the {FOREIGN.wall:.1f} s of measured reference and "
        f"catch-up windows ({100 * share:.1f} % of the machine)"
        + (
            "; the machine was shared, so treat the wall times and ratios with care."
            if share > 0.05
            else "; the machine was otherwise quiet."
        ),
    ]
    if cu:
        out += ["", f"Catch-up ran with `--segment-max-age-ms {cu['segment_age_ms']}`; the other phases with defaults."]
        if cu["completeness"]["problems"]:
            out += ["", "Completeness problems:", ""] + [f"- {p}" for p in cu["completeness"]["problems"][:20]]
        if cu["verify"]["rc"] != 0:
            out += ["", "custody-verify output (tail):", "", "```", cu["verify"]["output"], "```"]
    if errors:
        out += ["", "Phases that failed:", ""] + [f"- {e}" for e in errors]
    return "\n".join(out) + "\n"


def wait_for_quiet(max_wait: float, cores: int) -> float:
    """Waits (up to `max_wait` s) for three consecutive seconds in which other
    processes keep the machine under 10 % busy, so a neighbour's build does
    not land in the figures. Returns the busy share of the last second."""
    deadline = time.monotonic() + max_wait
    quiet = 0
    share = 0.0
    while True:
        b0, s0 = procstat.machine_busy_seconds(), procstat.self_cpu_seconds()
        time.sleep(1.0)
        share = ((procstat.machine_busy_seconds() - b0) - (procstat.self_cpu_seconds() - s0)) / cores
        quiet = quiet + 1 if share < 0.10 else 0
        if quiet >= 3:
            return share
        if time.monotonic() > deadline:
            log(f"machine still {100 * share:.0f} % busy with other work after {max_wait:.0f} s; measuring anyway")
            return share
        if quiet == 0:
            log(f"waiting for a quiet machine: other processes keep it {100 * share:.0f} % busy")


def build_agent(no_build: bool, need: bool) -> tuple[Path, Path]:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    if need and not no_build:
        log("building release binaries (cargo build --release -p custody-agent -p custody-evidence) ...")
        subprocess.run(
            ["cargo", "build", "--release", "-p", "custody-agent", "-p", "custody-evidence"], cwd=ROOT, check=True
        )
    agent, verify = target / "custody-agent", target / "custody-verify"
    for b in (agent, verify):
        if need and not b.exists():
            raise BenchError(f"{b} not found (build it, or drop --no-build)")
    return agent, verify


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=1.0, help="corpus size (default 1 GiB)")
    ap.add_argument("--quick", action="store_true", help="64 MiB corpus, 10 s idle, 5 s latency")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already in target/release")
    ap.add_argument(
        "--repeat", type=int, help="runs of the reference and catch-up phases; the median is shown (default 3, quick 1)"
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        help="wait up to this many seconds for other processes to leave the machine idle (default 120; 0: don't)",
    )
    ap.add_argument("--idle-seconds", type=float)
    ap.add_argument("--latency-seconds", type=float)
    ap.add_argument(
        "--latency-segment-age-ms",
        type=int,
        help="pass --segment-max-age-ms to the agent in the latency phase (default: the agent's default, 1000)",
    )
    ap.add_argument("--latency-rate", type=int, default=10_000, help="lines per second (default 10000)")
    ap.add_argument(
        "--catchup-segment-age-ms",
        type=int,
        default=200,
        help="segment age for the catch-up phase, so the last partial segments do not add a second of "
        "waiting to a throughput figure (default 200)",
    )
    ap.add_argument(
        "--phases",
        default="reference,catchup,idle,latency",
        help="comma-separated subset of reference,catchup,idle,latency",
    )
    args = ap.parse_args()
    size = int(64 * MIB if args.quick else args.size_gib * GIB)
    idle_s = args.idle_seconds or (10.0 if args.quick else 60.0)
    lat_s = args.latency_seconds or (5.0 if args.quick else 30.0)
    phases = set(args.phases.split(","))
    repeat = args.repeat or (1 if args.quick else 3)

    OUT.mkdir(parents=True, exist_ok=True)
    info = procstat.machine_info()
    agent_bin, verify_bin = build_agent(args.no_build, bool(phases - {"reference"}))
    try:
        info["agent"] = (
            subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
            ).stdout.strip()
            or "?"
        )
    except OSError:
        info["agent"] = "?"
    corpus_dir = OUT / f"corpus-{size // MIB}MiB"
    manifest = corpus.ensure_corpus(corpus_dir, size, log=log)
    files = [corpus_dir / rel for rel in manifest["files"]]
    work = OUT / "run"
    work.mkdir(exist_ok=True)

    if args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet, info["cores"] or 1)
    ref = cu = idle = lat = None
    errors: list[str] = []
    for name, fn in (
        ("reference", lambda: phase_reference(files, work, repeat)),
        (
            "catchup",
            lambda: phase_catchup_repeated(
                repeat, agent_bin, verify_bin, corpus_dir, manifest, work, args.catchup_segment_age_ms
            ),
        ),
        ("idle", lambda: phase_idle(agent_bin, corpus_dir, manifest, work, idle_s)),
        ("latency", lambda: phase_latency(agent_bin, work, args.latency_rate, lat_s, args.latency_segment_age_ms)),
    ):
        if name not in phases:
            continue
        log(f"{name} ...")
        try:
            res = fn()
        except BenchError as e:
            log(f"{name} failed: {e}")
            errors.append(f"{name}: {e}")
            continue
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as e:
            # Typically the agent died between two reads of /proc; say so and go on.
            log(f"{name} failed: {type(e).__name__}: {e}")
            errors.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if name == "reference":
            ref = res
            log(
                f"reference: sha {ref['sha'].wall:.2f} s, zstd {ref['zstd'].wall:.2f} s, "
                f"piped {ref['piped'].wall:.2f} s, ratio {manifest['total'] / ref['compressed']:.1f}x"
            )
            continue
        log(f"{name}: {json.dumps(res, default=str)[:600]}")
        if name == "catchup":
            cu = res
        elif name == "idle":
            idle = res
        else:
            lat = res

    log(f"other processes used {FOREIGN.total:.2f} CPU-s during {FOREIGN.wall:.1f} s of measured windows")
    report = build_report(args, info, manifest, ref, cu, idle, lat, errors)
    print()
    print(report)
    (OUT / "results.md").write_text(report)
    (OUT / "results.json").write_text(
        json.dumps(
            {
                "machine": info,
                "corpus": manifest,
                "reference": {k: (v.__dict__ if hasattr(v, "__dict__") else v) for k, v in (ref or {}).items()},
                "catchup": cu,
                "idle": idle,
                "latency": lat,
                "errors": errors,
            },
            indent=1,
            default=str,
        )
        + "\n"
    )
    log(f"wrote {OUT / 'results.md'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
