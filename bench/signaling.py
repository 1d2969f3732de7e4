"""Signaling benchmark: the project's daphne against a bare `websockets` relay and peerjs.

For each server: N concurrent calls are set up (HTTP join of patient and doctor,
WebSocket connect, admit, offer/answer, 20 candidates each way), then every connection
sends candidates at a fixed total message rate for a while; each message carries its
send time, so the peer measures the relay latency. Reported per server: set-up rate,
relay latency p50/p95/p99, messages/s, server CPU seconds (and CPU per relayed message),
peak RSS (all from /proc, summed over a deployment's processes), errors; the steady
phase's stalls (late messages grouped) and the load generator's own collector pauses
(frozen out of the phase, `CollectorPauses`); and the ratio of each server to the bare
relay (`baseline`) for each figure.

Servers (`--only a,b,…`):
  project             embedded default, in-process layer, one process
  project_redis       Redis deployment (signaling.layers.LocalFirstRedisChannelLayer), one process
  redis_2p_spread     the same with two processes; every call's doctor on one process and
                      its patient on the other, so every relayed message crosses Redis
  redis_2p_colocated  two processes, both participants of a call on the same one (what the
                      routing key and nginx `hash … consistent` give); calls alternate
  redis_2p_nginx      two processes behind nginx with docs/deployment.md's upstreams: the
                      WebSockets carry the call page's routing key and nginx places them
                      (joins go straight to the processes, alternating); reports where the
                      calls landed and nginx's own CPU (not in the server CPU figures)
  project_conn0, project_redis_conn0
                      project / project_redis with a new database connection per request
                      (`CONN_MAX_AGE` 0, before issue 14 item 3)
  redis_core          one process on channels_redis' RedisChannelLayer (before issue 14)
  project_redis_unbatched, redis_2p_spread_unbatched
                      our layer without batched cross-process sends (one Lua round trip per
                      send, the pump on ZPOPMIN + BZPOPMIN, Fernet): the layer before batching
  redis_2p_spread_fernet  today's layer (batched) with Fernet instead of AES-GCM
  core_2p_spread      … and with two processes, spread
  redis_pubsub        one process on channels_redis' RedisPubSubChannelLayer
  pubsub_2p_spread    … and with two processes, spread
  baseline            bench/baseline_relay.py, a bare relay on `websockets` (same protocol)
  peerjs              peerjs-server (npm `peer`, installed into a temp dir on first use)
Two-process deployments are offered --rate per process (twice the total).

    .venv/bin/python bench/signaling.py            # 500 calls, 1000 msg/s for 20 s
    .venv/bin/python bench/signaling.py --redis    # also the Redis deployments (1 and 2 processes)
    .venv/bin/python bench/signaling.py --redis --layers --peerjs   # everything side by side
    .venv/bin/python bench/signaling.py --quick    # smoke: 10 calls (make test)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import signal
import socket as socketlib
import statistics
import subprocess
import sys
import tempfile
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
    cpu_seconds,
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

sys.path.insert(0, str(ROOT))
from tests.support.nginxproxy import proxy_config
from tests.support.tlsserver import run_nginx

CANDIDATES = 20
CORE = "bench.settings_core"  # channels_redis' RedisChannelLayer (before issue 14)
PUBSUB = "bench.settings_pubsub"  # channels_redis' RedisPubSubChannelLayer
UNBATCHED = "bench.settings_unbatched"  # our layer, one round trip per cross-process send
FERNET = "bench.settings_fernet"  # our layer, batched, Fernet instead of AES-GCM
CONN0 = "bench.settings_conn_per_request"  # a new database connection per request
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
    """The project's `manage.py serve`, in-process layers or Redis, one or more processes.

    placement (several processes): "spread" puts call i's patient on process i and its
    doctor on process i + 1 (every call crosses processes), "colocated" both on process i.
    """

    def __init__(
        self,
        label: str,
        redis: bool,
        doctors: bool = True,
        settings: str | None = None,
        processes: int = 1,
        placement: str = "spread",
    ):
        self.label = label
        self.deployment = Deployment(redis=redis, settings_module=settings, processes=processes)
        self.doctors = doctors
        self.processes = processes
        self.placement = placement
        self.calls: list[dict] = []

    def port_for(self, index: int, role: str) -> int:
        ports = self.deployment.ports
        shift = 1 if (role == "doctor" and self.placement == "spread") else 0
        return ports[(index + shift) % len(ports)]

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

    @property
    def pids(self) -> list[int]:
        return self.deployment.pids

    async def join(self, index: int, role: str) -> dict:
        call = self.calls[index]
        port = self.port_for(index, role)
        if role == "patient":
            return await join_project(port, call["patient_code"], f"Patientin {index}")
        return await join_project(port, call["doctor_code"], "", call["doctor_cookies"])

    def stop(self) -> list[str]:
        errors = self.deployment.server_errors()
        self.deployment.stop()
        return errors


class NginxTarget(ProjectTarget):
    """Two Redis processes behind nginx configured from the deployment guide: the call's
    WebSockets go through nginx with the page's routing key, so the placement is nginx's
    `hash $arg_r consistent`, not the benchmark's."""

    def __init__(self, label: str, settings: str | None = None, processes: int = 2):
        super().__init__(label, True, True, settings, processes)
        self.proxy_port = free_port()
        self.proxy = None
        self.nginx: subprocess.Popen | None = None
        self.nginx_cpu_start = 0.0

    def start(self, calls: int) -> None:
        super().start(calls)
        prefix = self.deployment.workdir / "nginx"
        config = proxy_config(prefix, self.proxy_port, self.deployment.ports, 4 * calls + 256)
        self.proxy = run_nginx(prefix, self.proxy_port, config)
        self.nginx = self.proxy.__enter__()
        self.nginx_cpu_start = cpu_seconds(self.nginx.pid)

    def port_for(self, index: int, role: str) -> int:
        return self.proxy_port  # the WebSockets; joins: join_port

    def query_for(self, index: int) -> str:
        return self.calls[index]["ws_query"]

    async def join(self, index: int, role: str) -> dict:
        call = self.calls[index]
        port = self.deployment.ports[index % len(self.deployment.ports)]
        if role == "patient":
            return await join_project(port, call["patient_code"], f"Patientin {index}")
        return await join_project(port, call["doctor_code"], "", call["doctor_cookies"])

    def after_setup(self) -> dict:
        """Where nginx put the calls: each member of a call's group is a channel name
        `specific.<process prefix>!…` (signaling.layers)."""
        import redis

        client = redis.Redis.from_url(self.deployment.redis.url)
        per_process: Counter = Counter()
        split = 0
        try:
            for call in self.calls:
                members = client.zrange(call["group_key"], 0, -1)
                processes = {m.decode().split("!", 1)[0] for m in members}
                split += len(processes) > 1
                per_process.update(processes)
        finally:
            client.close()
        return {"calls_per_process": sorted(per_process.values()), "split_calls": split}

    def stop(self) -> list[str]:
        errors = []
        if self.proxy is not None:
            self.nginx_cpu_s = round(cpu_seconds(self.nginx.pid) - self.nginx_cpu_start, 3)
            self.proxy.__exit__(None, None, None)
            log = self.deployment.workdir / "nginx" / "error.log"
            errors = [line for line in log.read_text().splitlines() if "[error]" in line]
        return errors + super().stop()


class BaselineTarget:
    label = "baseline"
    processes = 1

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

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def port_for(self, index: int, role: str) -> int:
        return self.port

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


PEERJS_VERSION = "1.0.2"  # npm `peer`: peerjs-server, the most-used open-source signaling server
PEERJS_KINDS = {"offer": "OFFER", "answer": "ANSWER", "candidate": "CANDIDATE"}


def install_peerjs() -> Path:
    """peerjs-server from the npm registry into a temp dir (reused between runs, never
    part of the repository); returns its start script."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"the peerjs target needs {tool} (Debian: nodejs, npm)")
    prefix = Path(tempfile.gettempdir()) / f"redconnect-bench-peerjs-{PEERJS_VERSION}"
    script = prefix / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"
    if not script.exists():
        print(f"installing peer@{PEERJS_VERSION} into {prefix}", flush=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"peer@{PEERJS_VERSION}",
            ],
            check=True,
            timeout=600,
        )
    return script


class PeerjsSocket:
    """A peerjs client connection that speaks our frames: sends wrap them in peerjs'
    envelope addressed to the peer, reads unwrap them (the reader does the same)."""

    def __init__(self, connection: ClientConnection):
        self.connection = connection
        self.peer = ""

    async def send(self, text: str) -> None:
        if text.startswith('{"type": "candidate"'):
            kind = "CANDIDATE"
        else:
            kind = PEERJS_KINDS[json.loads(text)["type"]]
        await self.connection.send(f'{{"type":"{kind}","dst":"{self.peer}","payload":{text}}}')

    async def recv(self) -> str:
        while True:
            message = json.loads(await self.connection.recv())
            if "payload" in message:
                return json.dumps(message["payload"])
            if message.get("type") in {"ERROR", "ID-TAKEN", "EXPIRE"}:
                return json.dumps({"type": "error", "code": message["type"]})

    def __aiter__(self):
        return self.connection.__aiter__()

    async def close(self) -> None:
        await self.connection.close()


class PeerjsTarget:
    """peerjs-server on node: no join, no admission; a call is two peers that relay
    offer/answer/candidates to each other by id (what its clients do)."""

    label = "peerjs"
    processes = 1

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, calls: int) -> None:
        script = install_peerjs()
        version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
        print(f"peerjs {PEERJS_VERSION} on node {version.strip()}", flush=True)
        self.process = subprocess.Popen(
            [
                "node",
                str(script),
                "--port",
                str(self.port),
                "--host",
                "127.0.0.1",
                "--alive_timeout",
                "3600000",
                "--concurrent_limit",
                "100000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"peerjs exited: {self.process.stderr.read().decode()[-500:]}")
            try:
                socketlib.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("peerjs did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    async def _open(self, peer_id: str) -> PeerjsSocket:
        connection = await connect(
            f"ws://127.0.0.1:{self.port}/peerjs?key=peerjs&id={peer_id}&token=t{peer_id}",
            compression=None,
            max_size=256 * 1024,
            open_timeout=120,
            close_timeout=5,
        )
        opened = json.loads(await asyncio.wait_for(connection.recv(), 60))
        if opened.get("type") != "OPEN":
            raise SetupError(f"peerjs answered {opened.get('type')}")
        return PeerjsSocket(connection)

    async def set_up_call(self, index: int) -> Call:
        started = time.perf_counter()
        patient = await self._open(f"pat{index}")
        doctor = await self._open(f"doc{index}")
        doctor.peer, patient.peer = f"pat{index}", f"doc{index}"
        await doctor.send(json.dumps({"type": "offer", "sdp": SDP}))
        await expect(patient, "offer")
        await patient.send(json.dumps({"type": "answer", "sdp": SDP}))
        await expect(doctor, "answer")
        await asyncio.gather(trickle(doctor, patient, 0), trickle(patient, doctor, CANDIDATES))
        return Call(doctor, patient, (time.perf_counter() - started) * 1000)

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
    slow: list[tuple[int, float]] = field(default_factory=list)  # (arrival ns, ms) > SLOW_MS
    sent: int = 0
    received: int = 0


async def open_socket(port: int, cookies: dict, query: str = "") -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}/ws/call/" + (f"?{query}" if query else ""),
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
    query = target.query_for(index) if hasattr(target, "query_for") else ""
    patient = await open_socket(target.port_for(index, "patient"), patient_cookies, query)
    await expect(patient, "welcome")
    await expect(patient, "waiting")
    doctor = await open_socket(target.port_for(index, "doctor"), doctor_cookies, query)
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


# What a socket may still hear while the calls are hung up at the end, in whichever order
# the two sides close: the other one leaving (`participant-left`, then `peer-left`), and,
# for a patient whose doctor left first, being back in the waiting room.
HANG_UP_EVENTS = frozenset({"peer-left", "participant-left", "waiting"})


async def reader(socket: ClientConnection, tally: Tally, closed_ok: asyncio.Event) -> None:
    try:
        async for raw in socket:
            now = time.perf_counter_ns()
            message = json.loads(raw)
            if "payload" in message:  # peerjs: {"type", "src", "dst", "payload": our frame}
                message = message["payload"]
            kind = message.get("type")
            if kind == "candidate":
                stamp = stamp_of(message)
                tally.received += 1
                if stamp is not None:
                    latency_ms = (now - stamp) / 1e6
                    tally.latencies_ms.append(latency_ms)
                    if latency_ms > SLOW_MS:
                        tally.slow.append((now, latency_ms))
            elif kind == "error":
                tally.errors[f"error:{message.get('code')}"] += 1
            elif not (kind in HANG_UP_EVENTS and closed_ok.is_set()):
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
    if args.profile_gil:
        command.append("--gil")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SLOW_MS = 20.0  # a relayed message this late counts towards a stall


def stalls(slow: list[tuple[int, float]], phase_start_ns: int, gap_s: float = 0.5) -> list[dict]:
    """Late messages grouped into stalls (no two late arrivals of one stall further apart
    than gap_s), the largest first: a tail made by a few stalls reads differently from
    one spread over the whole phase."""
    groups: list[list[tuple[int, float]]] = []
    for arrival, ms in sorted(slow):
        if groups and arrival - groups[-1][-1][0] <= gap_s * 1e9:
            groups[-1].append((arrival, ms))
        else:
            groups.append([(arrival, ms)])
    found = [
        {
            "at_s": round((group[0][0] - phase_start_ns) / 1e9, 2),
            "lasted_s": round((group[-1][0] - group[0][0]) / 1e9, 2),
            "late_messages": len(group),
            "max_ms": round(max(ms for _, ms in group), 1),
        }
        for group in groups
    ]
    return sorted(found, key=lambda stall: -stall["late_messages"])[:5]


class CollectorPauses:
    """The load generator's own garbage-collector pauses: a pause here delays every message
    in flight as if the server had stalled, so the steady phase keeps them short and
    reports them.

    What the set-up left (sockets, earlier results) is frozen for the phase (`gc.freeze`):
    an old-generation scan of it paused the client for 66–68 ms in a round of the bare
    relay and of peerjs, and made that round's ratios look better than they were.
    """

    def __init__(self):
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def __enter__(self) -> CollectorPauses:
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._record)
        return self

    def __exit__(self, *_exc) -> None:
        gc.callbacks.remove(self._record)
        gc.unfreeze()

    def _record(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)

    def summary(self) -> dict:
        return {
            "count": len(self.pauses_ms),
            "max_ms": round(max(self.pauses_ms, default=0.0), 1),
            "total_ms": round(sum(self.pauses_ms), 1),
        }


async def run_target(target, args) -> dict:
    probe = ProcessProbe(target.pids)
    probe.mark("start")
    client_start = client_cpu_seconds()
    setup_profiler = start_profiler(target, args, "setup")
    started = time.perf_counter()
    set_up = getattr(target, "set_up_call", None) or (lambda i: set_up_call(target, i))
    results = await gather_limited(args.setup_concurrency, (set_up(i) for i in range(args.calls)))
    setup_s = time.perf_counter() - started
    probe.mark("setup")
    if setup_profiler:
        setup_profiler.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        setup_profiler.wait(timeout=60)
    calls = [r for r in results if isinstance(r, Call)]
    placement = target.after_setup() if hasattr(target, "after_setup") else None
    tally = Tally()
    for failure in (r for r in results if not isinstance(r, Call)):
        tally.errors[f"setup:{type(failure).__name__}:{str(failure)[:60]}"] += 1

    sockets = [s for call in calls for s in (call.doctor, call.patient)]
    closed_ok = asyncio.Event()
    readers = [asyncio.create_task(reader(s, tally, closed_ok)) for s in sockets]
    loop = asyncio.get_running_loop()
    rate = args.rate * target.processes  # --rate is per server process
    interval = len(sockets) / rate if sockets else 1.0
    steady_client_start = client_cpu_seconds()
    profiler = start_profiler(target, args, "steady")
    probe.mark("steady_start")
    phase_start = time.perf_counter()
    phase_start_ns = time.perf_counter_ns()
    phase_start_epoch = time.time()  # to compare with settings_gcstats' record
    until = loop.time() + args.duration
    with CollectorPauses() as client_pauses:
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
        "server_processes": target.processes,
        "offered_messages_per_s": rate,
        "calls_requested": args.calls,
        "calls_set_up": len(calls),
        "setup_seconds": round(setup_s, 3),
        "setup_calls_per_s": round(len(calls) / setup_s, 1) if setup_s else None,
        "setup_ms": latency_summary([c.setup_ms for c in calls]),
        "relay_latency": latency_summary(tally.latencies_ms),
        "stalls": stalls(tally.slow, phase_start_ns),
        "steady_started_at": round(phase_start_epoch, 3),
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
        "client_gc_pauses": client_pauses.summary(),
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors.most_common(10)),
        **({"placement": placement} if placement else {}),
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


# Counts that must show a failure of any round, not the middle one.
WORST_OF_ROUNDS = frozenset({"errors", "error_kinds", "server_log_errors", "calls_set_up"})


def median_of_rounds(rounds: list[dict]) -> dict:
    """One server's rounds as one result: the median of every figure, except that errors,
    losses and log errors are the worst round's (any failure shows) and the calls set up
    the fewest."""
    merged: dict = {}
    for key, first in rounds[0].items():
        values = [r.get(key) for r in rounds]
        if key == "stalls":  # no median of stalls: every round's, largest first
            merged[key] = sorted(
                (stall for value in values for stall in value or []),
                key=lambda stall: -stall["late_messages"],
            )[:5]
        elif key in WORST_OF_ROUNDS:
            if key == "calls_set_up":
                merged[key] = min(values)
            elif key == "server_log_errors":
                merged[key] = [line for r in rounds for line in r[key]][:20]
            elif key == "error_kinds":
                kinds: Counter = Counter()
                for value in values:
                    kinds.update(value)
                merged[key] = dict(kinds)
            else:
                merged[key] = max(values)
        elif isinstance(first, dict):
            merged[key] = median_of_rounds(values)
        elif (present := [v for v in values if v is not None]) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in present
        ):
            middle = statistics.median(present)  # None: a round without it
            integral = all(isinstance(v, int) for v in present) and middle == int(middle)
            merged[key] = int(middle) if integral else round(middle, 3)
        else:
            merged[key] = first
    return merged


FIGURES = [
    ("server processes", ("server_processes",)),
    ("offered msg/s (total)", ("offered_messages_per_s",)),
    ("set-up rate (calls/s)", ("setup_calls_per_s",)),
    ("set-up per call p50 (ms)", ("setup_ms", "p50_ms")),
    ("relay latency p50 (ms)", ("relay_latency", "p50_ms")),
    ("relay latency p95 (ms)", ("relay_latency", "p95_ms")),
    ("relay latency p99 (ms)", ("relay_latency", "p99_ms")),
    ("messages/s relayed", ("messages_per_s",)),
    ("server CPU s (total)", ("server_cpu_s", "total")),
    ("server CPU µs/message", ("server_cpu_us_per_message",)),
    ("server peak RSS (MiB)", ("server_peak_rss_mib",)),
    ("messages lost", ("error_kinds", "lost")),
    ("errors", ("errors",)),
]


def report(servers: dict[str, dict], ratio_sets: dict[str, dict]) -> None:
    names = list(servers)
    rows = [
        (
            label,
            *(
                fmt(
                    dig(servers[n], path)
                    if dig(servers[n], path) is not None
                    else (0 if path[0] == "error_kinds" else None)
                )
                for n in names
            ),
        )
        for label, path in FIGURES
    ]
    print_table("signaling benchmark", rows, ("figure", *names))
    if ratio_sets:
        keys = list(RATIO_KEYS)
        rows = [(key, *(fmt(ratio_sets[r].get(key), 2) for r in ratio_sets)) for key in keys]
        print_table("ratio to the bare relay (same run)", rows, ("figure", *ratio_sets))
    for name in names:
        if servers[name]["error_kinds"]:
            print(f"  {name} errors: {servers[name]['error_kinds']}")
        if servers[name].get("stalls"):
            print(f"  {name} stalls (relayed messages over {SLOW_MS:.0f} ms late):")
            for stall in servers[name]["stalls"][:3]:
                print(
                    f"    at {stall['at_s']} s of the steady phase, for {stall['lasted_s']} s: "
                    f"{stall['late_messages']} messages, up to {stall['max_ms']} ms"
                )
        if "placement" in servers[name]:
            placement, nginx_cpu = servers[name]["placement"], servers[name]["nginx_cpu_s"]
            print(
                f"  {name}: nginx placed the calls {placement['calls_per_process']} per process, "
                f"{placement['split_calls']} split; nginx's own CPU {nginx_cpu} s"
            )


def report_rounds(ratio_rounds: dict[str, list[dict]], rounds: list[dict]) -> None:
    """The spread behind the medians: p99 and CPU per message of every round."""
    print("\nper round (the tables above are the medians):")
    for name in rounds[0]:
        p99 = [fmt(dig(r[name], ("relay_latency", "p99_ms"))) for r in rounds]
        cpu = [fmt(r[name]["server_cpu_us_per_message"]) for r in rounds]
        print(f"  {name}: p99 ms {', '.join(p99)}; CPU µs/message {', '.join(cpu)}")
    for pair, values in ratio_rounds.items():
        p99 = [fmt(v["relay_p99_ms"], 2) for v in values]
        cpu = [fmt(v["server_cpu_us_per_message"], 2) for v in values]
        print(f"  {pair}: p99 {', '.join(p99)}; CPU per message {', '.join(cpu)}")


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` onto `cpus` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


async def measure(target, args) -> dict:
    target.start(args.calls)
    pinned = args.pin and target.processes == 1
    if pinned:
        # As the deployment guide runs each process: on one core (docs/deployment.md).
        pin_threads(target.pid, {min(os.sched_getaffinity(0))})
    try:
        result = await run_target(target, args)
    finally:
        server_errors = target.stop()
    result["server_log_errors"] = server_errors[:20]
    result["pinned"] = pinned
    if hasattr(target, "nginx_cpu_s"):
        result["nginx_cpu_s"] = target.nginx_cpu_s
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
        "--repeat",
        type=int,
        default=1,
        help="rounds: every server once per round, in turn; figures and ratios are the "
        "median of the rounds (ratios each against the same round's bare relay)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="one-process servers pinned to one CPU, as the deployment guide runs each "
        "process (the load generator is not pinned; servers of two processes neither)",
    )
    parser.add_argument(
        "--setup-concurrency", type=int, default=50, help="calls being set up at the same time (50)"
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="also the Redis deployments: project_redis, redis_2p_spread, redis_2p_colocated, "
        "redis_2p_nginx",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also channels_redis' own layers: redis_core, core_2p_spread, redis_pubsub, "
        "pubsub_2p_spread",
    )
    parser.add_argument("--peerjs", action="store_true", help="also peerjs-server (npm `peer`)")
    parser.add_argument("--only", help="comma-separated servers to run (see the module doc)")
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
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (where the CPU goes; "
        "without it, threads waiting for SQLite or Redis are sampled too)",
    )
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rate, args.duration, args.grace = 10, 100.0, 2.0, 1.0
    per_connection = args.rate / (2 * args.calls)
    if per_connection > 8:
        parser.error("more than 8 frames/s per connection would hit the 100-per-10-s limit")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    raise_fd_limit(8 * args.calls + 1024)

    makers = {
        "project": lambda: ProjectTarget("project", False, True, args.settings),
        "project_redis": lambda: ProjectTarget("project_redis", True, True, args.settings),
        "project_conn0": lambda: ProjectTarget("project_conn0", False, True, CONN0),
        "project_redis_conn0": lambda: ProjectTarget("project_redis_conn0", True, True, CONN0),
        "redis_2p_spread": lambda: ProjectTarget(
            "redis_2p_spread", True, True, args.settings, 2, "spread"
        ),
        "redis_2p_colocated": lambda: ProjectTarget(
            "redis_2p_colocated", True, True, args.settings, 2, "colocated"
        ),
        "redis_2p_nginx": lambda: NginxTarget("redis_2p_nginx", args.settings),
        "project_redis_unbatched": lambda: ProjectTarget(
            "project_redis_unbatched", True, True, UNBATCHED
        ),
        "redis_2p_spread_unbatched": lambda: ProjectTarget(
            "redis_2p_spread_unbatched", True, True, UNBATCHED, 2, "spread"
        ),
        "redis_2p_spread_fernet": lambda: ProjectTarget(
            "redis_2p_spread_fernet", True, True, FERNET, 2, "spread"
        ),
        "redis_core": lambda: ProjectTarget("redis_core", True, True, CORE),
        "core_2p_spread": lambda: ProjectTarget("core_2p_spread", True, True, CORE, 2),
        "redis_pubsub": lambda: ProjectTarget("redis_pubsub", True, True, PUBSUB),
        "pubsub_2p_spread": lambda: ProjectTarget("pubsub_2p_spread", True, True, PUBSUB, 2),
        "baseline": BaselineTarget,
        "peerjs": PeerjsTarget,
    }
    wanted = ["project"]
    if args.redis:
        wanted += ["project_redis", "redis_2p_spread", "redis_2p_colocated", "redis_2p_nginx"]
    if args.layers:
        wanted += ["redis_core", "core_2p_spread", "redis_pubsub", "pubsub_2p_spread"]
    wanted += ["baseline"] + (["peerjs"] if args.peerjs else [])
    if args.only:
        wanted = args.only.split(",")
    unknown = [name for name in wanted if name not in makers]
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {', '.join(makers)}")
    targets = [(name, makers[name]) for name in wanted]

    data = {
        "benchmark": "signaling",
        "machine": machine_info(),
        "config": {k: v for k, v in vars(args).items() if k != "json_path"},
        "servers": {},
        "ratio": {},
    }
    rounds: list[dict[str, dict]] = []
    for number in range(1, args.repeat + 1):
        results: dict[str, dict] = {}
        for name, make in targets:
            print(
                f"running {name}: {args.calls} calls, {args.rate:g} msg/s per process "
                f"for {args.duration:g} s" + (f" (round {number})" if args.repeat > 1 else ""),
                flush=True,
            )
            results[name] = asyncio.run(measure(make(), args))
        rounds.append(results)
    ratio_rounds = {
        f"{name}/baseline": [ratios(r[name], r["baseline"]) for r in rounds]
        for name, _ in targets
        if name != "baseline" and "baseline" in rounds[0]
    }
    if args.repeat == 1:
        data["servers"] = rounds[0]
        data["ratio"] = {pair: values[0] for pair, values in ratio_rounds.items()}
    else:
        data["servers"] = {n: median_of_rounds([r[n] for r in rounds]) for n, _ in targets}
        data["ratio"] = {pair: median_of_rounds(v) for pair, v in ratio_rounds.items()}
        data["rounds"] = rounds
        data["ratio_rounds"] = ratio_rounds
    data["machine"]["loadavg_at_end"] = loadavg()
    report(data["servers"], data["ratio"])
    if args.repeat > 1:
        report_rounds(ratio_rounds, rounds)
    write_results("signaling-quick" if args.quick else "signaling", data, args.json_path)
    failed = [n for n, s in data["servers"].items() if s["calls_set_up"] == 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
