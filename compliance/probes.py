"""Probes: drive the real URLconf and the real signaling consumer in-process.

The checks must work on a project whose server is not running and must leave nothing
behind in a production database, Redis or log:

* Every probe runs with a private local-memory cache and an in-memory channel layer
  (`isolated_layers`), so rate-limit counters, presence and channel groups of the real
  deployment are never touched. This overrides settings process-wide — which is why
  the admin page runs the checks in a child process (`compliance.runner`).
* HTTP probes (`http_probe`) create their practice, users and appointments inside a
  transaction that is always rolled back.
* The WebSocket probe (`websocket_probe`) cannot use a rolled-back transaction: the
  consumer reads the database through `database_sync_to_async`, which closes a
  connection that is inside a transaction. It therefore commits clearly marked probe
  objects (practice `KBV-Prüfsonde …`, users `kbv-probe-…`) and deletes them, with
  their sessions, in `finally`; leftovers of a crashed run (older than ten minutes, so
  a concurrent run is never disturbed) are removed at the next run.
  The probe appointment is valid for minutes only, so even a leftover opens nothing.

Requests come from a documentation address (192.0.2.0/24, RFC 5737), so no real
client's rate-limit counter could ever be affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connections, transaction
from django.db.models import Q
from django.test import Client, override_settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from consultations import services
from consultations.models import Appointment, Membership, Practice

PROBE_USER_PREFIX = "kbv-probe-"
PROBE_PRACTICE_NAME = "KBV-Prüfsonde (wird sofort gelöscht)"
PROBE_ADDRESS = "192.0.2.10"  # TEST-NET-1: never a real client
PROBE_FORWARDED = "198.51.100.77"  # TEST-NET-2, as a proxy would add it
PATIENT_NAME = "Erika Mustermann"
WS_PATH = "/ws/call/"
TIMEOUT = 2.0  # longest wait for an expected message
CONNECT_TIMEOUT = 5.0
QUIET = 0.1  # how long "nothing arrives" is awaited (in-memory layer: milliseconds)

WRITE_VERBS = {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "ALTER", "DROP", "TRUNCATE"}

# A minimal but realistic WebRTC offer: DTLS fingerprint, no SDES key.
_FINGERPRINT = ":".join(f"{byte:02X}" for byte in range(32))
_SDP_LINES = [
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=msid-semantic: WMS",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:kbvp",
    "a=ice-pwd:kbvprobekbvprobekbvprobe",
    "a=ice-options:trickle",
    f"a=fingerprint:sha-256 {_FINGERPRINT}",
    "a=setup:actpass",
    "a=mid:0",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
]
SDP_SECURE = "\r\n".join(_SDP_LINES) + "\r\n"
SDP_NO_FINGERPRINT = (
    "\r\n".join(line for line in _SDP_LINES if not line.startswith("a=fingerprint:")) + "\r\n"
)
SDP_WITH_SDES = SDP_SECURE + (
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
    "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n"
)
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 kbv-probe.local 54321 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}


# --- Isolation ------------------------------------------------------------------------


@contextmanager
def isolated_layers() -> Iterator[None]:
    """A private cache and channel layer for the duration of a probe."""
    with override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": f"kbv-probe-{uuid.uuid4().hex}",
            }
        },
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 200},
            }
        },
    ):
        yield


# --- Probe data -----------------------------------------------------------------------


@dataclass
class World:
    practice: Practice
    doctor_a: Any
    doctor_b: Any
    staff: Any
    a: services.IssuedAppointment
    b: services.IssuedAppointment
    session_keys: list[str] = field(default_factory=list)


def _probe_user(token: str, name: str, practice: Practice, role: str):
    user = get_user_model().objects.create_user(
        username=f"{PROBE_USER_PREFIX}{token}-{name}", is_staff=True, first_name="Prüfsonde"
    )
    user.set_unusable_password()
    user.save(update_fields=["password"])
    Membership.objects.create(user=user, practice=practice, role=role)
    return user


def create_world() -> World:
    token = secrets.token_hex(4)
    practice = Practice.objects.create(name=PROBE_PRACTICE_NAME)
    doctor_a = _probe_user(token, "doctor-a", practice, Membership.Role.DOCTOR)
    doctor_b = _probe_user(token, "doctor-b", practice, Membership.Role.DOCTOR)
    staff = _probe_user(token, "staff", practice, Membership.Role.STAFF)
    now = timezone.now()
    # Scheduled in the past: the codes work only for the few minutes the probe needs.
    soon_past = now - services.VALID_AFTER_SCHEDULED + timedelta(minutes=10)
    a = services.create_appointment(doctor=doctor_a, scheduled_at=soon_past, now=now)
    b = services.create_appointment(doctor=doctor_b, scheduled_at=soon_past, now=now)
    return World(practice, doctor_a, doctor_b, staff, a, b)


def delete_world(world: World) -> None:
    """Delete this run's probe objects (appointments first: they protect their doctor)."""
    Session.objects.filter(session_key__in=world.session_keys).delete()
    Appointment.objects.filter(practice=world.practice).delete()
    users = [world.doctor_a.pk, world.doctor_b.pk, world.staff.pk]
    get_user_model().objects.filter(pk__in=users).delete()
    world.practice.delete()


STALE_AFTER = timedelta(minutes=10)  # a probe run takes seconds; a concurrent run is younger


def purge_stale_probe_objects() -> int:
    """Delete probe objects that a crashed earlier run left behind (never a running one's)."""
    cutoff = timezone.now() - STALE_AFTER
    practices = Practice.objects.filter(name=PROBE_PRACTICE_NAME, created_at__lt=cutoff)
    users = get_user_model().objects.filter(
        username__startswith=PROBE_USER_PREFIX, date_joined__lt=cutoff
    )
    deleted = Appointment.objects.filter(Q(practice__in=practices) | Q(doctor__in=users)).delete()[
        0
    ]
    return deleted + users.delete()[0] + practices.delete()[0]


@contextmanager
def rolled_back_world() -> Iterator[World]:
    with isolated_layers(), transaction.atomic():
        try:
            yield create_world()
        finally:
            transaction.set_rollback(True)


@contextmanager
def committed_world() -> Iterator[World]:
    with isolated_layers():
        purge_stale_probe_objects()
        world = create_world()
        try:
            yield world
        finally:
            delete_world(world)


# --- HTTP -----------------------------------------------------------------------------


class _SchemeClient(Client):
    """A test client whose every request uses https when the deployment does.

    Django's Client takes `secure` per request only; passed to the constructor it would
    silently become a meaningless WSGI variable and every probe would meet a redirect.
    """

    def __init__(self, *args, secure: bool = False, **defaults):
        super().__init__(*args, **defaults)
        self.always_secure = secure

    def generic(self, method, path, *args, secure: bool = False, **kwargs):
        return super().generic(method, path, *args, secure=secure or self.always_secure, **kwargs)


def probe_client() -> Client:
    """A test client that reaches the app as a browser would through PUBLIC_URL (and,
    behind a proxy, with the headers the proxy adds)."""
    headers = {"HTTP_X_FORWARDED_FOR": PROBE_FORWARDED}
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header and settings.PUBLIC_HTTPS:
        headers[proxy_header[0]] = proxy_header[1]
    return _SchemeClient(
        secure=settings.PUBLIC_HTTPS,
        raise_request_exception=False,
        HTTP_HOST=urlsplit(settings.PUBLIC_URL).netloc,
        REMOTE_ADDR=PROBE_ADDRESS,
        **headers,
    )


def login(client: Client, user, world: World | None = None) -> None:
    """Log in without a password; where 2FA is enforced, as a verified session."""
    client.force_login(user)
    try:
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_totp.models import TOTPDevice
    except ImportError:  # pragma: no cover - django-otp is a runtime dependency
        pass
    else:
        device = TOTPDevice.objects.create(user=user, name="kbv-probe", confirmed=True)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    if world is not None:
        world.session_keys.append(client.session.session_key)


def join(client: Client, code: str, name: str = "") -> Any:
    return client.post(reverse("join"), {"name": name, "code": code, "consent": "on"})


@dataclass(frozen=True)
class JoinOutcome:
    status: int
    location: str
    cookie_set: bool

    @property
    def joined(self) -> bool:
        """The request opened the call: redirect to the call page or a join cookie."""
        to_call = self.status in (301, 302, 303) and urlsplit(self.location).path == reverse("call")
        return to_call or self.cookie_set

    @property
    def to_login(self) -> bool:
        login_path = reverse(settings.LOGIN_URL)
        return self.status == 302 and urlsplit(self.location).path == login_path


def outcome(response) -> JoinOutcome:
    cookie = response.cookies.get(settings.JOIN_COOKIE_NAME)
    return JoinOutcome(
        response.status_code,
        response.get("Location", ""),
        bool(cookie is not None and cookie.value),
    )


@dataclass(frozen=True)
class Page:
    path: str
    status: int
    html: str
    csp: str


def fetch(client: Client, path: str) -> Page:
    response = client.get(path)
    html = response.content.decode("utf-8", "replace") if hasattr(response, "content") else ""
    return Page(path, response.status_code, html, response.get("Content-Security-Policy", ""))


class LogCapture(logging.Handler):
    """Collects every record the configured loggers emit while a probe runs."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @contextmanager
    def attached(self) -> Iterator[LogCapture]:
        """Route the configured loggers to this capture only: the probe's own requests
        are inspected, not written to the operator's log."""
        names = [None, *settings.LOGGING.get("loggers", {})]
        loggers = [logging.getLogger(name) for name in names]
        saved = [logger.handlers[:] for logger in loggers]
        for logger in loggers:
            logger.handlers = [self]
        try:
            yield self
        finally:
            for logger, handlers in zip(loggers, saved, strict=True):
                logger.handlers = handlers

    def texts(self) -> list[str]:
        """Each record as everything a formatter could write: message and attributes."""
        texts = []
        for record in self.records:
            attributes = " ".join(f"{key}={value}" for key, value in vars(record).items())
            texts.append(f"{record.getMessage()} {attributes}")
        return texts


PUBLIC_PAGES = ("terms", "privacy", "faq", "imprint")


def http_probe() -> dict[str, Any]:
    """Everything the HTTP checks need, gathered in one rolled-back run."""
    observations: dict[str, Any] = {}
    capture = LogCapture()
    with rolled_back_world() as world, capture.attached():
        anonymous = probe_client()
        observations["join_page"] = fetch(anonymous, reverse("join"))
        observations["public_pages"] = {
            name: fetch(probe_client(), reverse(name)) for name in PUBLIC_PAGES
        }
        observations["doctor_code_anonymous"] = outcome(join(anonymous, world.a.doctor_code))

        staff = probe_client()
        login(staff, world.staff)
        observations["doctor_code_staff"] = outcome(join(staff, world.a.doctor_code))

        other_doctor = probe_client()
        login(other_doctor, world.doctor_b)
        observations["doctor_code_other_doctor"] = outcome(join(other_doctor, world.a.doctor_code))

        own_doctor = probe_client()
        login(own_doctor, world.doctor_a)
        observations["doctor_code_own_doctor"] = outcome(join(own_doctor, world.a.doctor_code))

        observations.update(board_start_probe(world))

        patient = probe_client()
        observations["patient_join"] = outcome(join(patient, world.a.patient_code, PATIENT_NAME))
        observations["call_page"] = fetch(patient, reverse("call"))
    observations["log_texts"] = capture.texts()
    return observations


def board_start_probe(world: World) -> dict[str, JoinOutcome]:
    """The board's one-click start (`POST /praxis/ID/start`) for each persona."""
    try:
        path = reverse("board-start", args=[world.a.appointment.pk])
    except NoReverseMatch:
        return {}  # no board in this URL configuration: its checks report the missing probe
    personas = {
        "anonymous": None,
        "staff": world.staff,
        "other_doctor": world.doctor_b,
        "own_doctor": world.doctor_a,
    }
    result = {}
    for key, user in personas.items():
        client = probe_client()
        if user is not None:
            login(client, user, world)
        result[f"board_start_{key}"] = outcome(client.post(path))
    return result


# --- WebSocket ------------------------------------------------------------------------


def websocket_application():
    """The ASGI application the WebSocket probe drives (the real one)."""
    from redconnect.asgi import application

    return application


class QueryCounter:
    """Counts SQL statements on every connection while installed."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0

    def __call__(self, execute, sql, params, many, context):
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb in WRITE_VERBS:
            self.writes += 1
        else:
            self.reads += 1
        return execute(sql, params, many, context)

    @contextmanager
    def installed(self) -> Iterator[QueryCounter]:
        with ExitStack() as stack:
            for connection in connections.all():
                stack.enter_context(connection.execute_wrapper(self))
            yield self

    def snapshot(self) -> tuple[int, int]:
        return self.reads, self.writes


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class Socket:
    """A WebsocketCommunicator with the helpers the scenario needs."""

    def __init__(self, application, cookies: dict[str, str]) -> None:
        from channels.testing import WebsocketCommunicator

        origin = f"{urlsplit(settings.PUBLIC_URL).scheme}://{urlsplit(settings.PUBLIC_URL).netloc}"
        headers = [(b"origin", origin.encode()), (b"host", urlsplit(origin).netloc.encode())]
        if cookies:
            cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
            headers.append((b"cookie", cookie.encode()))
        self.communicator = WebsocketCommunicator(application, WS_PATH, headers=headers)
        self.close_code: int | None = None
        self.received: list[dict] = []

    async def connect(self) -> bool:
        connected, _subprotocol = await self.communicator.connect(timeout=CONNECT_TIMEOUT)
        if not connected:
            self.close_code = _subprotocol if isinstance(_subprotocol, int) else 403
        return connected

    async def next(self, timeout: float | None = None) -> dict | None:
        """The next JSON message; None if none arrives in time; Closed when closed."""
        timeout = TIMEOUT if timeout is None else timeout
        if self.close_code is not None:
            raise Closed(self.close_code)
        if await self.communicator.receive_nothing(timeout=timeout, interval=0.005):
            return None
        output = await self.communicator.receive_output(CONNECT_TIMEOUT)
        if output["type"] == "websocket.close":
            self.close_code = output.get("code", 1000)
            raise Closed(self.close_code)
        if output.get("bytes") is not None:
            message = {"type": "<binary>"}  # whatever it is, it must be seen
        else:
            message = json.loads(output.get("text") or "null") or {"type": "<empty>"}
        self.received.append(message)
        return message

    async def until(self, kind: str, timeout: float | None = None) -> dict | None:
        """Read until a message of this type arrives (None on timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (TIMEOUT if timeout is None else timeout)
        while (remaining := deadline - loop.time()) > 0:
            message = await self.next(remaining)
            if message is None:
                return None
            if message.get("type") == kind:
                return message
        return None

    async def drain(self, timeout: float | None = None) -> list[dict]:
        """Everything that arrives until nothing has come for `timeout` seconds."""
        timeout = QUIET if timeout is None else timeout
        messages = []
        try:
            while (message := await self.next(timeout)) is not None:
                messages.append(message)
        except Closed:
            pass
        return messages

    async def send(self, payload: dict) -> None:
        await self.communicator.send_json_to(payload)

    async def close(self) -> None:
        # The app may already have ended (closed, superseded, crashed on a broken relay).
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.communicator.disconnect()


def _cookies(client: Client) -> dict[str, str]:
    return {name: morsel.value for name, morsel in client.cookies.items() if morsel.value}


def websocket_probe() -> dict[str, Any]:
    """Run the signaling scenario against the real consumer (committed probe objects)."""
    with committed_world() as world, LogCapture().attached():
        clients = {}
        for key, code, user, name in (
            ("patient_a", world.a.patient_code, None, PATIENT_NAME),
            ("doctor_a", world.a.doctor_code, world.doctor_a, ""),
            ("doctor_b", world.b.doctor_code, world.doctor_b, ""),
        ):
            client = probe_client()
            if user is not None:
                login(client, user, world)
            joined = outcome(join(client, code, name))
            if not joined.joined:
                return {"error": f"join as {key} refused (HTTP {joined.status})"}
            clients[key] = _cookies(client)
        observations: dict[str, Any] = {}
        counter = QueryCounter()
        with counter.installed():
            try:
                async_to_sync(_scenario)(websocket_application(), clients, counter, observations)
            except Exception as exc:  # the observations so far still count
                observations["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        return observations


async def _scenario(app, cookies, counter: QueryCounter, obs: dict[str, Any]) -> None:
    sockets: list[Socket] = []

    async def open_socket(key: str | None) -> Socket:
        socket = Socket(app, cookies.get(key, {}) if key else {})
        sockets.append(socket)
        await socket.connect()
        return socket

    try:
        await _connect_phase(open_socket, obs, counter)
        await _relay_phase(obs, counter)
        await _refusal_phase(obs)
        await _supersede_phase(open_socket, obs)
    finally:
        obs.pop("sockets", None)
        for socket in sockets:
            await socket.close()


async def _first_or_close(socket: Socket) -> dict | int | None:
    try:
        return await socket.next()
    except Closed as closed:
        return closed.code


async def _connect_phase(open_socket, obs, counter: QueryCounter) -> None:
    anonymous = await open_socket(None)
    obs["no_session"] = await _first_or_close(anonymous)
    if isinstance(obs["no_session"], dict):  # accepted: does it close right after?
        obs["no_session"] = await _first_or_close(anonymous)

    before = counter.snapshot()
    patient = await open_socket("patient_a")
    obs["patient_welcome"] = await patient.until("welcome")
    obs["patient_waiting"] = await patient.until("waiting")
    obs["connect_queries"] = counter.reads - before[0] + counter.writes - before[1]

    doctor_b = await open_socket("doctor_b")
    obs["doctor_b_welcome"] = await doctor_b.until("welcome")
    obs["doctor_b_first"] = await doctor_b.drain()

    doctor = await open_socket("doctor_a")
    obs["doctor_welcome"] = await doctor.until("welcome")
    obs["doctor_peer_waiting"] = await doctor.until("peer-waiting")

    await patient.send({"type": "offer", "sdp": SDP_SECURE})
    obs["offer_before_admit"] = await patient.until("error")
    obs["doctor_got_before_admit"] = await doctor.drain()

    await doctor.send({"type": "admit"})
    obs["admitted"] = (
        await doctor.until("admitted") is not None and await patient.until("admitted") is not None
    )
    obs["sockets"] = {"patient": patient, "doctor": doctor, "doctor_b": doctor_b}


async def _relay_phase(obs, counter: QueryCounter) -> None:
    patient, doctor = obs["sockets"]["patient"], obs["sockets"]["doctor"]
    before = counter.snapshot()
    await doctor.send({"type": "offer", "sdp": SDP_SECURE})
    offer = await patient.until("offer")
    await patient.send({"type": "answer", "sdp": SDP_SECURE})
    answer = await doctor.until("answer")
    await doctor.send({"type": "candidate", "candidate": CANDIDATE})
    candidate = await patient.until("candidate")
    obs["relayed"] = [m["type"] for m in (offer, answer, candidate) if m is not None]
    obs["relay_reads"] = counter.reads - before[0]
    obs["relay_writes"] = counter.writes - before[1]


async def _refused(sender: Socket, receiver: Socket, payload: dict) -> dict[str, Any]:
    await sender.send(payload)
    error = await sender.until("error")
    leaked = await receiver.drain()
    return {"error": error.get("code") if error else None, "leaked": [m["type"] for m in leaked]}


async def _refusal_phase(obs) -> None:
    patient, doctor = obs["sockets"]["patient"], obs["sockets"]["doctor"]
    obs["sdp_no_fingerprint"] = await _refused(
        doctor, patient, {"type": "offer", "sdp": SDP_NO_FINGERPRINT}
    )
    obs["sdp_sdes"] = await _refused(doctor, patient, {"type": "offer", "sdp": SDP_WITH_SDES})
    obs["media_type"] = await _refused(doctor, patient, {"type": "media", "payload": "AAAA" * 64})
    obs["recording_type"] = await _refused(doctor, patient, {"type": "record", "on": True})
    obs["binary_frame"] = await _binary_refused(doctor, patient)


async def _binary_refused(sender: Socket, receiver: Socket) -> dict[str, Any]:
    """A binary frame (what media through the server would look like) must go nowhere."""
    await sender.communicator.send_to(bytes_data=b"\x00\x01" * 512)
    try:
        error = await sender.until("error")
        outcome = error.get("code") if error else None
    except Closed as closed:
        outcome = f"closed {closed.code}"
    except Exception as exc:  # a consumer that crashes on bytes still relayed nothing
        outcome = f"crashed {type(exc).__name__}"
    leaked = [m["type"] for m in await receiver.drain() if m.get("type") != "peer-left"]
    return {"error": outcome, "leaked": leaked}


async def _supersede_phase(open_socket, obs) -> None:
    sockets = obs.pop("sockets")
    patient, doctor_b = sockets["patient"], sockets["doctor_b"]
    second = await open_socket("patient_a")
    obs["second_patient_welcome"] = await second.until("welcome")
    try:
        await patient.drain(TIMEOUT / 2)
    finally:
        obs["first_patient_close"] = patient.close_code
    obs["doctor_b_leak"] = [m["type"] for m in await doctor_b.drain()]
    obs["doctor_b_received_total"] = [m["type"] for m in doctor_b.received]
