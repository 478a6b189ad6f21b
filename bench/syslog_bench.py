"""Syslog ingest benchmark for custody-collector: figures, not a test.

Starts the release `custody-collector serve` with a fresh filesystem store,
then:

- TCP: CONNS connections send N octet-counted messages as fast as they can;
  the collector reads only as fast as it stores (back-pressure), so the
  figure is messages/s *stored* (first byte sent -> last message in the
  store).
- UDP, paced: N datagrams at a fixed rate; loss = sent - stored.
- UDP, flood: N datagrams as fast as one Python socket can send them; the
  loss here is mostly the kernel's receive buffer, which UDP cannot avoid.

Afterwards it stops the collector (SIGTERM: open segments and a final digest
are written), runs `custody-verify store`, counts every stored message by
decompressing each payload with the stock `zstd`, and checks each message
sent over TCP is stored exactly once. CPU seconds and peak RSS of the
collector come from /proc.

    python3 bench/syslog_bench.py            # 1,000,000 TCP, 200,000 UDP messages
    python3 bench/syslog_bench.py --quick    # 100,000 / 20,000
    python3 bench/syslog_bench.py --no-build # use target/release as it is
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import cpu_seconds, status_kib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "syslog"

HOSTS = ["fw01", "fw02", "core-sw1", "ips01"]
PROGS = ["kernel", "sshd[812]", "filterlog", "snort[2231]", "charon"]
WORDS = "deny allow tcp udp src dst port rule match session closed opened from to by user root admin".split()


def message(i: int, rng: random.Random, tag: str) -> bytes:
    """One RFC 5424 message (about 150-250 bytes) with a unique id."""
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
    ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return (
        f"<134>1 2026-11-30T08:00:00.{i % 1000000:06d}Z {rng.choice(HOSTS)} {rng.choice(PROGS)} - - - "
        f"{tag}-{i:09d} {words} {ip}:{rng.randint(1, 65535)}"
    ).encode()


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_frames(raw: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(raw):
        sp = raw.index(b" ", pos)
        n = int(raw[pos:sp])
        out.append(raw[sp + 1 : sp + 1 + n])
        pos = sp + 1 + n
    return out


def stored_messages(store: Path, host: str, seen: dict[Path, list[bytes]]) -> list[bytes]:
    """Every stored message; payloads already read are cached in `seen`."""
    streams = store / "v1" / host / "streams"
    if not streams.exists():
        return []
    for rec in streams.glob("*/*.seg.json"):
        payload = rec.with_name(rec.name[: -len(".seg.json")] + ".zst")
        if payload in seen or not payload.exists():
            continue
        raw = subprocess.run(["zstd", "-d", "-c", str(payload)], check=True, capture_output=True).stdout
        seen[payload] = split_frames(raw)
    return [m for msgs in seen.values() for m in msgs]


def count_tag(msgs: list[bytes], tag: bytes) -> int:
    return sum(1 for m in msgs if tag in m)


def wait_count(store: Path, host: str, seen: dict, tag: bytes, want: int, timeout: float, settle: float = 0) -> tuple[int, float]:
    """Polls until `want` messages with `tag` are stored (or nothing new for
    `settle` seconds after the sender finished, for UDP); returns the count
    and the time it was reached."""
    start = time.monotonic()
    last, last_change = -1, time.monotonic()
    while True:
        n = count_tag(stored_messages(store, host, seen), tag)
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        if n >= want:
            return n, now
        if settle and now - last_change > settle:
            return n, last_change
        if now - start > timeout:
            return n, now
        time.sleep(0.05)


def tcp_phase(port: int, n: int, conns: int) -> tuple[float, float, set[bytes]]:
    rng = random.Random(1)
    per = n // conns
    batches = []
    ids = set()
    for c in range(conns):
        frames = []
        for i in range(c * per, (c + 1) * per):
            m = message(i, rng, "tcp")
            ids.add(m)
            frames.append(b"%d %s" % (len(m), m))
        batches.append(frames)

    def send(frames: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            for k in range(0, len(frames), 2000):
                s.sendall(b"".join(frames[k : k + 2000]))

    t0 = time.monotonic()
    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return t0, time.monotonic(), ids


def udp_phase(port: int, n: int, rate: float | None, tag: str) -> tuple[float, float, int]:
    rng = random.Random(2)
    msgs = [message(i, rng, tag) for i in range(n)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    for i, m in enumerate(msgs):
        if rate:
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        s.sendto(m, ("127.0.0.1", port))
    s.close()
    return t0, time.monotonic(), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--tcp-messages", type=int)
    ap.add_argument("--udp-messages", type=int)
    ap.add_argument("--udp-rate", type=float, default=20000.0, help="paced UDP messages/s")
    ap.add_argument("--conns", type=int, default=4)
    a = ap.parse_args()
    n_tcp = a.tcp_messages or (100_000 if a.quick else 1_000_000)
    n_udp = a.udp_messages or (20_000 if a.quick else 200_000)

    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "custody-collector", "-p", "custody-evidence"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    collector = target / "release" / "custody-collector"
    verify = target / "release" / "custody-verify"

    subprocess.run(["rm", "-rf", str(OUT)], check=True)
    OUT.mkdir(parents=True)
    store, state, host = OUT / "store", OUT / "state", "bench-collector"
    udp_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    log = open(OUT / "collector.log", "wb")
    proc = subprocess.Popen(
        [str(collector), "serve", "--store", str(store), "--state-dir", str(state), "--host-id", host,
         "--syslog-udp", f"127.0.0.1:{udp_port}", "--syslog-tcp", f"127.0.0.1:{tcp_port}"],
        stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while b"syslog: listening" not in (OUT / "collector.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            print((OUT / "collector.log").read_text(), file=sys.stderr)
            return 1
        time.sleep(0.05)

    seen: dict[Path, list[bytes]] = {}
    results: dict[str, object] = {"tcp_messages": n_tcp, "udp_messages": n_udp, "conns": a.conns}
    cpu0 = cpu_seconds(proc.pid)

    t0, t_sent, ids = tcp_phase(tcp_port, n_tcp, a.conns)
    got, t_stored = wait_count(store, host, seen, b"tcp-", len(ids), timeout=600)
    tcp_bytes = sum(len(m) for m in ids)
    results.update(
        tcp_stored=got,
        tcp_send_seconds=round(t_sent - t0, 2),
        tcp_seconds_to_stored=round(t_stored - t0, 2),
        tcp_msgs_per_s=round(got / (t_stored - t0)),
        tcp_mb_per_s=round(tcp_bytes / (t_stored - t0) / 1e6, 1),
    )
    cpu_tcp = cpu_seconds(proc.pid) - cpu0

    t0, t_sent, sent = udp_phase(udp_port, n_udp, a.udp_rate, "udpp")
    got, _ = wait_count(store, host, seen, b"udpp-", sent, timeout=120, settle=3)
    results.update(udp_paced_rate=a.udp_rate, udp_paced_sent=sent, udp_paced_stored=got,
                   udp_paced_loss_pct=round(100 * (sent - got) / sent, 3))

    t0, t_sent, sent = udp_phase(udp_port, n_udp, None, "udpf")
    got, _ = wait_count(store, host, seen, b"udpf-", sent, timeout=120, settle=3)
    results.update(udp_flood_send_rate=round(sent / (t_sent - t0)), udp_flood_sent=sent, udp_flood_stored=got,
                   udp_flood_loss_pct=round(100 * (sent - got) / sent, 3))

    results.update(cpu_seconds_tcp_phase=round(cpu_tcp, 2), cpu_seconds_total=round(cpu_seconds(proc.pid) - cpu0, 2),
                   peak_rss_mib=round(status_kib(proc.pid, "VmHWM") / 1024, 1))
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    results["collector_exit"] = code

    msgs = stored_messages(store, host, seen)
    tcp_stored = [m for m in msgs if b"tcp-" in m]
    results["tcp_exactly_once"] = len(tcp_stored) == len(ids) and set(tcp_stored) == ids
    v = subprocess.run([str(verify), "store", str(store)], capture_output=True, text=True)
    results["verify"] = v.stdout.strip().splitlines()[-1] if v.stdout.strip() else v.stderr.strip()
    results["verify_exit"] = v.returncode
    results["segments"] = len(seen)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    for k, val in results.items():
        print(f"{k:28} {val}")
    ok = code == 0 and v.returncode == 0 and results["tcp_exactly_once"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
