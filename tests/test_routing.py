"""Every participant of one call on one server process: nginx routes by the page's key.

A production-like stack on loopback: PostgreSQL, Redis, two `manage.py serve` processes
and nginx in front of them with the upstreams and locations of docs/deployment.md
(tests/support/nginxproxy.py takes them from the guide). Participants join through
nginx like browsers, read the routing key from their call page (`data-ws-query`) and
open `/ws/call/` with it. Where a connection landed is read from Redis: the call's
channel-layer group lists its members' channel names, and each name carries the client
prefix of the process that created it (signaling.layers; no endpoint tells it).

A call whose participants are on different processes anyway (one connected straight to
the other port) still relays through Redis. Without the key nginx spreads a call's
participants round-robin: the last test shows that the routing proof can fail.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from signaling import presence
from tests.support.callclient import CallSocket, HttpSession, admit_and_negotiate
from tests.support.deployment import Deployment, skip_in_production_run, start_deployment
from tests.support.live import free_port, manage_json
from tests.support.nginxproxy import guide_proxy

pytestmark = [pytest.mark.redis, skip_in_production_run()]

MAX_APPOINTMENTS = 12  # both processes get a call long before (each key is a coin flip)


@dataclass
class Stack:
    deployment: Deployment
    proxy_url: str
    redis: redis.Redis
    ports_by_process: dict[str, int] = field(default_factory=dict)

    def appointment(self, guests: int = 0) -> dict:
        return manage_json(
            self.deployment.env,
            "create_appointment",
            "--doctor",
            self.deployment.doctor,
            "--guests",
            str(guests),
        )

    def processes(self, appointment: dict) -> list[str]:
        """The process (client prefix) of each connection in the call's group."""
        group = presence.group_name(uuid.UUID(appointment["id"]))
        key = RedisChannelLayer(hosts=[])._group_key(group)
        return sorted(member.decode().split("!", 1)[0] for member in self.redis.zrange(key, 0, -1))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("routing")
    proxy_port = free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    deployment = start_deployment(workdir, PUBLIC_URL=proxy_url, PROXY_HEADERS="true")
    try:
        servers = [deployment.serve(), deployment.serve()]
        with guide_proxy(workdir, [s.port for s in servers], port=proxy_port):
            client = redis.Redis.from_url(deployment.redis.url)
            yield Stack(deployment, proxy_url, client)
            client.close()
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def ports_by_process(stack) -> dict[str, int]:
    """Which process prefix is which port: one patient straight to each port."""

    async def probe(server) -> str:
        appointment = stack.appointment()
        session = HttpSession(stack.proxy_url)
        assert session.join(appointment["patient_code"], "Sonja Sonde").status == 302
        socket = CallSocket(session, base_url=server.url)
        try:
            await socket.connect()
            (process,) = stack.processes(appointment)
            return process
        finally:
            await socket.close()

    for server in stack.deployment.servers:
        stack.ports_by_process[asyncio.run(probe(server))] = server.port
    assert len(stack.ports_by_process) == 2
    return stack.ports_by_process


def call_query(session: HttpSession) -> str:
    """The routing key the call page hands to its script (what call.js appends)."""
    page = session.get("/call/")
    assert page.status == 200, page.status
    (query,) = re.findall(r'data-ws-query="([^"]*)"', page.body)
    return query


def joined(stack: Stack, appointment: dict, guests: int = 0) -> list[HttpSession]:
    """Doctor, patient and guests joined through nginx (a fresh log-in for the doctor:
    one session holds one join)."""
    doctor = HttpSession(stack.proxy_url)
    doctor.login(stack.deployment.doctor, stack.deployment.seed["doctor"]["password"])
    assert doctor.join(appointment["doctor_code"]).status == 302
    patient = HttpSession(stack.proxy_url)
    assert patient.join(appointment["patient_code"], "Petra Pfad").status == 302
    sessions = [doctor, patient]
    for index in range(guests):
        guest = HttpSession(stack.proxy_url)
        assert guest.join(appointment["guest_codes"][index], f"Gast {index}").status == 302
        sessions.append(guest)
    return sessions


async def connect_call(sockets: list[CallSocket]) -> None:
    """Doctor first, then the others into the waiting room."""
    doctor, *others = sockets
    assert (await doctor.connect())["role"] == "doctor"
    for socket in others:
        assert (await socket.connect())["type"] == "welcome"
        await socket.expect("waiting")
        await doctor.expect("peer-waiting")


async def close_all(sockets: list[CallSocket]) -> None:
    for socket in sockets:
        await socket.close()


async def test_participants_of_a_call_meet_on_one_process(stack, ports_by_process):
    seen: set[str] = set()
    calls = 0
    while (len(seen) < 2 or calls < 3) and calls < MAX_APPOINTMENTS:
        guests = 1 if calls == 0 else 0
        appointment = stack.appointment(guests)
        sessions = joined(stack, appointment, guests)
        queries = {call_query(session) for session in sessions}
        assert len(queries) == 1, f"participants got different keys: {queries}"
        (query,) = queries
        assert re.fullmatch(r"r=[0-9a-f]{8}", query)
        assert appointment["id"].replace("-", "")[:8] not in query
        sockets = [CallSocket(session, query=query) for session in sessions]
        try:
            await connect_call(sockets)
            processes = stack.processes(appointment)
            assert len(processes) == 2 + guests
            assert len(set(processes)) == 1, f"call {calls} split over processes: {processes}"
            assert processes[0] in ports_by_process
            seen.add(processes[0])
            await admit_and_negotiate(sockets[0], sockets[1], f"rt{calls}")
        finally:
            await close_all(sockets)
        calls += 1
    # Both processes carried calls: the key spreads appointments, it does not pin them.
    assert len(seen) == 2, f"all {calls} calls on one process"


async def test_a_call_split_over_two_processes_still_relays(stack, ports_by_process):
    """The Redis fallback: the doctor through nginx, the patient straight to the other
    process (as after a restart or an nginx reload that moved the key)."""
    appointment = stack.appointment()
    doctor_http, patient_http = joined(stack, appointment)
    doctor = CallSocket(doctor_http, query=call_query(doctor_http))
    patient = None
    try:
        await doctor.connect()
        (doctor_process,) = stack.processes(appointment)
        (other_port,) = set(ports_by_process.values()) - {ports_by_process[doctor_process]}
        patient = CallSocket(
            patient_http, base_url=f"http://127.0.0.1:{other_port}", query=call_query(patient_http)
        )
        await patient.connect()
        await patient.expect("waiting")
        await doctor.expect("peer-waiting")
        assert len(set(stack.processes(appointment))) == 2
        await admit_and_negotiate(doctor, patient, "split")
    finally:
        await close_all([s for s in (doctor, patient) if s is not None])


async def test_without_the_key_a_call_spreads(stack, ports_by_process):
    """The routing above is the key's doing: without it nginx balances round-robin and
    participants of one call land on different processes."""
    splits = 0
    for _ in range(3):
        appointment = stack.appointment()
        sockets = [CallSocket(session) for session in joined(stack, appointment)]
        try:
            await connect_call(sockets)
            splits += len(set(stack.processes(appointment))) == 2
        finally:
            await close_all(sockets)
    assert splits >= 1, "no call split without the key: the routing test would be blind"
