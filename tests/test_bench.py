"""Smoke tests of `vmmaker-bench`: it runs, and prints valid JSON with every figure.

No speed or size figure is asserted: the benchmark reports goals, it does not enforce them.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from host_sim import runner
from tools import bench

ROOT = Path(__file__).resolve().parent.parent

KEYS = (
    "sdk_alloc_per_req", "baseline_alloc_per_req", "sdk_tls_alloc_per_req",
    "sdk_req_per_s", "baseline_req_per_s", "failover_alloc_per_req", "failover_time_ratio",
    "ram_after_import", "http_slice_mpy_bytes", "min_heap_all_flows", "versions", "n",
    "goals", "met",
)

needs_micropython = pytest.mark.skipif(runner.micropython_path() is None,
                                       reason="micropython is not installed for this platform")


@needs_micropython
def test_bench_http_json_smoke():
    # Small n and a coarse heap step keep this to a few seconds.
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", "http", "--json", "--n", "3", "--rounds", "2",
         "--warmup", "1", "--heap-step", "65536", "--flows", "loopback"],
        cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)  # stdout holds the JSON only; progress went to stderr
    for key in KEYS:
        assert key in res, key
    assert "[bench]" in proc.stderr
    assert set(res["goals"]) == set(res["met"]) == set(bench.GOALS)
    assert all(isinstance(v, bool) for v in res["met"].values())
    assert res["n"] == 3
    for key in ("sdk_alloc_per_req", "baseline_alloc_per_req", "sdk_tls_alloc_per_req",
                "failover_alloc_per_req", "sdk_req_per_s", "baseline_req_per_s",
                "ram_after_import", "http_slice_mpy_bytes"):
        assert isinstance(res[key], (int, float)) and res[key] > 0, key
    assert "vmmaker.client" in res["http_slice_modules"]
    # Run in place from ROMFS, the bytecode stays out of the heap: less RAM than .mpy files.
    assert 0 < res["ram_after_import_romfs"] < res["ram_after_import"]
    assert res["min_heap_flows_source"] == "loopback"
    assert res["min_heap_all_flows"] == res["min_heap_all_flows_loopback"]
    assert res["min_heap_all_flows"] is None or 16384 <= res["min_heap_all_flows"] <= 524288
    assert "MicroPython" in res["versions"]["micropython"]


def test_table_without_json(monkeypatch, capsys):
    # The readable table, from canned figures (no device runs).
    canned = {k: 1 for k in KEYS}
    canned.update(n=3, rounds=2, elapsed_s=1.0, http_slice_files={"client.mpy": 1},
                  versions={"micropython": "MicroPython x"},
                  goals={k: "%s %s" % v for k, v in bench.GOALS.items()})
    canned["met"] = bench._met(canned)
    monkeypatch.setattr(bench, "bench_http", lambda **kw: canned)
    monkeypatch.setattr(runner, "micropython_path", lambda: "/bin/true")
    assert bench.main(["http"]) == 0
    out = capsys.readouterr().out
    assert "failover/happy time ratio" in out and "min heap" in out


def test_no_micropython_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(runner, "micropython_path", lambda: None)
    assert bench.main(["http", "--json"]) == 2
    assert "micropython" in capsys.readouterr().err


def test_min_heap_bisects_a_predicate():
    calls = []

    def check(heap):
        calls.append(heap)
        return heap >= 37000

    assert bench.min_heap(check, step=2048) == 38912  # first multiple of 2 KB >= 37000
    assert len(calls) <= 10
    assert bench.min_heap(lambda heap: False) is None
    assert bench.min_heap(lambda heap: True) == bench.MIN_HEAP_LO


def test_flow_answers():
    # The loopback app's contract with the device script (docs/PROTOCOL.md signals).
    status, hdrs, _ = bench.app("GET", "/v1/flow/db-error/tr", {"host": "api.vmmaker.com.tr",
                                                                "x-vmm-attempt": "1"}, "https")
    assert (status, hdrs["X-VMM-Reason"]) == (500, "db-error")
    status, hdrs, _ = bench.app("GET", "/v1/flow/db-error/tr", {"host": "api.vmmaker.com.tr",
                                                                "x-vmm-attempt": "2"}, "https")
    assert status == 302 and hdrs["Location"] == "https://backup-api.vmmaker.com.tr/v1/flow/db-error/tr"
    status, hdrs, _ = bench.app("GET", "/v1/flow/regional-outage/usa",
                                {"host": "backup-clod-api-usa.vmmaker.com"}, "https")
    assert (status, hdrs["X-VMM-Reason"]) == (503, "regional-outage")
    status, hdrs, _ = bench.app("GET", "/v1/flow/auth-down/usa",
                                {"host": "backup-api-usa.vmmaker.com"}, "https")
    assert status == 200 and hdrs["X-VMM-Temporary"] == "cached-auth"
    status, hdrs, _ = bench.app("GET", "/v1/flow/overload/tr", {"host": "clod-api-tr.vmmaker.com"},
                                "https")
    assert (status, hdrs["Retry-After"]) == (429, "0")
