"""Tests of the benchmark's own measuring code (no agent needed).

    python3 -m unittest discover -s bench -p 'test_*.py'

Why: the benchmark's completeness check is the proof that the agent lost
nothing; a check that cannot fail proves nothing. These tests build small
stores by hand (the documented layout, payloads made by stock zstd) and
damage them in named ways.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
import run


def make_store(store: Path, files: dict[str, bytes], segment_bytes: int, stream_of) -> dict:
    """Writes a store holding `files` cut at line boundaries into segments of
    about `segment_bytes`; returns {path: [(key_stem, stream), ...]}."""
    made: dict[str, list] = {}
    seqs: dict[str, int] = {}
    for path, data in files.items():
        stream = stream_of(path)
        d = store / "v1" / run.HOST / "streams" / stream
        d.mkdir(parents=True, exist_ok=True)
        pos = 0
        while pos < len(data):
            cut = data.find(b"\n", pos + segment_bytes - 1)
            end = len(data) if cut < 0 else cut + 1
            raw = data[pos:end]
            obj = subprocess.run(["zstd", "-q", "-3", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
            seq = seqs.get(stream, 0)
            seqs[stream] = seq + 1
            stem = f"{seq:020d}-{hashlib.sha256(obj).hexdigest()}"
            (d / f"{stem}.zst").write_bytes(obj)
            rec = {
                "format": "custody.segment.v1",
                "source": {"path": path},
                "range": {"start": pos, "end": end},
                "raw_len": len(raw),
                "object_len": len(obj),
            }
            (d / f"{stem}.seg.json").write_text(json.dumps(rec) + "\n")
            made.setdefault(path, []).append((stem, stream))
            pos = end
    return made


class CompletenessCheck(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        root = Path(self.tmp.name).resolve()
        self.corpus = root / "corpus"
        (self.corpus / "os").mkdir(parents=True)
        (self.corpus / "web").mkdir(parents=True)
        a = b"".join(b"Jan  6 00:00:%02d host sshd[%d]: line %d\n" % (i % 60, 1000 + i, i) for i in range(3000))
        b = b"".join(
            b'1.2.3.%d - - [06/Jan/2025] "GET /%d HTTP/1.1" 200 %d\n' % (i % 250, i, i * 7) for i in range(2000)
        )
        (self.corpus / "os" / "syslog.log").write_bytes(a)
        (self.corpus / "web" / "access.log").write_bytes(b)
        self.manifest = {"files": {"os/syslog.log": len(a), "web/access.log": len(b)}, "total": len(a) + len(b)}
        self.store = root / "store"
        self.made = make_store(
            self.store,
            {str(self.corpus / "os" / "syslog.log"): a, str(self.corpus / "web" / "access.log"): b},
            16 * 1024,
            lambda p: "os.os-log" if "/os/" in p else "web.web-log",
        )

    def tearDown(self):
        self.tmp.cleanup()

    def check(self) -> dict:
        w = run.StoreWatch(self.store)
        w.poll()
        return run.check_complete(w, self.corpus, self.manifest)

    def segment(self, rel: str, i: int) -> tuple[Path, Path]:
        stem, stream = self.made[str(self.corpus / rel)][i]
        d = self.store / "v1" / run.HOST / "streams" / stream
        return d / f"{stem}.zst", d / f"{stem}.seg.json"

    def test_intact_store_is_complete(self):
        r = self.check()
        self.assertEqual(r["problems"], [])
        self.assertEqual(r["files_ok"], 2)
        self.assertGreater(len(self.made[str(self.corpus / "os" / "syslog.log")]), 3)

    def test_missing_segment_is_found(self):
        for p in self.segment("os/syslog.log", 1):
            p.unlink()
        r = self.check()
        self.assertEqual(r["files_ok"], 1)
        self.assertTrue(any("os/syslog.log: raw_len sums to" in p for p in r["problems"]), r["problems"])
        self.assertTrue(any("starts at" in p for p in r["problems"]), r["problems"])

    def test_altered_payload_is_found(self):
        zst, _ = self.segment("web/access.log", 2)
        raw = subprocess.run(["zstd", "-dc", str(zst)], stdout=subprocess.PIPE, check=True).stdout
        forged = raw.replace(b" 200 ", b" 404 ", 1)
        self.assertNotEqual(raw, forged)
        zst.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=forged, stdout=subprocess.PIPE, check=True).stdout)
        r = self.check()
        self.assertEqual(r["files_ok"], 1)
        self.assertTrue(any("web/access.log: payloads decompress to" in p for p in r["problems"]), r["problems"])

    def test_missing_payload_with_record_is_found(self):
        zst, _ = self.segment("os/syslog.log", 0)
        zst.unlink()
        r = self.check()
        self.assertEqual(r["files_ok"], 1)
        self.assertTrue(any(p.startswith("os/syslog.log") for p in r["problems"]), r["problems"])

    def test_segment_of_unknown_source_is_found(self):
        self.manifest["files"].pop("web/access.log")
        r = self.check()
        self.assertTrue(any("unexpected source" in p for p in r["problems"]), r["problems"])


class Percentile(unittest.TestCase):
    def test_nearest_rank(self):
        v = list(range(1, 101))
        self.assertEqual(run.percentile(v, 0.50), 50)
        self.assertEqual(run.percentile(v, 0.99), 99)
        self.assertEqual(run.percentile(v, 1.0), 100)
        self.assertEqual(run.percentile([7], 0.99), 7)


class StatusCaughtUp(unittest.TestCase):
    def test_definition(self):
        files = [{"behind": 0}, {"behind": 0}]
        self.assertTrue(run.status_caught_up({"sources": [{"files": files}], "spool": {"segments": 0}}))
        self.assertFalse(run.status_caught_up({"sources": [{"files": files}], "spool": {"segments": 1}}))
        files[1]["behind"] = 10
        self.assertFalse(run.status_caught_up({"sources": [{"files": files}], "spool": {"segments": 0}}))
        self.assertFalse(run.status_caught_up({"sources": [], "spool": {"segments": 0}}))
        self.assertFalse(run.status_caught_up(None))


class Corpus(unittest.TestCase):
    def test_deterministic_sized_and_realistically_compressible(self):
        with tempfile.TemporaryDirectory() as t1, tempfile.TemporaryDirectory() as t2:
            m1 = corpus.ensure_corpus(Path(t1), 4 << 20, log=lambda _m: None)
            m2 = corpus.ensure_corpus(Path(t2), 4 << 20, log=lambda _m: None)
            self.assertEqual(m1["files"], m2["files"])
            self.assertGreaterEqual(m1["total"], 4 << 20)
            raw = comp = 0
            for rel in m1["files"]:
                a, b = (Path(t1) / rel).read_bytes(), (Path(t2) / rel).read_bytes()
                self.assertEqual(a, b, rel)
                self.assertTrue(a.endswith(b"\n"), rel)
                raw += len(a)
                comp += len(
                    subprocess.run(["zstd", "-q", "-3", "-c"], input=a, stdout=subprocess.PIPE, check=True).stdout
                )
            self.assertTrue(6 <= raw / comp <= 18, f"ratio {raw / comp:.1f}")


if __name__ == "__main__":
    unittest.main()
