"""Synthetic but realistic log corpus for the custody benchmark.

Why synthetic: the benchmark needs a gigabyte of logs, and the real samples in
../shared/testdata/linux (beside the checkout) are 2,000 lines each. Repeating them would make
zstd look far better than it is on real logs (long-range matches everywhere),
so the generator *replays* random windows of the real samples and replaces
the variable parts (pids, IPs, ports, users, ids, timestamps) with fresh
values. Inside one window the substitution is consistent (the same pid or
IP in the original stays the same in the copy), which keeps the
correlations that real logs have (a login attempt is several lines with one
pid and one address). Web access lines are not in the samples in combined
format, so they are built from pools with Zipf-like popularity instead.

The aim is a zstd -3 ratio like real logs (about 8-15x); `run.py` prints it.

Layout under the corpus directory (one directory per category, so an agent
source glob is `<dir>/<category>/*.log`):

    os/syslog.log      syslog (Linux_2k template)
    logon/auth.log     sshd / pam (OpenSSH_2k template)
    web/access.log     Apache combined log format
    web/error.log      Apache error log (Apache_2k template)
    app/app.log        JSON lines (Zookeeper_2k template)

Generation is deterministic for a given size and seed, and a finished corpus
is reused (see `manifest.json`) so re-running the benchmark is cheap.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# The project's shared/ folder sits beside the checkout (README, "Two
# commands"); CUSTODY_TESTDATA points elsewhere.
TEMPLATES = Path(
    os.environ.get(
        "CUSTODY_TESTDATA",
        Path(__file__).resolve().parent.parent.parent / "shared" / "testdata",
    )
) / "linux"
GENERATOR_VERSION = 5

# Share of the corpus per file. Web and app logs dominate real volumes.
FILES = [
    # (relative path, share, generator name, template file)
    ("os/syslog.log", 0.20, "syslog", "Linux_2k.log"),
    ("logon/auth.log", 0.15, "syslog", "OpenSSH_2k.log"),
    ("web/access.log", 0.32, "access", None),
    ("web/error.log", 0.03, "apache_error", "Apache_2k.log"),
    ("app/app.log", 0.30, "json_app", "Zookeeper_2k.log"),
]

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]

# Variable parts of a template line, in match priority order.
SLOT_RE = re.compile(
    r"(?P<ip>\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b)"
    r"|(?P<port>(?<=port )\d+)"
    r"|(?P<hex>\b0x[0-9a-fA-F]+\b)"
    r"|(?P<user>(?<=user )[A-Za-z0-9_.-]+|(?<=user=)[A-Za-z0-9_.-]+|(?<=for )[a-z][A-Za-z0-9_.-]*(?= from)"
    r"|(?<=Invalid user )[A-Za-z0-9_.-]+)"
    r"|(?P<num>\b\d+\b)"
)

USERS = (  # noqa: SIM905 (a word list reads better as text)
    "root admin test guest oracle postgres ubuntu user ftp www-data mysql git deploy backup support "
    "info nagios tomcat jenkins hadoop pi ec2-user centos alice bob carol dave erin frank grace "
    "heidi ivan judy mallory oscar peggy trent victor walter cyrus news"
).split()

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.97",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "Wget/1.21.4",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "kube-probe/1.29",
    "Prometheus/2.51.2",
]

SECTIONS = ["news", "services", "forms", "notices", "about", "contact", "downloads", "events", "faq", "policy"]
STATIC = [
    "/static/css/site.{h}.css",
    "/static/js/app.{h}.js",
    "/static/js/vendor.{h}.js",
    "/static/img/logo.{h}.png",
    "/favicon.ico",
    "/robots.txt",
    "/static/fonts/noto-sans-tc.{h}.woff2",
]
API = [
    "/api/v1/cases/{id}",
    "/api/v1/cases/{id}/documents",
    "/api/v1/users/{id}",
    "/api/v1/search?q={w}&page={p}",
    "/api/v1/notices?since={id}",
    "/api/v2/forms/{id}/submit",
    "/healthz",
    "/metrics",
]
WORDS = (  # noqa: SIM905 (a word list reads better as text)
    "tax permit water road school tender budget license park bus parking garbage election health "
    "vaccine subsidy housing flood typhoon library festival recycle youth elder"
).split()


def zipf_index(rng: random.Random, n: int, s: float = 1.1) -> int:
    """Index in [0, n) with Zipf-like popularity (a few hot items, a long tail)."""
    # Inverse-CDF of a continuous power law, good enough for popularity.
    u = rng.random()
    x = (1 - u * (1 - (n + 1) ** (1 - s))) ** (1 / (1 - s))
    return min(int(x) - 1, n - 1)


class Pools:
    """Per-file pools of values, so values repeat the way they do in real logs."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.ips = [self._ip() for _ in range(30000)]
        self.users = USERS + [f"{rng.choice(USERS)}{rng.randint(1, 99)}" for _ in range(200)]

    def _ip(self) -> str:
        r = self.rng
        return f"{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def ip(self) -> str:
        return self.ips[zipf_index(self.rng, len(self.ips))]

    def user(self) -> str:
        return self.users[zipf_index(self.rng, len(self.users), 1.3)]


def tokenize(text: str) -> list:
    """Splits a line into literal strings and (kind, original) slots."""
    out: list = []
    pos = 0
    for m in SLOT_RE.finditer(text):
        if m.start() > pos:
            out.append(text[pos : m.start()])
        out.append((m.lastgroup, m.group(0)))
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def fill(tokens: list, mapping: dict, pools: Pools) -> str:
    """Renders a tokenized line, substituting slots consistently via `mapping`."""
    rng = pools.rng
    parts = []
    for t in tokens:
        if isinstance(t, str):
            parts.append(t)
            continue
        v = mapping.get(t)
        if v is None:
            kind, orig = t
            if kind == "ip":
                v = pools.ip()
            elif kind == "user":
                v = pools.user()
            elif kind == "port":
                v = str(rng.randint(1024, 65535))
            elif kind == "hex":
                v = f"0x{rng.getrandbits(max(4, 4 * (len(orig) - 2))):x}"
            else:  # num: small numbers (status codes, uid=0, ports < 100) stay as they are
                if len(orig) <= 2:
                    v = orig
                else:
                    lo = 10 ** (len(orig) - 1)
                    v = str(rng.randrange(lo, lo * 10))
            mapping[t] = v
        parts.append(v)
    return "".join(parts)


class Clock:
    """A log clock that moves forward by random gaps, with second-resolution
    rendering cached (most lines share their second with the previous one)."""

    def __init__(self, rng: random.Random, start: float, mean_gap: float):
        self.rng = rng
        self.t = start
        self.mean_gap = mean_gap

    def tick(self) -> float:
        self.t += self.rng.expovariate(1.0 / self.mean_gap)
        return self.t


_STAMP_CACHE: dict[int, str] = {}


def syslog_stamp(t: float) -> str:
    """Classic syslog stamp; cached per second (most lines share a second)."""
    s = int(t)
    v = _STAMP_CACHE.get(s)
    if v is None:
        tm = time.gmtime(s)
        v = f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
        _STAMP_CACHE.clear()
        _STAMP_CACHE[s] = v
    return v


def load_syslog_template(name: str) -> list:
    """Template lines as (host, tokenized rest); the stamp is regenerated."""
    rx = re.compile(r"^\w{3}\s+\d+ \d\d:\d\d:\d\d (\S+) (.*)$")
    out = []
    for line in (TEMPLATES / name).read_text(errors="replace").splitlines():
        m = rx.match(line)
        if m:
            out.append((m.group(1), tokenize(m.group(2))))
    return out


def gen_syslog(rng: random.Random, template: str, clock: Clock):
    lines = load_syslog_template(template)
    pools = Pools(rng)
    while True:
        start = rng.randrange(len(lines))
        n = rng.randint(1, 25)
        mapping: dict = {}
        for host, toks in lines[start : start + n]:
            yield f"{syslog_stamp(clock.tick())} {host} {fill(toks, mapping, pools)}\n"


def gen_apache_error(rng: random.Random, template: str, clock: Clock):
    rx = re.compile(r"^\[[^\]]+\] (.*)$")
    lines = []
    for line in (TEMPLATES / template).read_text(errors="replace").splitlines():
        m = rx.match(line)
        if m:
            lines.append(tokenize(m.group(1)))
    pools = Pools(rng)
    while True:
        start = rng.randrange(len(lines))
        n = rng.randint(1, 20)
        mapping: dict = {}
        for toks in lines[start : start + n]:
            t = clock.tick()
            tm = time.gmtime(int(t))
            yield (
                f"[{DAYS[tm.tm_wday]} {MONTHS[tm.tm_mon - 1]} {tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:"
                f"{tm.tm_sec:02d} {tm.tm_year}] {fill(toks, mapping, pools)}\n"
            )


def gen_json_app(rng: random.Random, template: str, clock: Clock):
    rx = re.compile(r"^\S+ \S+ - (\w+)\s+\[([^\]]*)\] - (.*)$")
    lines = []
    for line in (TEMPLATES / template).read_text(errors="replace").splitlines():
        m = rx.match(line)
        if not m:
            continue
        level, where, msg = m.groups()
        thread, _, loc = where.rpartition(":")
        logger, _, lineno = loc.partition("@")
        lines.append((level, tokenize(thread), logger, lineno or "0", tokenize(msg.rstrip())))
    pools = Pools(rng)
    hosts = [f"app-{i:02d}" for i in range(1, 7)]
    while True:
        start = rng.randrange(len(lines))
        n = rng.randint(1, 30)
        mapping: dict = {}
        trace = f"{rng.getrandbits(64):016x}"
        host = rng.choice(hosts)
        for level, thread, logger, lineno, msg in lines[start : start + n]:
            t = clock.tick()
            tm = time.gmtime(int(t))
            ms = int((t % 1) * 1000)
            ts = f"{tm.tm_year}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{ms:03d}Z"
            rec = {
                "ts": ts,
                "level": level,
                "host": host,
                "logger": logger,
                "line": int(lineno) if lineno.isdigit() else 0,
                "thread": fill(thread, mapping, pools),
                "trace_id": trace,
                "msg": fill(msg, mapping, pools),
            }
            yield json.dumps(rec, separators=(",", ":")) + "\n"


def gen_access(rng: random.Random, _template, clock: Clock):
    pools = Pools(rng)
    statics = [p.format(h=f"{rng.getrandbits(32):08x}") for p in STATIC]
    sizes = {p: rng.randint(300, 400000) for p in statics}
    pages = (
        ["/"]
        + [f"/{s}/" for s in SECTIONS]
        + [f"/{rng.choice(SECTIONS)}/{rng.randint(1000, 99999)}.html" for _ in range(20000)]
    )
    referers = ["-", "https://www.google.com/", "https://www.bing.com/", "https://www.facebook.com/"] + [
        f"https://www.example.gov.tw{p}" for p in pages[:200]
    ]
    while True:
        # One visit: a client fetches a page, then (often) its static assets.
        ip = pools.ip()
        user = "-" if rng.random() < 0.93 else pools.user()
        ua = UAS[zipf_index(rng, len(UAS), 1.2)]
        page = pages[zipf_index(rng, len(pages))]
        if rng.random() < 0.3:
            # Campaign and session parameters: the high-entropy part of real URLs.
            page = f"{page}?utm_source={rng.choice(WORDS)}&sid={rng.getrandbits(40):010x}"
        reqs = [page]
        if rng.random() < 0.5:
            reqs += rng.sample(statics, rng.randint(1, len(statics)))
        if rng.random() < 0.4:
            tpl = rng.choice(API)
            reqs.append(tpl.format(id=rng.randint(1, 999999), w=rng.choice(WORDS), p=rng.randint(1, 20)))
        referer = referers[zipf_index(rng, len(referers))]
        for i, path in enumerate(reqs):
            t = clock.tick()
            tm = time.gmtime(int(t))
            stamp = f"{tm.tm_mday:02d}/{MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000"
            method = "GET" if not path.endswith("submit") else "POST"
            r = rng.random()
            if path in sizes:
                status, size = (304, 0) if r < 0.3 else (200, sizes[path])
            else:
                status = 200 if r < 0.9 else 404 if r < 0.96 else 302 if r < 0.99 else 500
                size = rng.randint(200, 60000) if status == 200 else rng.randint(150, 600)
            ref = referer if i == 0 else f"https://www.example.gov.tw{page}"
            yield f'{ip} - {user} [{stamp}] "{method} {path} HTTP/1.1" {status} {size} "{ref}" "{ua}"\n'


GENERATORS = {"syslog": gen_syslog, "access": gen_access, "apache_error": gen_apache_error, "json_app": gen_json_app}


def write_file(path: str, target_bytes: int, gen_name: str, template, seed: int) -> int:
    """Writes lines until the file holds at least `target_bytes`; returns its size."""
    rng = random.Random(seed)
    # Log time starts 2025-01-06 00:00:00 UTC; gaps scale so each file spans days.
    clock = Clock(rng, 1736121600.0, mean_gap=0.02)
    gen = GENERATORS[gen_name](rng, template, clock)
    written = 0
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        while written < target_bytes:
            chunk = "".join(next(gen) for _ in range(20000))
            data = chunk.encode("utf-8")
            if written + len(data) > target_bytes:
                # Stop on the first line boundary at or past the target.
                cut = data.find(b"\n", target_bytes - written - 1)
                data = data[: cut + 1] if cut >= 0 else data
            f.write(data)
            written += len(data)
    os.replace(tmp, path)
    return written


def ensure_corpus(root: Path, total_bytes: int, seed: int = 20250106, log=print) -> dict:
    """Creates (or reuses) a corpus of at least `total_bytes` under `root`.

    Returns the manifest: {"files": {relpath: size}, "total": bytes, ...}.
    """
    manifest_path = root / "manifest.json"
    want = {"generator": GENERATOR_VERSION, "target": total_bytes, "seed": seed}
    if manifest_path.exists():
        try:
            m = json.loads(manifest_path.read_text())
            if all(m.get(k) == v for k, v in want.items()) and all(
                (root / rel).stat().st_size == size for rel, size in m["files"].items()
            ):
                log(f"corpus: reusing {root} ({m['total'] / 2**20:.1f} MiB)")
                return m
        except (OSError, ValueError, KeyError):
            pass
    log(f"corpus: generating {total_bytes / 2**20:.0f} MiB under {root} ...")
    t0 = time.monotonic()
    jobs = []
    for i, (rel, share, gen, tpl) in enumerate(FILES):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(p), int(total_bytes * share) + 1, gen, tpl, seed + i))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        sizes = list(ex.map(write_file, *zip(*jobs)))
    files = {rel: size for (rel, *_), size in zip(FILES, sizes)}
    m = dict(want, files=files, total=sum(sizes))
    manifest_path.write_text(json.dumps(m, indent=1) + "\n")
    log(f"corpus: {m['total']} bytes in {time.monotonic() - t0:.1f} s")
    return m
