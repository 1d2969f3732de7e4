"""Signaling benchmark: the project's daphne against a bare `websockets` relay.

For each server: N concurrent calls are set up (HTTP join of patient and doctor,
WebSocket connect, admit, offer/answer, 20 candidates each way), then every connection
sends candidates at a fixed total message rate for a while; each message carries its
send time, so the peer measures the relay latency. Reported per server: set-up rate,
relay latency p50/p95/p99, messages/s, server CPU seconds (and CPU per relayed message),
peak RSS (all from /proc), errors; and the ratio project/baseline for each figure.

    .venv/bin/python bench/signaling.py            # 500 calls, 1000 msg/s for 20 s
    .venv/bin/python bench/signaling.py --redis    # also the project on Redis
    .venv/bin/python bench/signaling.py --quick    # smoke: 10 calls (make test)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    RESULTS,
    ROOT,
    Deployment,
    HttpClient,
    ProcessProbe,
    client_cpu_seconds,
    common_arguments,
    fmt,
    free_port,
    gather_limited,
    join_project,
    latency_summary,
    loadavg,
    machine_info,
    print_table,
    raise_fd_limit,
    ratio,
    write_results,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CANDIDATES = 20
# Chrome's frames are ~3-4 KiB for an audio+video+data offer; the exact text does not
# matter to a relay, its size and the fingerprint line do.
SDP = (
    "\r\n".join(
        [
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1 2",
            "a=extmap-allow-mixed",
            "a=msid-semantic: WMS stream",
        ]
        + [
            line
            for mid, kind in enumerate(["audio", "video", "application"])
            for line in [
                f"m={kind} 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
                "c=IN IP4 0.0.0.0",
                "a=rtcp:9 IN IP4 0.0.0.0",
                "a=ice-ufrag:Bv7q",
                "a=ice-pwd:Wm1ne0WqCN5Pr3yb1Gd3Tvc5",
                "a=ice-options:trickle",
                "a=fingerprint:sha-256 "
                + ":".join(f"{(i * 11) % 256:02X}" for i in range(32)),  # one certificate
                "a=setup:actpass",
                f"a=mid:{mid}",
                "a=sendrecv",
                "a=rtcp-mux",
            ]
            + [f"a=rtpmap:{pt} opus/48000/2" for pt in range(96, 110)]
            + [f"a=rtcp-fb:{pt} transport-cc" for pt in range(96, 110)]
        ]
    )
    + "\r\n"
)


def candidate(stamp_ns: int, seq: int) -> str:
    """A candidate frame whose ICE foundation (1-32 digits) carries the send time."""
    return json.dumps(
        {
            "type": "candidate",
            "candidate": {
                "candidate": f"candidate:{stamp_ns} 1 udp 2122260223 127.0.0.1 "
                f"{40000 + seq % 20000} typ host generation 0 ufrag Bv7q network-id 1",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
                "usernameFragment": "Bv7q",
            },
        }
    )


def stamp_of(message: dict) -> int | None:
    try:
        return int(message["candidate"]["candidate"].split()[0].split(":", 1)[1])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


# --- Servers under test ---------------------------------------------------------------


class ProjectTarget:
    """The project's `manage.py serve`, in-process layers or Redis."""

    def __init__(self, label: str, redis: bool, doctors: bool = True, settings: str | None = None):
        self.label = label
        self.deployment = Deployment(redis=redis, settings_module=settings)
        self.doctors = doctors
        self.calls: list[dict] = []

    def start(self, calls: int) -> None:
        self.deployment.prepare()
        self.calls = self.deployment.provision(calls, doctor_sessions=self.doctors)
        self.deployment.start()

    @property
    def port(self) -> int:
        return self.deployment.port

    @property
    def pid(self) -> int:
        return self.deployment.pid

    async def join(self, index: int, role: str) -> dict:
        call = self.calls[index]
        if role == "patient":
            return await join_project(self.port, call["patient_code"], f"Patientin {index}")
        return await join_project(self.port, call["doctor_code"], "", call["doctor_cookies"])

    def stop(self) -> list[str]:
        errors = self.deployment.server_errors()
        self.deployment.stop()
        return errors


class BaselineTarget:
    label = "baseline"

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, calls: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "baseline_relay.py"), "--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("baseline relay did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    async def join(self, index: int, role: str) -> dict:
        client = HttpClient(self.port)
        response = await client.request(
            "GET", f"/join?code=call{index}.{role}&name=Patientin+{index}"
        )
        if response.status != 302:
            raise RuntimeError(f"baseline join: HTTP {response.status}")
        return client.cookies

    def stop(self) -> list[str]:
        self.process.terminate()
        _, stderr = self.process.communicate(timeout=10)
        return [line for line in stderr.decode().splitlines() if "Error" in line]


# --- Calls ----------------------------------------------------------------------------


class SetupError(Exception):
    pass


@dataclass
class Call:
    doctor: ClientConnection
    patient: ClientConnection
    setup_ms: float


@dataclass
class Tally:
    errors: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    received: int = 0


async def open_socket(port: int, cookies: dict) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}/ws/call/",
        origin=f"http://127.0.0.1:{port}",
        additional_headers=[("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))],
        compression=None,
        max_size=256 * 1024,
        open_timeout=120,
        close_timeout=5,
    )


async def expect(socket: ClientConnection, kind: str, timeout: float = 60) -> dict:
    """Read until a message of `kind`; a server error message fails the call."""
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message.get("type") == kind:
            return message
        if message.get("type") == "error":
            raise SetupError(f"server error {message.get('code')} while waiting for {kind}")


async def trickle(sender: ClientConnection, receiver: ClientConnection, seq: int) -> None:
    for i in range(CANDIDATES):
        await sender.send(candidate(time.perf_counter_ns(), seq + i))
    for _ in range(CANDIDATES):
        await expect(receiver, "candidate")


async def set_up_call(target, index: int) -> Call:
    started = time.perf_counter()
    patient_cookies = await target.join(index, "patient")
    doctor_cookies = await target.join(index, "doctor")
    patient = await open_socket(target.port, patient_cookies)
    await expect(patient, "welcome")
    await expect(patient, "waiting")
    doctor = await open_socket(target.port, doctor_cookies)
    await expect(doctor, "welcome")
    await expect(doctor, "peer-waiting")
    await doctor.send(json.dumps({"type": "admit"}))
    await asyncio.gather(expect(doctor, "admitted"), expect(patient, "admitted"))
    await doctor.send(json.dumps({"type": "offer", "sdp": SDP}))
    await expect(patient, "offer")
    await patient.send(json.dumps({"type": "answer", "sdp": SDP}))
    await expect(doctor, "answer")
    await asyncio.gather(trickle(doctor, patient, 0), trickle(patient, doctor, CANDIDATES))
    return Call(doctor, patient, (time.perf_counter() - started) * 1000)


async def reader(socket: ClientConnection, tally: Tally, closed_ok: asyncio.Event) -> None:
    try:
        async for raw in socket:
            now = time.perf_counter_ns()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "candidate":
                stamp = stamp_of(message)
                tally.received += 1
                if stamp is not None:
                    tally.latencies_ms.append((now - stamp) / 1e6)
            elif kind == "error":
                tally.errors[f"error:{message.get('code')}"] += 1
            elif not (kind == "peer-left" and closed_ok.is_set()):  # hanging up at the end
                tally.errors[f"unexpected:{kind}"] += 1
    except ConnectionClosed as exc:
        if not closed_ok.is_set():
            tally.errors[f"closed:{exc.rcvd.code if exc.rcvd else 'abnormal'}"] += 1


async def sender(socket: ClientConnection, interval: float, until: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, interval))  # spread the phases
    due, seq = loop.time(), 0
    while due < until:
        try:
            await socket.send(candidate(time.perf_counter_ns(), seq))
        except ConnectionClosed:
            return
        tally.sent += 1
        seq += 1
        due += interval
        await asyncio.sleep(max(0.0, due - loop.time()))


# --- One server's run -----------------------------------------------------------------


def start_profiler(target, args, phase: str) -> subprocess.Popen | None:
    """py-spy on the server for one phase (collapsed stacks; see bench/profile_summary.py)."""
    if not args.profile:
        return None
    output = RESULTS / f"profile-{target.label}-{phase}.txt"
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(target.pid),
        "--rate",
        "250",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(output),
    ]
    if phase == "steady":
        command += ["--duration", str(int(args.duration))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run_target(target, args) -> dict:
    probe = ProcessProbe(target.pid)
    probe.mark("start")
    client_start = client_cpu_seconds()
    setup_profiler = start_profiler(target, args, "setup")
    started = time.perf_counter()
    results = await gather_limited(
        args.setup_concurrency, (set_up_call(target, i) for i in range(args.calls))
    )
    setup_s = time.perf_counter() - started
    probe.mark("setup")
    if setup_profiler:
        setup_profiler.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        setup_profiler.wait(timeout=60)
    calls = [r for r in results if isinstance(r, Call)]
    tally = Tally()
    for failure in (r for r in results if not isinstance(r, Call)):
        tally.errors[f"setup:{type(failure).__name__}:{str(failure)[:60]}"] += 1

    sockets = [s for call in calls for s in (call.doctor, call.patient)]
    closed_ok = asyncio.Event()
    readers = [asyncio.create_task(reader(s, tally, closed_ok)) for s in sockets]
    loop = asyncio.get_running_loop()
    interval = len(sockets) / args.rate if sockets else 1.0
    steady_client_start = client_cpu_seconds()
    profiler = start_profiler(target, args, "steady")
    probe.mark("steady_start")
    phase_start = time.perf_counter()
    until = loop.time() + args.duration
    await asyncio.gather(*(sender(s, interval, until, tally) for s in sockets))
    await asyncio.sleep(args.grace)  # let in-flight messages arrive
    phase_s = time.perf_counter() - phase_start
    probe.mark("steady_end")
    if profiler:
        profiler.wait(timeout=60)
    steady_client_cpu = client_cpu_seconds() - steady_client_start
    memory = probe.memory()
    closed_ok.set()
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    lost = tally.sent - tally.received
    if lost > 0:
        tally.errors["lost"] += lost
    steady_cpu = probe.between("steady_start", "steady_end")
    return {
        "calls_requested": args.calls,
        "calls_set_up": len(calls),
        "setup_seconds": round(setup_s, 3),
        "setup_calls_per_s": round(len(calls) / setup_s, 1) if setup_s else None,
        "setup_ms": latency_summary([c.setup_ms for c in calls]),
        "relay_latency": latency_summary(tally.latencies_ms),
        "messages_sent": tally.sent,
        "messages_relayed": tally.received,
        "messages_per_s": round(tally.received / (phase_s - args.grace), 1),
        "server_cpu_s": {
            "setup": probe.between("start", "setup"),
            "steady": steady_cpu,
            "total": probe.between("start", "steady_end"),
        },
        "server_cpu_us_per_message": (
            round(steady_cpu / tally.received * 1e6, 1) if tally.received else None
        ),
        "server_rss_mib": round(memory["rss_kib"] / 1024, 1),
        "server_peak_rss_mib": round(memory["peak_rss_kib"] / 1024, 1),
        "client_cpu_s": {
            "total": round(client_cpu_seconds() - client_start, 3),
            "steady": round(steady_client_cpu, 3),
        },
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors.most_common(10)),
    }


RATIO_KEYS = {
    "setup_calls_per_s": ("setup_calls_per_s",),
    "setup_p50_ms": ("setup_ms", "p50_ms"),
    "relay_p50_ms": ("relay_latency", "p50_ms"),
    "relay_p95_ms": ("relay_latency", "p95_ms"),
    "relay_p99_ms": ("relay_latency", "p99_ms"),
    "messages_per_s": ("messages_per_s",),
    "server_cpu_s_total": ("server_cpu_s", "total"),
    "server_cpu_us_per_message": ("server_cpu_us_per_message",),
    "server_peak_rss_mib": ("server_peak_rss_mib",),
}


def dig(data: dict, path: tuple[str, ...]):
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def ratios(ours: dict, base: dict) -> dict:
    return {name: ratio(dig(ours, path), dig(base, path)) for name, path in RATIO_KEYS.items()}


def report(servers: dict[str, dict], ratio_sets: dict[str, dict]) -> None:
    names = list(servers)
    rows = [
        (
            label,
            *(fmt(dig(servers[n], path)) for n in names),
            *(fmt(ratio_sets[r].get(key), 2) for r in ratio_sets),
        )
        for label, key, path in [
            ("set-up rate (calls/s)", "setup_calls_per_s", ("setup_calls_per_s",)),
            ("set-up per call p50 (ms)", "setup_p50_ms", ("setup_ms", "p50_ms")),
            ("relay latency p50 (ms)", "relay_p50_ms", ("relay_latency", "p50_ms")),
            ("relay latency p95 (ms)", "relay_p95_ms", ("relay_latency", "p95_ms")),
            ("relay latency p99 (ms)", "relay_p99_ms", ("relay_latency", "p99_ms")),
            ("messages/s relayed", "messages_per_s", ("messages_per_s",)),
            ("server CPU s (total)", "server_cpu_s_total", ("server_cpu_s", "total")),
            ("server CPU µs/message", "server_cpu_us_per_message", ("server_cpu_us_per_message",)),
            ("server peak RSS (MiB)", "server_peak_rss_mib", ("server_peak_rss_mib",)),
            ("errors", "errors", ("errors",)),
        ]
    ]
    print_table("signaling benchmark", rows, ("figure", *names, *ratio_sets))
    for name in names:
        if servers[name]["error_kinds"]:
            print(f"  {name} errors: {servers[name]['error_kinds']}")


async def measure(target, args) -> dict:
    target.start(args.calls)
    try:
        result = await run_target(target, args)
    finally:
        server_errors = target.stop()
    result["server_log_errors"] = server_errors[:20]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, quick_help="smoke run: 10 calls, 2 s steady phase")
    parser.add_argument("--calls", type=int, default=500, help="concurrent calls (500)")
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="steady phase: total relayed messages per second (1000)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="steady phase seconds")
    parser.add_argument("--grace", type=float, default=2.0, help="wait for stragglers (s)")
    parser.add_argument(
        "--setup-concurrency", type=int, default=50, help="calls being set up at the same time (50)"
    )
    parser.add_argument(
        "--redis", action="store_true", help="also run the project with its own redis-server"
    )
    parser.add_argument(
        "--only",
        help="comma-separated servers to run: project, project_redis (implies --redis), baseline",
    )
    parser.add_argument(
        "--settings",
        help="DJANGO_SETTINGS_MODULE for the project's server (A/B runs of a change; "
        "the module must be importable with the repository root on PYTHONPATH)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of set-up and steady phase into "
        "bench/results/profile-*.txt (figures then include its overhead)",
    )
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rate, args.duration, args.grace = 10, 100.0, 2.0, 1.0
    per_connection = args.rate / (2 * args.calls)
    if per_connection > 8:
        parser.error("more than 8 frames/s per connection would hit the 100-per-10-s limit")
    raise_fd_limit(8 * args.calls + 1024)

    wanted = set((args.only or "project,baseline").split(","))
    if args.redis and not args.only:
        wanted.add("project_redis")
    targets = [
        (name, make)
        for name, make in [
            ("project", lambda: ProjectTarget("project", False, True, args.settings)),
            ("project_redis", lambda: ProjectTarget("project_redis", True, True, args.settings)),
            ("baseline", BaselineTarget),
        ]
        if name in wanted
    ]
    if not targets:
        parser.error("--only names none of: project, project_redis, baseline")

    data = {
        "benchmark": "signaling",
        "machine": machine_info(),
        "config": {k: v for k, v in vars(args).items() if k != "json_path"},
        "servers": {},
        "ratio": {},
    }
    for name, make in targets:
        print(
            f"running {name}: {args.calls} calls, {args.rate:g} msg/s for {args.duration:g} s",
            flush=True,
        )
        data["servers"][name] = asyncio.run(measure(make(), args))
    base = data["servers"].get("baseline")
    for name in data["servers"]:
        if name != "baseline" and base:
            data["ratio"][f"{name}/baseline"] = ratios(data["servers"][name], base)
    data["machine"]["loadavg_at_end"] = loadavg()
    report(data["servers"], data["ratio"])
    write_results("signaling-quick" if args.quick else "signaling", data, args.json_path)
    failed = [n for n, s in data["servers"].items() if s["calls_set_up"] == 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
