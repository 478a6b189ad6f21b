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
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is state (field 3); utime/stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches over all threads: a proxy for
    wake-ups, which is what idle cost is made of."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue  # thread exited between listing and reading
    return total


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
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
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
