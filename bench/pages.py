"""Pages: latency of the join page against a bare Django view, and PDF rendering time.

Both views are served by the same daphne process (`manage.py serve` with
`bench.pages_settings`, which adds `/bench/bare/` to the project's URLs), through the
same middleware; requests alternate between the two so that machine noise hits both.
The compliance PDF is timed twice: `compliance_report --output` as an auditor runs it
(process start included), and the renderer alone inside one warmed-up process.

    .venv/bin/python bench/pages.py            # 500 sequential + 1000 concurrent each
    .venv/bin/python bench/pages.py --quick    # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    ROOT,
    Deployment,
    HttpClient,
    ProcessProbe,
    common_arguments,
    fmt,
    gather_limited,
    latency_summary,
    loadavg,
    machine_info,
    manage,
    print_table,
    ratio,
    write_results,
)

PATHS = {"join_page": "/", "bare_view": "/bench/bare/"}


async def timed_get(port: int, path: str) -> float:
    started = time.perf_counter()
    response = await HttpClient(port).request("GET", path)
    if response.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {response.status}")
    return (time.perf_counter() - started) * 1000


async def sequential(port: int, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in PATHS}
    for _ in range(rounds):
        for name, path in PATHS.items():
            samples[name].append(await timed_get(port, path))
    return samples


async def concurrent(port: int, path: str, count: int, concurrency: int, probe) -> dict:
    probe.mark("c_start")
    started = time.perf_counter()
    results = await gather_limited(concurrency, (timed_get(port, path) for _ in range(count)))
    seconds = time.perf_counter() - started
    probe.mark("c_end")
    ok = [r for r in results if isinstance(r, float)]
    cpu = probe.between("c_start", "c_end")
    return {
        "requests": count,
        "concurrency": concurrency,
        "errors": count - len(ok),
        "requests_per_s": round(len(ok) / seconds, 1),
        "latency": latency_summary(ok),
        "server_cpu_ms_per_request": round(cpu / len(ok) * 1000, 2) if ok else None,
    }


async def measure_pages(deployment: Deployment, args) -> dict:
    probe = ProcessProbe(deployment.pid)
    await sequential(deployment.port, 20)  # warm up: imports, template and URL caches
    samples = await sequential(deployment.port, args.rounds)
    result = {name: {"sequential": latency_summary(ms)} for name, ms in samples.items()}
    for name, path in PATHS.items():
        result[name]["concurrent"] = await concurrent(
            deployment.port, path, args.requests, args.concurrency, probe
        )
    result["server_peak_rss_mib"] = round(probe.memory()["peak_rss_kib"] / 1024, 1)
    return result


# Runs inside a child process with the deployment's environment: the checks once, then the
# renderer alone (compliance.report.render_pdf with a ready result) several times.
RENDER_SNIPPET = r"""
import json, sys, time
sys.path.insert(0, ".")
import django
django.setup()
from compliance import report, runner
started = time.perf_counter()
result = runner.run_checks()
checks = time.perf_counter() - started
times = []
for _ in range(%(repeat)d):
    started = time.perf_counter()
    pdf = report.render_pdf(result)
    times.append(time.perf_counter() - started)
print(json.dumps({"checks": checks, "seconds": times, "bytes": len(pdf)}))
"""


def measure_pdf(deployment: Deployment, repeat: int) -> dict:
    if not (ROOT / "compliance" / "report.py").exists():
        return {"available": False, "note": "compliance/report.py does not exist yet"}
    result: dict = {"available": True}
    command_s = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            started = time.perf_counter()
            manage(deployment.env, "compliance_report", "--output", f"{tmp}/r{i}.pdf")
            command_s.append(time.perf_counter() - started)
        result["pdf_bytes"] = Path(f"{tmp}/r0.pdf").stat().st_size
    result["command_seconds"] = [round(s, 3) for s in command_s]
    result["command_median_s"] = round(sorted(command_s)[len(command_s) // 2], 3)
    snippet = RENDER_SNIPPET % {"repeat": repeat + 1}
    run = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if run.returncode == 0:
        rendered = json.loads(run.stdout.strip().splitlines()[-1])
        warm = rendered["seconds"][1:]  # the first call pays for font loading
        result["renderer"] = {
            "function": "compliance.report.render_pdf",
            "checks_s": round(rendered["checks"], 3),
            "first_call_s": round(rendered["seconds"][0], 3),
            "warm_seconds": [round(s, 3) for s in warm],
            "warm_median_s": round(sorted(warm)[len(warm) // 2], 3),
        }
    else:
        result["renderer"] = {"error": run.stderr.strip().splitlines()[-1:]}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, quick_help="smoke run: few requests, one PDF")
    parser.add_argument("--rounds", type=int, default=500, help="sequential requests each")
    parser.add_argument("--requests", type=int, default=1000, help="concurrent requests each")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pdf-repeat", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.concurrency, args.pdf_repeat = 20, 50, 10, 1
    deployment = Deployment(settings_module="bench.pages_settings")
    deployment.prepare()
    deployment.start()
    try:
        pages = asyncio.run(measure_pages(deployment, args))
    finally:
        errors = deployment.server_errors()
        deployment.stop()
    pdf = measure_pdf(deployment, args.pdf_repeat)
    join, bare = pages["join_page"], pages["bare_view"]
    data = {
        "benchmark": "pages",
        "machine": machine_info(),
        "config": {k: v for k, v in vars(args).items() if k != "json_path"},
        "pages": pages,
        "ratio": {
            "join/bare_p50": ratio(join["sequential"]["p50_ms"], bare["sequential"]["p50_ms"]),
            "join/bare_p99": ratio(join["sequential"]["p99_ms"], bare["sequential"]["p99_ms"]),
            "join/bare_requests_per_s": ratio(
                join["concurrent"]["requests_per_s"], bare["concurrent"]["requests_per_s"]
            ),
        },
        "pdf": pdf,
        "server_log_errors": errors[:20],
    }
    data["machine"]["loadavg_at_end"] = loadavg()
    rows = []
    for label, path in [
        ("sequential p50 (ms)", ("sequential", "p50_ms")),
        ("sequential p95 (ms)", ("sequential", "p95_ms")),
        ("sequential p99 (ms)", ("sequential", "p99_ms")),
        (f"requests/s at {args.concurrency} parallel", ("concurrent", "requests_per_s")),
        ("server CPU ms/request", ("concurrent", "server_cpu_ms_per_request")),
        ("errors", ("concurrent", "errors")),
    ]:
        rows.append((label, fmt(join[path[0]][path[1]], 2), fmt(bare[path[0]][path[1]], 2)))
    print_table("pages", rows, ("figure", "GET /", "bare view"))
    if pdf["available"]:
        renderer = pdf.get("renderer", {})
        print(
            f"\ncompliance PDF: command {pdf['command_median_s']} s (median of "
            f"{len(pdf['command_seconds'])}, process start and checks included); "
            f"checks {renderer.get('checks_s')} s; renderer warm "
            f"{renderer.get('warm_median_s', renderer)} s, first call "
            f"{renderer.get('first_call_s')} s; {pdf['pdf_bytes']} bytes"
        )
    else:
        print(f"\ncompliance PDF: {pdf['note']}")
    write_results("pages-quick" if args.quick else "pages", data, args.json_path)
    failed = join["concurrent"]["errors"] or bare["concurrent"]["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
