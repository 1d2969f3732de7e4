"""Mesh benchmark: set-up of nine-person calls (doctor, patient, seven guests), signaling only.

For each call: all nine join over HTTP (the doctor with a provisioned login session), open
their WebSockets, the doctor admits the eight waiting participants one after another by id,
and every pair negotiates as the call page does (contract "More than two participants"):
the doctor offers to everyone it gets `admitted` for, between two others the one admitted
earlier offers to the newcomer on `participant-joined`; offer, answer and CANDIDATES
candidates each way, all addressed with `to`. A call counts as set up when all 36 pairs
have exchanged offer, answer and candidates. Reported: set-up time per call (HTTP joins
and signaling apart), signaling messages per call (sent by clients, delivered by the
server, by type), server CPU and peak RSS (from /proc), errors.

    .venv/bin/python bench/mesh.py            # 20 calls of 9, 5 being set up at a time
    .venv/bin/python bench/mesh.py --redis    # the same against its own redis-server
    .venv/bin/python bench/mesh.py --quick    # smoke: 2 calls (make test)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations

from _common import (
    BENCH,
    Deployment,
    ProcessProbe,
    client_cpu_seconds,
    common_arguments,
    fmt,
    gather_limited,
    join_project,
    latency_summary,
    loadavg,
    machine_info,
    print_table,
    raise_fd_limit,
    write_results,
)
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed


def _load_signaling_bench():
    """bench/signaling.py under another name: as `signaling` it would shadow the Django app
    of that name in the provisioning child process."""
    spec = importlib.util.spec_from_file_location("bench_signaling", BENCH / "signaling.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_relay = _load_signaling_bench()
SDP, SetupError, open_socket = _relay.SDP, _relay.SetupError, _relay.open_socket

GUESTS = 7  # the contract's maximum: nine people in one call
PEOPLE = GUESTS + 2
PAIRS = PEOPLE * (PEOPLE - 1) // 2
CANDIDATES = 4  # per side and pair; well inside the 100-frames-per-10-s limit


# --- Appointments with guest codes ----------------------------------------------------


def provision(deployment: Deployment, calls: int) -> list[dict]:
    """Appointments with seven guest codes (and doctor sessions), in one child process."""
    result = subprocess.run(
        [sys.executable, __file__, "--provision", str(calls)],
        cwd=BENCH.parent,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"provisioning failed:\n{result.stderr}")
    return json.loads(result.stdout)


def provision_child(count: int) -> None:
    """Runs inside the deployment's environment (see provision)."""
    import _provision  # sets Django up with the deployment's settings
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from consultations.services import create_appointment

    doctor = get_user_model().objects.get(username="demo-arzt")
    calls = []
    with transaction.atomic():
        for _ in range(count):
            issued = create_appointment(doctor=doctor, guests=GUESTS)
            calls.append(
                {
                    "doctor_code": issued.doctor_code,
                    "patient_code": issued.patient_code,
                    "guest_codes": list(issued.guest_codes),
                    "doctor_cookies": {
                        _provision.settings.SESSION_COOKIE_NAME: _provision.doctor_session(doctor)
                    },
                }
            )
    print(json.dumps(calls))


# --- One participant ------------------------------------------------------------------


@dataclass(eq=False)
class Person:
    """One browser's signaling: reacts to the server as the call page does."""

    call: MeshCall
    role: str
    label: str
    socket: ClientConnection | None = None
    id: str | None = None
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    # peer id → what has happened on that pair, as seen from here
    offered: set = field(default_factory=set)
    answered: set = field(default_factory=set)
    candidates_from: Counter = field(default_factory=Counter)
    announced: set = field(default_factory=set)  # ids heard of in admitted/participant-joined

    async def send(self, message: dict) -> None:
        self.call.sent[message["type"]] += 1
        await self.socket.send(json.dumps(message))

    async def read(self) -> None:
        try:
            async for raw in self.socket:
                message = json.loads(raw)
                if self.call.setup_ms is not None:
                    continue  # set up: what follows (departures at the end) is not counted
                self.call.received[message.get("type")] += 1
                await self.handle(message)
        except ConnectionClosed as exc:
            if not self.call.closing:
                self.call.errors[f"closed:{exc.rcvd.code if exc.rcvd else 'abnormal'}"] += 1
                self.call.progress.set()

    async def handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "error":
            self.call.errors[f"error:{message.get('code')}"] += 1
            self.call.progress.set()
        elif kind == "welcome":
            self.id = message.get("id")
        elif kind == "admitted" and self.role == "doctor":
            if self.first_announcement(kind, message["id"]):
                await self.offer(message["id"])
        elif kind == "participant-joined" and self.role != "doctor":
            if self.first_announcement(kind, message["id"]) and message.get("role") != "doctor":
                await self.offer(message["id"])  # we were admitted earlier
        elif kind == "offer":
            peer = message["from"]
            if peer in self.offered:
                # Both sides offered (crossed announcements): perfect negotiation as on
                # the page, where the side with the greater id (never the doctor) yields.
                self.call.glare[frozenset((self.id, peer))] += 1
                if self.role == "doctor" or (self.id < peer and not self.from_doctor(peer)):
                    return self.inbox.put_nowait(message)
            await self.send({"type": "answer", "sdp": SDP, "to": peer})
            self.answered.add(peer)
            await self.trickle(peer)
        elif kind == "answer":
            peer = message["from"]
            self.answered.add(peer)
            await self.trickle(peer)
        elif kind == "candidate":
            self.candidates_from[message["from"]] += 1
            self.call.progress.set()
        self.inbox.put_nowait(message)

    def from_doctor(self, peer: str) -> bool:
        return any(p.id == peer and p.role == "doctor" for p in self.call.people)

    def first_announcement(self, kind: str, peer: str) -> bool:
        """The contract announces each admission once; count repeats (and offer once)."""
        if peer in self.announced:
            self.call.repeats[kind] += 1
            return False
        self.announced.add(peer)
        return True

    async def offer(self, peer: str) -> None:
        self.offered.add(peer)
        await self.send({"type": "offer", "sdp": SDP, "to": peer})

    async def trickle(self, peer: str) -> None:
        for i in range(CANDIDATES):
            line = f"candidate:{i + 1} 1 udp 2122260223 127.0.0.1 {40000 + i} typ host generation 0"
            await self.send(
                {"type": "candidate", "candidate": {"candidate": line, "sdpMid": "0"}, "to": peer}
            )

    async def expect(self, kind: str, timeout: float = 60, **fields) -> dict:
        """The next message of `kind` (with `fields`), skipping others."""
        while True:
            message = await asyncio.wait_for(self.inbox.get(), timeout)
            if message.get("type") == kind and all(message.get(k) == v for k, v in fields.items()):
                return message
            if message.get("type") == "error":
                raise SetupError(f"server error {message.get('code')} while waiting for {kind}")

    def pair_done(self, other: Person) -> bool:
        negotiated = other.id in self.answered
        return negotiated and self.candidates_from[other.id] >= CANDIDATES


# --- One call -------------------------------------------------------------------------


@dataclass(eq=False)
class MeshCall:
    index: int
    sent: Counter = field(default_factory=Counter)
    received: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    repeats: Counter = field(default_factory=Counter)  # repeated announcements of one id
    glare: Counter = field(default_factory=Counter)  # pairs in which both sides offered
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    people: list[Person] = field(default_factory=list)
    readers: list[asyncio.Task] = field(default_factory=list)
    closing: bool = False
    setup_ms: float | None = None
    join_ms: float | None = None  # the nine HTTP joins, part of setup_ms

    def complete(self) -> bool:
        return all(a.pair_done(b) and b.pair_done(a) for a, b in combinations(self.people, 2))

    async def connect(self, person: Person, port: int, cookies: dict) -> None:
        person.socket = await open_socket(port, cookies)
        self.people.append(person)
        self.readers.append(asyncio.create_task(person.read()))
        await person.expect("welcome")

    async def close(self) -> None:
        self.closing = True
        await asyncio.gather(
            *(p.socket.close() for p in self.people if p.socket), return_exceptions=True
        )
        await asyncio.gather(*self.readers, return_exceptions=True)


async def set_up_call(port: int, provisioned: dict, index: int, timeout: float) -> MeshCall:
    call = MeshCall(index)
    started = time.perf_counter()
    try:
        codes = [("patient", provisioned["patient_code"])] + [
            ("guest", code) for code in provisioned["guest_codes"]
        ]
        cookies = await asyncio.gather(
            *(
                join_project(port, code, f"Teilnehmende {index}-{n}")
                for n, (_, code) in enumerate(codes)
            )
        )
        doctor_cookies = await join_project(
            port, provisioned["doctor_code"], "", provisioned["doctor_cookies"]
        )
        call.join_ms = (time.perf_counter() - started) * 1000
        waiting = [Person(call, role, f"{role}{n}") for n, (role, _) in enumerate(codes)]
        for person, jar in zip(waiting, cookies, strict=True):
            await call.connect(person, port, jar)
            await person.expect("waiting")
        doctor = Person(call, "doctor", "doctor")
        await call.connect(doctor, port, doctor_cookies)
        for person in waiting:  # the doctor lets them in one by one, as on the page
            await doctor.send({"type": "admit", "id": person.id})
            await doctor.expect("admitted", id=person.id)
        deadline = time.perf_counter() + timeout
        while not call.complete():
            if call.errors:
                raise SetupError(f"call {index}: {dict(call.errors)}")
            call.progress.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise SetupError(f"call {index}: pairs not negotiated in time")
            try:
                await asyncio.wait_for(call.progress.wait(), remaining)
            except TimeoutError:
                pass
        call.setup_ms = (time.perf_counter() - started) * 1000
    except Exception:
        await call.close()
        raise
    return call


# --- The run --------------------------------------------------------------------------


async def run(deployment: Deployment, provisioned: list[dict], args) -> dict:
    probe = ProcessProbe(deployment.pid)
    probe.mark("start")
    client_start = client_cpu_seconds()
    started = time.perf_counter()
    results = await gather_limited(
        args.concurrency,
        (set_up_call(deployment.port, p, i, args.timeout) for i, p in enumerate(provisioned)),
    )
    elapsed_s = time.perf_counter() - started
    probe.mark("setup")
    memory = probe.memory()
    calls = [r for r in results if isinstance(r, MeshCall)]
    errors = Counter()
    for failure in (r for r in results if not isinstance(r, MeshCall)):
        errors[f"setup:{type(failure).__name__}:{str(failure)[:80]}"] += 1
    for call in calls:
        errors.update(call.errors)
    await asyncio.gather(*(call.close() for call in calls))
    sent, received, repeats = Counter(), Counter(), Counter()
    glare_pairs = sum(len(call.glare) for call in calls)
    for call in calls:
        sent.update(call.sent)
        received.update(call.received)
        repeats.update(call.repeats)

    def per_call(counter: Counter) -> dict:
        return {k: round(v / len(calls), 1) for k, v in sorted(counter.items())} if calls else {}

    return {
        "people_per_call": PEOPLE,
        "pairs_per_call": PAIRS,
        "candidates_per_side_and_pair": CANDIDATES,
        "calls_requested": len(provisioned),
        "calls_set_up": len(calls),
        "setup_seconds": round(elapsed_s, 3),
        "setup_ms": latency_summary([c.setup_ms for c in calls]),
        "join_ms": latency_summary([c.join_ms for c in calls]),
        "signaling_ms": latency_summary([c.setup_ms - c.join_ms for c in calls]),
        "messages_per_call": {
            "sent_by_clients": round(sum(sent.values()) / len(calls), 1) if calls else None,
            "delivered_by_server": round(sum(received.values()) / len(calls), 1) if calls else None,
            "sent_by_type": per_call(sent),
            "delivered_by_type": per_call(received),
            "repeated_announcements": per_call(repeats),
        },
        # Pairs in which both sides made the first offer because the server's
        # announcements of two admissions crossed (each side thought it was earlier).
        "glare_pairs_per_call": round(glare_pairs / len(calls), 1) if calls else None,
        "server_cpu_s": probe.between("start", "setup"),
        "server_cpu_ms_per_call": round(probe.between("start", "setup") / len(calls) * 1000, 1)
        if calls
        else None,
        "server_peak_rss_mib": round(memory["peak_rss_kib"] / 1024, 1),
        "client_cpu_s": round(client_cpu_seconds() - client_start, 3),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(10)),
    }


async def measure(args) -> dict:
    deployment = Deployment(redis=args.redis)
    try:
        deployment.prepare()
        provisioned = provision(deployment, args.calls)
        deployment.start()
        result = await run(deployment, provisioned, args)
    finally:
        result_errors = deployment.server_errors()
        deployment.stop()
    result["server_log_errors"] = result_errors[:20]
    return result


def report(result: dict) -> None:
    messages = result["messages_per_call"]
    rows = [
        ("calls set up / requested", f"{result['calls_set_up']} / {result['calls_requested']}"),
        ("people per call (pairs)", f"{result['people_per_call']} ({result['pairs_per_call']})"),
        ("set-up per call p50 (ms)", fmt(result["setup_ms"]["p50_ms"])),
        ("set-up per call p95 (ms)", fmt(result["setup_ms"]["p95_ms"])),
        ("set-up per call max (ms)", fmt(result["setup_ms"]["max_ms"])),
        ("  of it: 9 HTTP joins p50 (ms)", fmt(result["join_ms"]["p50_ms"])),
        ("  of it: signaling p50 (ms)", fmt(result["signaling_ms"]["p50_ms"])),
        ("messages sent by clients per call", fmt(messages["sent_by_clients"])),
        ("messages delivered per call", fmt(messages["delivered_by_server"])),
        ("repeated announcements per call", fmt(sum(messages["repeated_announcements"].values()))),
        ("pairs where both sides offered", fmt(result["glare_pairs_per_call"])),
        ("server CPU ms per call", fmt(result["server_cpu_ms_per_call"])),
        ("server peak RSS (MiB)", fmt(result["server_peak_rss_mib"])),
        ("errors", fmt(result["errors"])),
    ]
    print_table("mesh benchmark (9-person calls)", rows, ("figure", "value"))
    if result["error_kinds"]:
        print(f"  errors: {result['error_kinds']}")


def main() -> int:
    if sys.argv[1:2] == ["--provision"]:
        provision_child(int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, quick_help="smoke run: 2 calls of 9")
    parser.add_argument("--calls", type=int, default=20, help="nine-person calls (20)")
    parser.add_argument(
        "--concurrency", type=int, default=5, help="calls being set up at the same time (5)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call set-up")
    parser.add_argument("--redis", action="store_true", help="run against its own redis-server")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.concurrency = 2, 2
    raise_fd_limit(4 * PEOPLE * args.calls + 1024)
    print(f"mesh: {args.calls} calls of {PEOPLE}, {args.concurrency} at a time", flush=True)
    data = {
        "benchmark": "mesh",
        "machine": machine_info(),
        "config": {k: v for k, v in vars(args).items() if k != "json_path"},
        "result": asyncio.run(measure(args)),
    }
    data["machine"]["loadavg_at_end"] = loadavg()
    report(data["result"])
    write_results("mesh-quick" if args.quick else "mesh", data, args.json_path)
    return 0 if data["result"]["calls_set_up"] == args.calls else 1


if __name__ == "__main__":
    sys.exit(main())
