"""The benchmark scripts still run: each in its `--quick` smoke mode, as a subprocess.

No timing is asserted (figures depend on the machine); only that a script exits 0 and
writes the JSON keys the README's "Performance" section is built from. Each script starts
its own throw-away deployment on 127.0.0.1, so one run of these is enough: in the
production-profile run (REDIS_URL set) only the signaling benchmark runs again, against
its own redis-server (`--redis`).
"""

from __future__ import annotations

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


def test_signaling_bench_runs_project_and_baseline(tmp_path):
    args = ("--only", "project_redis") if PRODUCTION_PROFILE else ()
    data = run_bench("signaling", tmp_path, *args)
    expected = {"project_redis"} if PRODUCTION_PROFILE else {"project", "baseline"}
    assert expected <= set(data["servers"])
    for server in data["servers"].values():
        assert server["calls_set_up"] == server["calls_requested"] == 10
        assert server["errors"] == 0, server["error_kinds"]
        assert server["server_log_errors"] == []
        assert set(server["relay_latency"]) >= {"p50_ms", "p95_ms", "p99_ms"}
        assert server["relay_latency"]["count"] == server["messages_relayed"] > 0
        assert server["server_cpu_s"]["total"] >= 0 and server["server_peak_rss_mib"] > 0
    if not PRODUCTION_PROFILE:
        assert set(data["ratio"]["project/baseline"]) >= {
            "relay_p99_ms",
            "messages_per_s",
            "setup_calls_per_s",
        }


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
