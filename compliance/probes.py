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
from dataclasses import dataclass, field, replace
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

from compliance.registry import ProbeError, provides
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


def create_world(guests: int = 0) -> World:
    token = secrets.token_hex(4)
    practice = Practice.objects.create(name=PROBE_PRACTICE_NAME)
    doctor_a = _probe_user(token, "doctor-a", practice, Membership.Role.DOCTOR)
    doctor_b = _probe_user(token, "doctor-b", practice, Membership.Role.DOCTOR)
    staff = _probe_user(token, "staff", practice, Membership.Role.STAFF)
    now = timezone.now()
    # Scheduled in the past: the codes work only for the few minutes the probe needs.
    soon_past = now - services.VALID_AFTER_SCHEDULED + timedelta(minutes=10)
    a = services.create_appointment(doctor=doctor_a, scheduled_at=soon_past, now=now, guests=guests)
    b = services.create_appointment(
        doctor=doctor_b, scheduled_at=soon_past, now=now, guests=min(guests, 1)
    )
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
def committed_world(guests: int = 0) -> Iterator[World]:
    with isolated_layers():
        purge_stale_probe_objects()
        world = create_world(guests)
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

    def describe(self) -> str:
        """`HTTP 302 → /call/`, for evidence sentences."""
        where = urlsplit(self.location).path if self.location else ""
        return f"HTTP {self.status}" + (f" → {where}" if where else "")


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


@dataclass(frozen=True)
class HttpObservations:
    """What the HTTP probe saw, as the join page and the pages answered a browser."""

    join_page: Page
    public_pages: dict[str, Page]  # by URL name
    doctor_code_anonymous: JoinOutcome  # doctor's code, not logged in
    doctor_code_staff: JoinOutcome  # doctor's code, logged in as practice staff
    doctor_code_other_doctor: JoinOutcome  # appointment A's doctor code, doctor B logged in
    doctor_code_own_doctor: JoinOutcome  # appointment A's doctor code, its doctor logged in
    patient_join: JoinOutcome
    call_page: Page  # the call page as the joined patient gets it
    log_texts: list[str]  # every log record written while the probe ran


@provides(HttpObservations)
def http_probe() -> HttpObservations:
    """Everything the HTTP checks need, gathered in one rolled-back run."""
    capture = LogCapture()
    with rolled_back_world() as world, capture.attached():
        anonymous = probe_client()
        join_page = fetch(anonymous, reverse("join"))
        public_pages = {name: fetch(probe_client(), reverse(name)) for name in PUBLIC_PAGES}
        doctor_code_anonymous = outcome(join(anonymous, world.a.doctor_code))
        joined_as = {}
        for key, user in (
            ("staff", world.staff),
            ("other", world.doctor_b),
            ("own", world.doctor_a),
        ):
            client = probe_client()
            login(client, user)
            joined_as[key] = outcome(join(client, world.a.doctor_code))
        patient = probe_client()
        patient_join = outcome(join(patient, world.a.patient_code, PATIENT_NAME))
        call_page = fetch(patient, reverse("call"))
    return HttpObservations(
        join_page=join_page,
        public_pages=public_pages,
        doctor_code_anonymous=doctor_code_anonymous,
        doctor_code_staff=joined_as["staff"],
        doctor_code_other_doctor=joined_as["other"],
        doctor_code_own_doctor=joined_as["own"],
        patient_join=patient_join,
        call_page=call_page,
        log_texts=capture.texts(),
    )


@dataclass(frozen=True)
class BoardStartObservations:
    """The board's one-click start (`POST /praxis/ID/start`) of appointment A, per persona."""

    anonymous: JoinOutcome  # not logged in
    staff: JoinOutcome  # logged in as practice staff of A's practice
    other_doctor: JoinOutcome  # doctor B (another practice)
    own_doctor: JoinOutcome  # A's own doctor


@provides(BoardStartObservations)
def board_start_probe() -> BoardStartObservations:
    """Each persona presses "start" on the board, in one rolled-back run."""
    with rolled_back_world() as world:
        try:
            path = reverse("board-start", args=[world.a.appointment.pk])
        except NoReverseMatch as missing:
            # No board in this URL configuration: its checks fail with this reason.
            raise ProbeError("no URL named board-start") from missing
        outcomes = {}
        for key, user in (
            ("anonymous", None),
            ("staff", world.staff),
            ("other_doctor", world.doctor_b),
            ("own_doctor", world.doctor_a),
        ):
            client = probe_client()
            if user is not None:
                login(client, user)
            outcomes[key] = outcome(client.post(path))
    return BoardStartObservations(**outcomes)


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


@dataclass(frozen=True)
class Refusal:
    """What a refused frame led to: the sender's error code, what reached the receiver."""

    error: str | None
    leaked: list[str]


@dataclass(frozen=True)
class ConnectPhase:
    no_session_close: int | None  # close code for a socket without join session; None: open
    patient_waiting: dict | None
    connect_queries: int  # SQL statements while patient and doctors connected (counter sanity)
    doctor_b_welcome: dict | None  # the doctor of appointment B
    doctor_b_first: list[dict]
    doctor_peer_waiting: dict | None  # appointment A's doctor told that the patient waits
    offer_before_admit: dict | None  # the patient's error reply to an early offer
    doctor_got_before_admit: list[dict]
    admitted: bool  # both sides got "admitted" after the doctor's admit


@dataclass(frozen=True)
class RelayPhase:
    relayed: list[str]  # message types that reached the other side
    reads: int
    writes: int


@dataclass(frozen=True)
class RefusalPhase:
    sdp_no_fingerprint: Refusal
    sdp_sdes: Refusal
    media_type: Refusal
    recording_type: Refusal
    binary_frame: Refusal


@dataclass(frozen=True)
class SupersedePhase:
    second_patient_welcome: dict | None
    first_patient_close: int | None
    doctor_b_received: list[str]  # every message type B's doctor got during the run


@dataclass(frozen=True)
class WebSocketObservations:
    """The signaling scenario's phases; a phase the run did not reach is None."""

    connect: ConnectPhase | None = None
    relay: RelayPhase | None = None
    refusals: RefusalPhase | None = None
    supersede: SupersedePhase | None = None
    error: str | None = None


def _phase(value, ws: WebSocketObservations):
    if value is None:
        raise ProbeError(ws.error or "the signaling scenario stopped before this phase")
    return value


@provides(ConnectPhase)
def connect_phase(ws: WebSocketObservations) -> ConnectPhase:
    return _phase(ws.connect, ws)


@provides(RelayPhase)
def relay_phase(ws: WebSocketObservations) -> RelayPhase:
    return _phase(ws.relay, ws)


@provides(RefusalPhase)
def refusal_phase(ws: WebSocketObservations) -> RefusalPhase:
    return _phase(ws.refusals, ws)


@provides(SupersedePhase)
def supersede_phase(ws: WebSocketObservations) -> SupersedePhase:
    return _phase(ws.supersede, ws)


class _JoinRefused(Exception):
    """A persona's join was refused, so a socket scenario cannot start."""


def _join_cookies(world: World, *personas: tuple[str, str, Any, str]) -> dict[str, dict]:
    """Join each persona `(key, code, user or None, name)` over HTTP; their cookies by key.

    A user is logged in first. The first refused join raises `_JoinRefused` naming the
    persona and the HTTP status, which the scenario reports as its error.
    """
    clients = {}
    for key, code, user, name in personas:
        client = probe_client()
        if user is not None:
            login(client, user, world)
        joined = outcome(join(client, code, name))
        if not joined.joined:
            raise _JoinRefused(f"join as {key} refused (HTTP {joined.status})")
        clients[key] = _cookies(client)
    return clients


@provides(WebSocketObservations)
def websocket_probe() -> WebSocketObservations:
    """Run the signaling scenario against the real consumer (committed probe objects)."""
    with committed_world() as world, LogCapture().attached():
        try:
            clients = _join_cookies(
                world,
                ("patient_a", world.a.patient_code, None, PATIENT_NAME),
                ("doctor_a", world.a.doctor_code, world.doctor_a, ""),
                ("doctor_b", world.b.doctor_code, world.doctor_b, ""),
            )
        except _JoinRefused as refused:
            return WebSocketObservations(error=str(refused))
        counter = QueryCounter()
        with counter.installed():
            return async_to_sync(_scenario)(websocket_application(), clients, counter)


async def _scenario(app, cookies, counter: QueryCounter) -> WebSocketObservations:
    sockets: list[Socket] = []
    phases: dict[str, Any] = {}

    async def open_socket(key: str | None) -> Socket:
        socket = Socket(app, cookies.get(key, {}) if key else {})
        sockets.append(socket)
        await socket.connect()
        return socket

    try:
        phases["connect"], peers = await _connect_phase(open_socket, counter)
        phases["relay"] = await _relay_phase(peers, counter)
        phases["refusals"] = await _refusal_phase(peers)
        phases["supersede"] = await _supersede_phase(open_socket, peers)
    except Exception as exc:  # the phases so far still count
        phases["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    finally:
        for socket in sockets:
            await socket.close()
    return WebSocketObservations(**phases)


async def _first_or_close(socket: Socket) -> dict | int | None:
    try:
        return await socket.next()
    except Closed as closed:
        return closed.code


@dataclass
class _Peers:
    patient: Socket
    doctor: Socket
    doctor_b: Socket


async def _connect_phase(open_socket, counter: QueryCounter) -> tuple[ConnectPhase, _Peers]:
    anonymous = await open_socket(None)
    first = await _first_or_close(anonymous)
    if isinstance(first, dict):  # accepted: does it close right after?
        first = await _first_or_close(anonymous)

    before = counter.snapshot()
    patient = await open_socket("patient_a")
    await patient.until("welcome")
    patient_waiting = await patient.until("waiting")

    doctor_b = await open_socket("doctor_b")
    doctor_b_welcome = await doctor_b.until("welcome")
    doctor_b_first = await doctor_b.drain()

    doctor = await open_socket("doctor_a")
    await doctor.until("welcome")
    doctor_peer_waiting = await doctor.until("peer-waiting")
    # Counter sanity over all three connects: a patient's connect may find its
    # appointment in the cache (consultations.appointment_cache); a doctor's reads the
    # login and the membership from the database.
    connect_queries = counter.reads - before[0] + counter.writes - before[1]

    await patient.send({"type": "offer", "sdp": SDP_SECURE})
    offer_before_admit = await patient.until("error")
    doctor_got_before_admit = await doctor.drain()

    await doctor.send({"type": "admit"})
    admitted = (
        await doctor.until("admitted") is not None and await patient.until("admitted") is not None
    )
    phase = ConnectPhase(
        no_session_close=first if isinstance(first, int) else None,
        patient_waiting=patient_waiting,
        connect_queries=connect_queries,
        doctor_b_welcome=doctor_b_welcome,
        doctor_b_first=doctor_b_first,
        doctor_peer_waiting=doctor_peer_waiting,
        offer_before_admit=offer_before_admit,
        doctor_got_before_admit=doctor_got_before_admit,
        admitted=admitted,
    )
    return phase, _Peers(patient, doctor, doctor_b)


async def _relay_phase(peers: _Peers, counter: QueryCounter) -> RelayPhase:
    patient, doctor = peers.patient, peers.doctor
    before = counter.snapshot()
    await doctor.send({"type": "offer", "sdp": SDP_SECURE})
    offer = await patient.until("offer")
    await patient.send({"type": "answer", "sdp": SDP_SECURE})
    answer = await doctor.until("answer")
    await doctor.send({"type": "candidate", "candidate": CANDIDATE})
    candidate = await patient.until("candidate")
    return RelayPhase(
        relayed=[m["type"] for m in (offer, answer, candidate) if m is not None],
        reads=counter.reads - before[0],
        writes=counter.writes - before[1],
    )


async def _refused(sender: Socket, receiver: Socket, payload: dict) -> Refusal:
    await sender.send(payload)
    error = await sender.until("error")
    leaked = await receiver.drain()
    return Refusal(error.get("code") if error else None, [m["type"] for m in leaked])


async def _refusal_phase(peers: _Peers) -> RefusalPhase:
    patient, doctor = peers.patient, peers.doctor
    return RefusalPhase(
        sdp_no_fingerprint=await _refused(
            doctor, patient, {"type": "offer", "sdp": SDP_NO_FINGERPRINT}
        ),
        sdp_sdes=await _refused(doctor, patient, {"type": "offer", "sdp": SDP_WITH_SDES}),
        media_type=await _refused(doctor, patient, {"type": "media", "payload": "AAAA" * 64}),
        recording_type=await _refused(doctor, patient, {"type": "record", "on": True}),
        binary_frame=await _binary_refused(doctor, patient),
    )


async def _binary_refused(sender: Socket, receiver: Socket) -> Refusal:
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
    return Refusal(outcome, leaked)


async def _supersede_phase(open_socket, peers: _Peers) -> SupersedePhase:
    second = await open_socket("patient_a")
    second_welcome = await second.until("welcome")
    try:
        await peers.patient.drain(TIMEOUT / 2)
    finally:
        first_close = peers.patient.close_code
    await peers.doctor_b.drain()
    return SupersedePhase(
        second_patient_welcome=second_welcome,
        first_patient_close=first_close,
        doctor_b_received=[m["type"] for m in peers.doctor_b.received],
    )


# --- WebSocket: a call with guests (§ 5 Nr. 3, 4, 5 for more than two people) ---------

GUEST_NAME = "Prüfsonde Begleitperson"
# What a waiting person must never hear of the call it waits for (Nr. 4).
CALL_SIGNALING = frozenset(
    {"offer", "answer", "candidate", "participant-joined", "participant-left", "peer-left"}
)


@dataclass(frozen=True)
class GuestAccessPhase:
    """Nr. 3: which appointment each code of A and B opens; who hears of A's guests."""

    codes_to_own: dict[str, bool]  # "A patient", "A guest 1", "B guest 1" … → opens its own
    doctor_a_waiting_roles: list[str]  # roles of the peer-waiting messages A's doctor got
    doctor_b_received: list[dict]  # every message B's doctor got while A's people joined


@dataclass(frozen=True)
class GuestWaitingPhase:
    """Nr. 4: what waiting people received while the others were in the call."""

    patient_waiting_received: list[str]  # patient waited while doctor and guest 2 talked
    guest_waiting_received: list[str]  # guest 1 waited throughout
    removed_received: list[str]  # guest 2 after it was sent back to the waiting room
    removed_told_waiting: bool
    admitted_talked: bool  # the admitted people did get their offers/answers


@dataclass(frozen=True)
class MeshPhase:
    """Nr. 5: addressed relays between admitted people, refusals for everyone else."""

    delivered: dict[str, bool]  # "doctor→guest" … → reached its addressee with its `from`
    misdelivered: list[str]  # "offer→doctor": a relay that reached someone not addressed
    to_waiting_guest: Refusal  # the doctor's offer `to` a waiting guest
    from_patient_to_waiting: Refusal  # the patient's candidate `to` the waiting guest
    to_other_appointment: Refusal  # the doctor's offer `to` appointment B's doctor
    from_waiting_guest: Refusal  # a waiting guest's offer


@dataclass(frozen=True)
class GuestObservations:
    access: GuestAccessPhase | None = None
    waiting: GuestWaitingPhase | None = None
    mesh: MeshPhase | None = None
    error: str | None = None


@provides(GuestAccessPhase)
def guest_access_phase(ws: GuestObservations) -> GuestAccessPhase:
    return _phase(ws.access, ws)


@provides(GuestWaitingPhase)
def guest_waiting_phase(ws: GuestObservations) -> GuestWaitingPhase:
    return _phase(ws.waiting, ws)


@provides(MeshPhase)
def mesh_phase(ws: GuestObservations) -> MeshPhase:
    return _phase(ws.mesh, ws)


def _codes_to_own(world: World) -> dict[str, bool]:
    codes = {
        "A patient": (world.a.patient_code, world.a),
        "B patient": (world.b.patient_code, world.b),
    }
    for issued, letter in ((world.a, "A"), (world.b, "B")):
        for number, code in enumerate(issued.guest_codes, start=1):
            codes[f"{letter} guest {number}"] = (code, issued)
    found = {}
    for label, (code, issued) in codes.items():
        match = services.find_by_code(code)
        found[label] = match is not None and match.appointment.pk == issued.appointment.pk
    return found


@provides(GuestObservations)
def guest_probe() -> GuestObservations:
    """A call of appointment A with doctor, patient and two guests; B's doctor beside it."""
    with committed_world(guests=2) as world, LogCapture().attached():
        codes_to_own = _codes_to_own(world)
        try:
            clients = _join_cookies(
                world,
                ("doctor_a", world.a.doctor_code, world.doctor_a, ""),
                ("doctor_b", world.b.doctor_code, world.doctor_b, ""),
                ("patient", world.a.patient_code, None, PATIENT_NAME),
                ("guest1", world.a.guest_codes[0], None, GUEST_NAME),
                ("guest2", world.a.guest_codes[1], None, GUEST_NAME),
            )
        except _JoinRefused as refused:
            return GuestObservations(error=str(refused))
        return async_to_sync(_guest_scenario)(websocket_application(), clients, codes_to_own)


async def _guest_scenario(app, cookies, codes_to_own) -> GuestObservations:
    sockets: dict[str, Socket] = {}
    ids: dict[str, str] = {}
    phases: dict[str, Any] = {}

    async def open_socket(key: str) -> Socket:
        socket = Socket(app, cookies[key])
        sockets[key] = socket
        await socket.connect()
        welcome = await socket.until("welcome")
        ids[key] = str((welcome or {}).get("id") or f"<no id: {key}>")
        return socket

    try:
        phases["access"] = await _guest_access(open_socket, codes_to_own)
        marks: dict[str, int] = {}  # where each waiting person's messages begin
        phases["waiting"], talked = await _guest_waiting(sockets, ids, marks)
        phases["mesh"] = await _mesh(sockets, ids, talked)
        phases["waiting"] = await _guest_removed(sockets, ids, marks, phases["waiting"])
    except Exception as exc:  # the phases so far still count
        phases["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    finally:
        for socket in sockets.values():
            await socket.close()
    return GuestObservations(**phases)


def _types(messages: list[dict]) -> list[str]:
    return [m.get("type", "?") for m in messages]


async def _guest_access(open_socket, codes_to_own) -> GuestAccessPhase:
    doctor_b = await open_socket("doctor_b")
    await doctor_b.drain()
    doctor = await open_socket("doctor_a")
    await doctor.drain()
    for key in ("patient", "guest1", "guest2"):
        await open_socket(key)
        await doctor.until("peer-waiting")  # arrives in order: read by the doctor below
    waiting = [m for m in doctor.received if m.get("type") == "peer-waiting"]
    await doctor_b.drain()
    doctor_b_received = [m for m in doctor_b.received if m.get("type") != "welcome"]
    return GuestAccessPhase(
        codes_to_own=codes_to_own,
        doctor_a_waiting_roles=[str(m.get("role")) for m in waiting],
        doctor_b_received=doctor_b_received,
    )


async def _relayed(sender: Socket, receiver: Socket, payload: dict, sender_id: str) -> bool:
    await sender.send(payload)
    got = await receiver.until(payload["type"])
    return got is not None and got.get("from") == sender_id


async def _guest_waiting(sockets, ids, marks) -> tuple[GuestWaitingPhase, dict[str, bool]]:
    doctor, patient = sockets["doctor_a"], sockets["patient"]
    guest1, guest2 = sockets["guest1"], sockets["guest2"]
    for socket in (patient, guest1, guest2):
        await socket.drain()  # welcome and "waiting" of their own
    marks.update({key: len(sockets[key].received) for key in ("patient", "guest1")})

    # Doctor and guest 2 talk while patient and guest 1 wait.
    await doctor.send({"type": "admit", "id": ids["guest2"]})
    await guest2.until("admitted")
    talked = {
        "doctor→guest": await _relayed(
            doctor,
            guest2,
            {"type": "offer", "sdp": SDP_SECURE, "to": ids["guest2"]},
            ids["doctor_a"],
        ),
        "guest→doctor": await _relayed(
            guest2,
            doctor,
            {"type": "answer", "sdp": SDP_SECURE, "to": ids["doctor_a"]},
            ids["guest2"],
        ),
    }
    await doctor.send({"type": "candidate", "candidate": CANDIDATE, "to": ids["guest2"]})
    await guest2.until("candidate")
    await patient.drain()
    patient_waiting = _types(patient.received[marks["patient"] :])

    # The patient is admitted; guest 2 (admitted earlier) offers to the patient.
    await doctor.send({"type": "admit", "id": ids["patient"]})
    await patient.until("admitted")
    await guest2.until("participant-joined")
    talked["guest→patient"] = await _relayed(
        guest2, patient, {"type": "offer", "sdp": SDP_SECURE, "to": ids["patient"]}, ids["guest2"]
    )
    talked["patient→guest"] = await _relayed(
        patient, guest2, {"type": "answer", "sdp": SDP_SECURE, "to": ids["guest2"]}, ids["patient"]
    )
    talked["doctor→patient"] = await _relayed(
        doctor, patient, {"type": "offer", "sdp": SDP_SECURE, "to": ids["patient"]}, ids["doctor_a"]
    )
    await guest1.drain()
    phase = GuestWaitingPhase(
        patient_waiting_received=patient_waiting,
        guest_waiting_received=_types(guest1.received[marks["guest1"] :]),
        removed_received=[],
        removed_told_waiting=False,
        admitted_talked=all(talked.values()),
    )
    return phase, talked


async def _mesh(sockets, ids, talked: dict[str, bool]) -> MeshPhase:
    doctor, patient, guest1 = sockets["doctor_a"], sockets["patient"], sockets["guest1"]
    guest2, doctor_b = sockets["guest2"], sockets["doctor_b"]
    # Relays go pairwise: each relay reached its addressee once and nobody else.
    expected = {
        "doctor": (doctor, {"answer": 1}),
        "patient": (patient, {"offer": 2}),
        "guest": (guest2, {"offer": 1, "answer": 1, "candidate": 1}),
    }
    misdelivered = []
    for key, (socket, counts) in expected.items():
        await socket.drain()
        types = _types(socket.received)
        misdelivered += [
            f"{kind}→{key}"
            for kind in ("offer", "answer", "candidate")
            if types.count(kind) > counts.get(kind, 0)
        ]
    to_waiting = await _refused(
        doctor, guest1, {"type": "offer", "sdp": SDP_SECURE, "to": ids["guest1"]}
    )
    from_patient = await _refused(
        patient, guest1, {"type": "candidate", "candidate": CANDIDATE, "to": ids["guest1"]}
    )
    to_other = await _refused(
        doctor, doctor_b, {"type": "offer", "sdp": SDP_SECURE, "to": ids["doctor_b"]}
    )
    from_waiting = await _refused(guest1, doctor, {"type": "offer", "sdp": SDP_SECURE})
    return MeshPhase(
        delivered=dict(talked),
        misdelivered=misdelivered,
        to_waiting_guest=to_waiting,
        from_patient_to_waiting=from_patient,
        to_other_appointment=to_other,
        from_waiting_guest=from_waiting,
    )


async def _guest_removed(sockets, ids, marks, phase: GuestWaitingPhase) -> GuestWaitingPhase:
    doctor, patient, guest1, guest2 = (
        sockets[k] for k in ("doctor_a", "patient", "guest1", "guest2")
    )
    await doctor.send({"type": "remove", "id": ids["guest2"]})
    told_waiting = await guest2.until("waiting") is not None
    mark_removed = len(guest2.received)
    await patient.until("participant-left")
    await _relayed(
        doctor,
        patient,
        {"type": "candidate", "candidate": CANDIDATE, "to": ids["patient"]},
        ids["doctor_a"],
    )
    await _relayed(patient, doctor, {"type": "answer", "sdp": SDP_SECURE}, ids["patient"])
    await guest2.drain()
    await guest1.drain()
    # Guest 1 waited through every phase, the refused relays to it included; its own
    # refused offer's error reply is not signaling of the call.
    since_waiting = guest1.received[marks["guest1"] :]
    return replace(
        phase,
        guest_waiting_received=[t for t in _types(since_waiting) if t != "error"],
        removed_received=_types(guest2.received[mark_removed:]),
        removed_told_waiting=told_waiting,
    )
