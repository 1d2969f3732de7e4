"""Shared harness for the benchmark scripts: deployments, process figures, HTTP, output.

The benchmarks drive a real `manage.py serve` (daphne) child process over loopback,
exactly as a browser would, and read the server's CPU time and memory from /proc.
Nothing here is a test: the scripts print figures; `tests/test_bench_smoke.py` only
checks that they still run (`--quick`).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from live import ServeProcess, embedded_env, manage, manage_json  # noqa: E402
from testservices import RedisServer, free_port  # noqa: E402

__all__ = [
    "ROOT",
    "Deployment",
    "HttpClient",
    "ProcessProbe",
    "RedisServer",
    "ServeProcess",
    "free_port",
    "raise_fd_limit",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- Process figures from /proc -------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                values[key] = int(rest.split()[0])
    return {"rss_kib": values.get("VmRSS", 0), "peak_rss_kib": values.get("VmHWM", 0)}


@dataclass
class ProcessProbe:
    """CPU seconds of a server process (or of several, summed) between named marks."""

    pid: int | list[int]
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        return self.pid if isinstance(self.pid, list) else [self.pid]

    def mark(self, name: str) -> float:
        self.marks[name] = sum(cpu_seconds(pid) for pid in self.pids)
        return self.marks[name]

    def between(self, start: str, end: str) -> float:
        return round(self.marks[end] - self.marks[start], 3)

    def memory(self) -> dict[str, int]:
        """Summed over the processes (peak: the sum of each one's peak)."""
        figures = [memory_kib(pid) for pid in self.pids]
        return {key: sum(f[key] for f in figures) for key in ("rss_kib", "peak_rss_kib")}


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(max(wanted, soft), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- Figures --------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency_summary(ms: list[float]) -> dict[str, float | int | None]:
    def r(value):
        return None if value is None else round(value, 3)

    return {
        "count": len(ms),
        "p50_ms": r(percentile(ms, 0.50)),
        "p95_ms": r(percentile(ms, 0.95)),
        "p99_ms": r(percentile(ms, 0.99)),
        "max_ms": r(max(ms) if ms else None),
        "mean_ms": r(statistics.fmean(ms) if ms else None),
    }


def ratio(ours: float | None, base: float | None) -> float | None:
    if ours is None or base in (None, 0):
        return None
    return round(ours / base, 2)


def machine_info() -> dict:
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": loadavg(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        cells = [str(c).rjust(w) for c, w in zip(row, widths, strict=True)]
        cells[0] = str(row[0]).ljust(widths[0])
        print("  ".join(cells))


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_results(name: str, data: dict, path: str | None = None) -> Path:
    target = Path(path) if path else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    print(f"\nresults written to {target}")
    return target


# --- A throw-away deployment of the project -------------------------------------------


class Deployment:
    """Its own SQLite database and var dir; optionally its own redis-server and several
    server processes (which then meet through that Redis, as behind nginx)."""

    def __init__(
        self, *, redis: bool = False, settings_module: str | None = None, processes: int = 1
    ):
        self.workdir = Path(tempfile.mkdtemp(prefix="redconnect-bench-"))
        self.ports = [free_port() for _ in range(processes)]
        self.port = self.ports[0]
        self.redis = RedisServer().start() if redis else None
        extra = {
            "PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "DEMO_PASSWORD": secrets.token_urlsafe(16),
        }
        if self.redis:
            extra["REDIS_URL"] = self.redis.url
        if settings_module:
            extra["DJANGO_SETTINGS_MODULE"] = settings_module
            extra["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])
            )
        self.env = embedded_env(self.workdir, **extra)
        self.servers: list[ServeProcess] = []

    def prepare(self) -> dict:
        manage(self.env, "migrate", "-v0")
        return manage_json(self.env, "seed_demo")

    def provision(self, calls: int, *, doctor_sessions: bool = True) -> list[dict]:
        """Appointments (and logged-in doctor sessions) created in one child process."""
        result = subprocess.run(
            [sys.executable, str(BENCH / "_provision.py"), str(calls)]
            + ([] if doctor_sessions else ["--no-sessions"]),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"provisioning failed:\n{result.stderr}")
        return json.loads(result.stdout)

    def start(self) -> ServeProcess:
        for port in self.ports:
            self.servers.append(ServeProcess(self.env, port=port).start(timeout=60))
        return self.servers[0]

    @property
    def server(self) -> ServeProcess | None:
        return self.servers[0] if self.servers else None

    @property
    def pid(self) -> int:
        return self.servers[0].process.pid

    @property
    def pids(self) -> list[int]:
        return [server.process.pid for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.redis:
            self.redis.stop()

    def server_errors(self) -> list[str]:
        """Tracebacks and ERROR lines the servers printed (never content: they log none)."""
        return [
            line
            for server in self.servers
            for line in server.output().splitlines()
            if " ERROR " in line or line.startswith("Traceback")
        ]


# --- A small asyncio HTTP/1.1 client (stdlib only) ------------------------------------

CSRF_FIELD = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class HttpClient:
    """One browser-like client: a cookie jar and one request per connection."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None):
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.cookies: dict[str, str] = dict(cookies or {})

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def request(
        self, method: str, path: str, form: dict[str, str] | None = None, timeout: float = 60
    ) -> HttpResponse:
        return await asyncio.wait_for(self._request(method, path, form), timeout)

    async def _request(self, method: str, path: str, form: dict[str, str] | None):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            body = urlencode(form).encode() if form is not None else b""
            lines = [
                f"{method} {path} HTTP/1.1",
                f"Host: 127.0.0.1:{self.port}",
                "Connection: close",
                "Accept-Language: de",
                "User-Agent: redconnect-bench",
            ]
            if self.cookies:
                lines.append(f"Cookie: {self.cookie_header()}")
            if form is not None:
                lines += [
                    f"Origin: {self.origin}",
                    f"Referer: {self.origin}{path}",
                    "Content-Type: application/x-www-form-urlencoded",
                    f"Content-Length: {len(body)}",
                ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        return self._parse(raw)

    def _parse(self, raw: bytes) -> HttpResponse:
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = [tuple(h.split(":", 1)) for h in header_lines if ":" in h]
        headers = [(k.strip(), v.strip()) for k, v in headers]
        for key, value in headers:
            if key.lower() == "set-cookie":
                self._store_cookie(value)
        if any(k.lower() == "transfer-encoding" and "chunked" in v for k, v in headers):
            body = _unchunk(body)
        return HttpResponse(int(status_line.split()[1]), headers, body)

    def _store_cookie(self, value: str) -> None:
        pair, *attributes = value.split(";")
        name, _, cookie = pair.strip().partition("=")
        expired = any(
            a.strip().lower().startswith(("max-age=0", "expires=thu, 01 jan 1970"))
            for a in attributes
        )
        if expired:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = cookie

    async def get_form_token(self, path: str = "/") -> str:
        response = await self.request("GET", path)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        match = CSRF_FIELD.search(response.body)
        if not match:
            raise RuntimeError(f"GET {path}: no CSRF token in the form")
        return match.group(1).decode()

    async def submit(self, path: str, fields: dict[str, str]) -> HttpResponse:
        token = await self.get_form_token(path)
        return await self.request("POST", path, {**fields, "csrfmiddlewaretoken": token})


def _unchunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def join_project(port: int, code: str, name: str, cookies: dict | None = None) -> dict:
    """The join form as a browser submits it; returns the cookies the call page gets."""
    client = HttpClient(port, cookies)
    response = await client.submit("/", {"name": name, "code": code, "consent": "on"})
    if response.status != 302 or not (response.header("Location") or "").endswith("/call/"):
        raise RuntimeError(f"join refused: HTTP {response.status}")
    return client.cookies


async def gather_limited(limit: int, jobs: Iterable) -> list:
    """Run coroutines with at most `limit` in flight; exceptions are returned, not raised."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job):
        async with semaphore:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)


def common_arguments(parser, *, quick_help: str) -> None:
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", dest="json_path", help="where to write the JSON results")


def elapsed(since: float) -> float:
    return round(time.perf_counter() - since, 3)
