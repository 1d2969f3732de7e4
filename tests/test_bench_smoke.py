"""The benchmark scripts still run: each in its `--quick` smoke mode, as a subprocess.

No timing is asserted (figures depend on the machine); only that a script exits 0 and
writes the JSON keys the README's "Performance" section is built from. Each script starts
its own throw-away deployment on 127.0.0.1, so one run of these is enough: in the
production-profile run (REDIS_URL set) only the signaling benchmark runs again, against
its own redis-server (`--redis`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.deployment import PROFILE_SKIP

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_PROFILE = bool(os.environ.get("REDIS_URL"))
SELF_CONTAINED = (
    PROFILE_SKIP + "self-contained benchmark on its own embedded deployment; the SQLite run has it"
)


def run_bench(script: str, tmp_path: Path, *args: str, timeout: float = 240) -> dict:
    output = tmp_path / f"{script}.json"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run(
        [sys.executable, f"bench/{script}.py", "--quick", "--json", str(output), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(output.read_text())


def bench_module(script: str):
    """A benchmark script as a module (its name would clash with the project's apps)."""
    bench = str(ROOT / "bench")
    spec = importlib.util.spec_from_file_location(f"bench_{script}", f"{bench}/{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    sys.path.insert(0, bench)  # the scripts import their `_common`
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(bench)
    return module


def test_signaling_bench_runs_project_and_baseline(tmp_path):
    # The SQLite run takes two pinned rounds (the README's sittings); Redis one round.
    args = ("--only", "project_redis") if PRODUCTION_PROFILE else ("--repeat", "2", "--pin")
    data = run_bench("signaling", tmp_path, *args)
    expected = {"project_redis"} if PRODUCTION_PROFILE else {"project", "baseline"}
    assert expected <= set(data["servers"])
    rounds = data.get("rounds", [data["servers"]])
    for server in [*data["servers"].values(), *(s for r in rounds for s in r.values())]:
        assert server["calls_set_up"] == server["calls_requested"] == 10
        assert server["errors"] == 0, server["error_kinds"]
        assert server["server_log_errors"] == []
        assert set(server["relay_latency"]) >= {"p50_ms", "p95_ms", "p99_ms"}
        assert server["relay_latency"]["count"] == server["messages_relayed"] > 0
        assert server["server_cpu_s"]["total"] >= 0 and server["server_peak_rss_mib"] > 0
        assert isinstance(server["stalls"], list)
        assert set(server["client_gc_pauses"]) == {"count", "max_ms", "total_ms"}
    if not PRODUCTION_PROFILE:
        assert len(rounds) == 2
        for name in ("project", "baseline"):
            assert [r[name]["pinned"] for r in rounds] == [True, True]
            p99 = [r[name]["relay_latency"]["p99_ms"] for r in rounds]
            assert data["servers"][name]["relay_latency"]["p99_ms"] == round(sum(p99) / 2, 3)
        per_round = data["ratio_rounds"]["project/baseline"]
        assert len(per_round) == 2
        ratio = data["ratio"]["project/baseline"]
        assert set(ratio) >= {"relay_p99_ms", "messages_per_s", "setup_calls_per_s"}
        assert ratio["relay_p99_ms"] == round(sum(r["relay_p99_ms"] for r in per_round) / 2, 3)


def test_signaling_rounds_keep_the_worst_failure():
    """A loss or a failed set-up in any round shows in the merged figures."""
    median_of_rounds = bench_module("signaling").median_of_rounds
    clean = {
        "calls_set_up": 10,
        "errors": 0,
        "error_kinds": {},
        "server_log_errors": [],
        "relay_latency": {"p99_ms": 2.0},
        "label": "x",
        "ratio": None,  # a figure one round could not compute
    }
    lossy = {
        **clean,
        "calls_set_up": 9,
        "errors": 3,
        "error_kinds": {"lost": 3},
        "server_log_errors": ["Error: boom"],
        "relay_latency": {"p99_ms": 9.0},
        "ratio": 1.5,
    }
    merged = median_of_rounds([clean, lossy, clean])
    assert merged["relay_latency"]["p99_ms"] == 2.0  # the median
    assert merged["calls_set_up"] == 9 and merged["errors"] == 3
    assert merged["error_kinds"] == {"lost": 3}
    assert merged["server_log_errors"] == ["Error: boom"]
    assert merged["label"] == "x" and merged["ratio"] == 1.5
    assert median_of_rounds([{"split": 0}, {"split": 0}]) == {"split": 0}  # a count stays one
    assert isinstance(median_of_rounds([{"split": 0}, {"split": 0}])["split"], int)


def test_signaling_groups_late_messages_into_stalls():
    """The tail's shape: late messages close together are one stall, the largest first;
    the rounds' merged figures keep every round's stalls (no median of them)."""
    signaling = bench_module("signaling")
    start = 10**12

    def at(seconds: float) -> int:
        return start + int(seconds * 1e9)

    late = [(at(5.0), 22.0), (at(1.0), 30.0), (at(1.2), 160.0), (at(1.6), 25.0)]
    found = signaling.stalls(late, start)
    assert found == [
        {"at_s": 1.0, "lasted_s": 0.6, "late_messages": 3, "max_ms": 160.0},
        {"at_s": 5.0, "lasted_s": 0.0, "late_messages": 1, "max_ms": 22.0},
    ]
    assert signaling.stalls([], start) == []
    merged = signaling.median_of_rounds([{"stalls": found[1:]}, {"stalls": []}, {"stalls": found}])
    assert [stall["late_messages"] for stall in merged["stalls"]] == [3, 1, 1]


@pytest.mark.redis
@pytest.mark.skipif(PRODUCTION_PROFILE, reason=SELF_CONTAINED)
def test_signaling_bench_routes_calls_through_nginx(tmp_path):
    """The two-process target behind the guide's nginx: every call on one process."""
    data = run_bench("signaling", tmp_path, "--only", "redis_2p_nginx")
    server = data["servers"]["redis_2p_nginx"]
    assert server["calls_set_up"] == 10 and server["errors"] == 0, server["error_kinds"]
    assert server["server_log_errors"] == []
    assert server["placement"]["split_calls"] == 0
    assert sum(server["placement"]["calls_per_process"]) == 10
    assert server["nginx_cpu_s"] >= 0


def test_mesh_bench_sets_up_nine_person_calls(tmp_path):
    args = ("--redis",) if PRODUCTION_PROFILE else ()
    result = run_bench("mesh", tmp_path, *args)["result"]
    assert result["calls_set_up"] == result["calls_requested"] == 2
    assert (result["people_per_call"], result["pairs_per_call"]) == (9, 36)
    assert result["errors"] == 0, result["error_kinds"]
    assert result["server_log_errors"] == []
    assert result["setup_ms"]["count"] == 2 and result["setup_ms"]["p50_ms"] > 0
    messages = result["messages_per_call"]
    # Every pair negotiated over addressed relays: one offer and one answer per pair.
    assert messages["sent_by_type"]["offer"] == messages["sent_by_type"]["answer"] == 36
    assert messages["delivered_by_type"]["offer"] == 36
    assert messages["sent_by_type"]["admit"] == 8
    assert messages["repeated_announcements"] == {}  # each admission announced once


@pytest.mark.skipif(PRODUCTION_PROFILE, reason=SELF_CONTAINED)
def test_connections_bench_holds_waiting_patients(tmp_path):
    data = run_bench("connections", tmp_path)
    for server in data["servers"].values():
        assert server["connected"] == server["stayed_connected"] == 100
        assert server["kib_per_connection"] is not None
        assert server["server_log_errors"] == []


@pytest.mark.skipif(PRODUCTION_PROFILE, reason=SELF_CONTAINED)
def test_pages_bench_compares_join_page_with_bare_view(tmp_path):
    data = run_bench("pages", tmp_path)
    for page in ("join_page", "bare_view"):
        assert data["pages"][page]["concurrent"]["errors"] == 0
        assert data["pages"][page]["sequential"]["p50_ms"] > 0
    assert "join/bare_p50" in data["ratio"]
    assert "available" in data["pdf"]
    if data["pdf"]["available"]:
        assert data["pdf"]["pdf_bytes"] > 0
        assert "warm_median_s" in data["pdf"]["renderer"], data["pdf"]["renderer"]


@pytest.mark.skipif(PRODUCTION_PROFILE, reason=SELF_CONTAINED)
def test_asgi_handler_bench_compares_the_three_handlers(tmp_path):
    data = run_bench("asgi_handler", tmp_path)
    for page in ("/", "/faq/"):
        assert set(data["cpu_ms"][page]) == {"sync_chain_asgi", "stock_asgi", "wsgi"}
        assert all(ms > 0 for ms in data["cpu_ms"][page].values())


@pytest.mark.e2e
def test_call_setup_bench_measures_first_remote_frame(tmp_path):
    data = run_bench("call_setup", tmp_path)
    assert data["errors"] == []
    assert len(data["calls"]) == 2
    assert data["setup"]["median_ms"] > 0


@pytest.mark.skipif(PRODUCTION_PROFILE, reason=SELF_CONTAINED)
def test_gcstats_settings_record_every_collection(tmp_path):
    """bench/settings_gcstats.py (README: where the collector pauses) writes its record
    when the process ends: generation, pause and time of each collection."""
    record = tmp_path / "gc.json"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "bench.settings_gcstats",
        "GCSTATS_FILE": str(record),
    }
    script = "import gc, django; django.setup(); gc.collect(2)"
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    pauses = json.loads(record.read_text())
    assert any(generation == 2 for generation, _, _ in pauses)  # the explicit one at least
    assert all(generation in (0, 1, 2) and pause >= 0 for generation, pause, _ in pauses)
