"""Resource figures of a running process, read from /proc (no psutil).

Why /proc rather than `time`: the benchmark needs CPU and memory at a chosen
moment (when the agent has caught up, at the start and end of an idle
window) while the process keeps running; rusage only comes at exit.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses; fields after it are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is state (field 3); utime/stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def thread_sample(pid: int) -> dict[int, tuple[int, int]]:
    """Per thread: (ns on CPU, times scheduled in), from /proc/<pid>/task/*/schedstat.

    Why not /proc/<pid>/stat: its CPU time is in clock ticks (10 ms), too
    coarse for an idle process over a few seconds. The number of times a
    thread was scheduled in is the count of its wake-ups, which is what idle
    cost is made of.
    """
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            run_ns, _wait_ns, slices = (task / "schedstat").read_text().split()[:3]
        except (FileNotFoundError, ValueError):
            continue  # the thread exited between listing and reading
        out[int(task.name)] = (int(run_ns), int(slices))
    return out


def by_thread_name(pid: int, before: dict, after: dict) -> dict[str, tuple[float, int]]:
    """The delta of `thread_delta`, grouped by thread name (/proc/.../comm),
    so a figure can say which part of the agent spends the CPU or wakes up."""
    out: dict[str, tuple[float, int]] = {}
    for tid, (run_ns, slices) in after.items():
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:
            name = "(exited)"
        r0, s0 = before.get(tid, (0, 0))
        cpu, wake = out.get(name, (0.0, 0))
        out[name] = (cpu + (run_ns - r0) / 1e9, wake + slices - s0)
    return dict(sorted(out.items(), key=lambda kv: -kv[1][0]))


def thread_delta(before: dict, after: dict) -> tuple[float, int]:
    """CPU seconds and wake-ups between two samples. Threads born in between
    count from zero; threads that died in between are not counted (their
    share is lost, so this is a lower bound, checked against /proc/<pid>/stat)."""
    cpu = wake = 0
    for tid, (run_ns, slices) in after.items():
        r0, s0 = before.get(tid, (0, 0))
        cpu += run_ns - r0
        wake += slices - s0
    return cpu / 1e9, wake


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@dataclass
class Timed:
    """A finished command: wall seconds and CPU seconds (user + sys) from
    wait4's rusage, which covers the process and the children it waited for."""

    wall: float
    user: float
    sys: float
    rc: int
    max_rss_kib: int

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def run_timed(argv, stdout=subprocess.DEVNULL, **kw) -> Timed:
    """Runs a command to completion and measures it with wait4."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=stdout, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return Timed(wall, ru.ru_utime, ru.ru_stime, p.returncode, ru.ru_maxrss)


def machine_info() -> dict:
    """What a reader needs to compare these figures with others."""

    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    def cmd(argv) -> str:
        try:
            out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    flags = first("/proc/cpuinfo", "flags").split()
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "sha_ni": "sha_ni" in flags,
        "mem": first("/proc/meminfo", "MemTotal"),
        "kernel": os.uname().release,
        "openssl": cmd(["openssl", "version"]),
        "zstd": cmd(["zstd", "--version"]).strip("* "),
        "python": cmd(["python3", "--version"]),
    }


def machine_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat, all
    cores): sampled around a measurement, and minus the measured process's
    own CPU, it shows how much *other* work shared the machine meanwhile."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu_seconds() -> float:
    """This benchmark's own CPU (itself and the children it has waited for)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Foreign:
    """Accumulates CPU spent by other processes (another build, another
    benchmark) during measured windows: a figure taken on a shared machine
    is only as good as this is small."""

    def __init__(self) -> None:
        self.total = 0.0
        self.wall = 0.0
        self._start: tuple[float, float, float] | None = None

    def begin(self) -> None:
        self._start = (machine_busy_seconds(), self_cpu_seconds(), time.monotonic())

    def end(self, measured_cpu: float) -> None:
        """`measured_cpu`: CPU of the measured process not already in
        `self_cpu_seconds` (an agent not yet waited for; 0 for a waited child)."""
        if self._start is None:
            return
        busy0, self0, t0 = self._start
        other = (machine_busy_seconds() - busy0) - (self_cpu_seconds() - self0) - measured_cpu
        self.total += max(0.0, other)
        self.wall += time.monotonic() - t0
        self._start = None


def io_bytes(pid: int) -> dict[str, int]:
    """/proc/<pid>/io: `read_bytes`/`write_bytes` are what reached the block
    layer (page-cache hits do not count), `rchar`/`wchar` every read/write call."""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = int(v)
    return out
