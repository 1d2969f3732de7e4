"""Faults in the production profile: Redis restarted, PostgreSQL briefly unavailable.

(a) Redis goes away while a patient waits and while a call is admitted. The server
processes keep running; the clients reconnect on their own (as the call page does) and
signaling works again within 5 s of Redis being back.
(b) PostgreSQL goes away: `/healthz` answers 503, the join page and the login answer
with the German "try again" page (503), never a traceback, and nothing half-written
remains once the database is back.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from django.db import OperationalError
from django.test import RequestFactory
from django.utils import translation

from tests.support.callclient import CallSocket, HttpSession, make_sdp
from tests.support.deployment import skip_in_production_run, two_servers

pytestmark = [pytest.mark.redis]

PATIENT_NAME = "Frieda Fehlerfall"
BACK_WITHIN = 5.0
CLOSE_TRY_AGAIN = 4503  # contract-level deadline: signaling works again this soon


# --- (b) in-process: the error handlers ---------------------------------------------------


def test_server_error_handler_turns_database_errors_into_503():
    from redconnect.middleware import server_error

    request = RequestFactory().get("/")
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        with translation.override("de"):
            response = server_error(request)
    assert response.status_code == 503
    assert response["Retry-After"]
    page = response.content.decode()
    assert 'lang="de"' in page and "Vorübergehend nicht erreichbar" in page
    assert "OperationalError" not in page and "Traceback" not in page


def test_server_error_handler_other_errors_get_plain_500_page():
    from redconnect.middleware import server_error

    request = RequestFactory().get("/")
    try:
        raise ValueError("secret internals")
    except ValueError:
        with translation.override("de"):
            response = server_error(request)
    assert response.status_code == 500
    page = response.content.decode()
    assert "Es ist ein Fehler aufgetreten" in page
    assert "secret internals" not in page and "Traceback" not in page


# --- live deployment -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with two_servers(tmp_path_factory.mktemp("faults")) as deployment:
        yield deployment


def count_rows(deployment, table: str) -> int:
    """Rows in a table, read straight from PostgreSQL (no Django start-up per count)."""
    import psycopg

    with psycopg.connect(deployment.postgres.url.replace("postgres://", "postgresql://")) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608


def server_connections(deployment) -> set[tuple[int, str]]:
    """The servers' connections to PostgreSQL (backend pid, start), without this one."""
    import psycopg

    with psycopg.connect(deployment.postgres.url.replace("postgres://", "postgresql://")) as db:
        rows = db.execute(
            "SELECT pid, backend_start::text FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return set(rows)


def settled_connections(deployment, timeout: float = 5) -> set[tuple[int, str]]:
    """`server_connections` once it stops changing (a request closes its connection
    just after its response)."""
    deadline = time.monotonic() + timeout
    seen = server_connections(deployment)
    while True:
        time.sleep(0.3)
        now = server_connections(deployment)
        if now == seen or time.monotonic() > deadline:
            return now
        seen = now


def wait_for_health(server_url: str, status: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    session = HttpSession(server_url)
    while True:
        if session.get("/healthz").status == status:
            return
        assert time.monotonic() < deadline, f"/healthz never answered {status}"
        time.sleep(0.05)


def assert_try_again_page(response) -> None:
    assert response.status == 503, (response.status, response.body[:500])
    assert 'lang="de"' in response.body
    assert "Vorübergehend nicht erreichbar" in response.body
    for leak in ("Traceback", "OperationalError", "psycopg", "connection refused", "5432"):
        assert leak not in response.body


@skip_in_production_run()
def test_database_outage_answers_try_again_and_writes_nothing(deployment):
    server = deployment.servers[0]
    appointment = deployment.appointment()
    patient = HttpSession(server.url)
    token = patient.csrf_token("/")
    doctor = HttpSession(server.url)
    doctor.csrf_token("/admin/login/")
    sessions_before = count_rows(deployment, "django_session")
    appointments_before = count_rows(deployment, "consultations_appointment")

    deployment.postgres.pause()
    try:
        wait_for_health(server.url, 503)
        # More failed-looking attempts than the join limit: none may count as a failure.
        for _attempt in range(22):
            response = patient.post_form(
                "/", {"code": "ZZZZ-ZZZZ-ZZZZ", "name": "X", "consent": "on"}
            )
            assert_try_again_page(response)
        assert_try_again_page(patient.join(appointment["patient_code"], PATIENT_NAME))
        assert_try_again_page(
            doctor.post_form(
                "/admin/login/?next=/admin/",
                {"username": deployment.doctor, "password": deployment.seed["doctor"]["password"]},
            )
        )
        assert token  # the form page itself needed no database
        # The practice API answers in JSON, as always.
        api = HttpSession(server.url).request(
            "GET",
            f"/api/v1/appointments/{appointment['id']}",
            headers={"Authorization": "Bearer rc_" + "k" * 40},  # well-formed: needs the DB
        )
        assert api.status == 503 and api.headers["content-type"] == "application/json"
        assert "error" in json.loads(api.body)
    finally:
        deployment.postgres.resume()

    wait_for_health(server.url, 200)
    assert count_rows(deployment, "django_session") == sessions_before
    assert count_rows(deployment, "consultations_appointment") == appointments_before
    # The outage left no trace: the same client joins at once (no failure was counted).
    response = patient.join(appointment["patient_code"], PATIENT_NAME)
    assert response.status == 302 and response.location.endswith("/call/")
    doctor.login(deployment.doctor, deployment.seed["doctor"]["password"])
    assert count_rows(deployment, "django_session") == sessions_before + 1
    for line in server.output().splitlines():
        assert "Traceback" not in line


@skip_in_production_run()
async def test_connects_and_requests_keep_their_database_connections(deployment):
    """CONN_MAX_AGE: the consumers' database threads keep their connections for all connects
    (a doctor's connect reads login and appointment), and so do the page requests' pool
    threads (redconnect.handler); a database restart breaks the kept ones and the next
    connect and request replace them by themselves."""
    doctor_http, patient_http = joined_call(deployment)

    async def doctor_connects() -> None:
        socket = CallSocket(doctor_http)
        try:
            assert (await socket.connect())["type"] == "welcome"
        finally:
            await socket.close()

    def page_requests() -> None:
        for _request in range(3):
            assert patient_http.get("/call/").status == 200  # reads the appointment
            assert doctor_http.get("/").status == 200  # reads the login session

    before = settled_connections(deployment)
    await doctor_connects()
    kept = settled_connections(deployment)
    # The connect's (its session and its join check may use two threads), still open.
    assert kept - before, "the connect closed its database connection"
    await doctor_connects()
    assert settled_connections(deployment) == kept, "a second connect opened another one"
    page_requests()
    with_pages = settled_connections(deployment)
    # One after another, the requests share a pool thread and its connection.
    assert kept <= with_pages and len(with_pages - kept) <= 2, with_pages - kept
    page_requests()
    assert settled_connections(deployment) == with_pages, "requests opened new connections"

    deployment.postgres.pause()
    try:
        wait_for_health(deployment.servers[0].url, 503)
    finally:
        deployment.postgres.resume()
    wait_for_health(deployment.servers[0].url, 200)
    assert not with_pages & server_connections(deployment)  # the restart ended them
    await doctor_connects()  # no server restart needed
    page_requests()
    assert 0 < len(settled_connections(deployment)) <= len(with_pages)


# --- (a) Redis restarted -------------------------------------------------------------------


class Participant:
    """A scripted browser tab: stays connected, reconnects after a drop, plays its role.

    The doctor admits whoever waits and sends a fresh offer on every `admitted` (as the
    call page does); the patient answers every offer. `events` records what arrived.
    """

    def __init__(self, session: HttpSession, role: str):
        self.socket = CallSocket(session)
        self.role = role
        self.events: list[tuple[float, dict]] = []
        self.closes: list[int | None] = []
        self.connects = 0
        self._task: asyncio.Task | None = None
        self._offers = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        while task is not None and not task.done():
            # Python 3.11's asyncio.wait_for (in the socket's recv) can swallow a
            # cancellation that races with its result: cancel again until it ends.
            task.cancel()
            await asyncio.wait({task}, timeout=1)
        await self.socket.close()

    def describe(self) -> str:
        return f"closes {self.closes}, events {[m['type'] for _at, m in self.events]}"

    def seen_since(self, kind: str, since: float) -> list[dict]:
        return [message for at, message in self.events if at >= since and message["type"] == kind]

    async def wait_for(self, kind: str, since: float, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while not self.seen_since(kind, since):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.role}: no {kind} within {timeout}s; closes {self.closes}, "
                    f"events {[m['type'] for _at, m in self.events]}"
                )
            await asyncio.sleep(0.02)
        return self.seen_since(kind, since)[0]

    async def _run(self) -> None:
        while True:
            try:
                welcome = await self.socket.connect_with_retry(time.monotonic() + 3600)
                self.connects += 1
                await self._handle(welcome)
                while True:
                    await self._handle(await self.socket.recv(timeout=3600))
            except websockets.ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
                await self.socket.close()
                await asyncio.sleep(self.socket.next_delay())

    async def _handle(self, message: dict) -> None:
        self.events.append((time.monotonic(), message))
        kind = message["type"]
        if self.role == "doctor" and kind == "peer-waiting":
            await self.socket.send({"type": "admit"})
        elif self.role == "doctor" and kind == "admitted":
            self._offers += 1
            await self.socket.send({"type": "offer", "sdp": make_sdp(f"faultoffer{self._offers}")})
        elif self.role == "patient" and kind == "offer":
            await self.socket.send({"type": "answer", "sdp": make_sdp("faultanswer")})


def joined_call(deployment) -> tuple[HttpSession, HttpSession]:
    server_a, server_b = deployment.servers
    appointment = deployment.appointment()
    doctor = HttpSession(server_a.url)
    doctor.login(deployment.doctor, deployment.seed["doctor"]["password"])
    assert doctor.join(appointment["doctor_code"]).status == 302
    patient = HttpSession(server_b.url)
    assert patient.join(appointment["patient_code"], PATIENT_NAME).status == 302
    return doctor, patient


async def restart_redis(deployment, *participants: Participant) -> float:
    """Stop Redis (its data is gone) and start it again on the same port once every
    participant has been cut off and has failed to reconnect at least once, so that
    the clients' back-off has grown as it would during a real restart."""
    failed_before = {p: p.socket.failed_attempts for p in participants}
    deployment.redis.stop()
    for server in deployment.servers:
        await asyncio.to_thread(wait_for_health, server.url, 503)
    deadline = time.monotonic() + 15
    while any(p.socket.failed_attempts == failed_before[p] for p in participants):
        assert time.monotonic() < deadline, "the clients never noticed that Redis was gone"
        await asyncio.sleep(0.02)
    deployment.redis.start()
    return time.monotonic()


@skip_in_production_run()
async def test_redis_restart_during_admitted_call(deployment):
    doctor_http, patient_http = joined_call(deployment)
    doctor, patient = Participant(doctor_http, "doctor"), Participant(patient_http, "patient")
    try:
        doctor.start()
        started = time.monotonic()
        await doctor.wait_for("welcome", started, 10)
        patient.start()
        await doctor.wait_for("answer", started, 10)

        back = await restart_redis(deployment, doctor, patient)

        # Reconnected on their own, re-admitted, negotiated again: a fresh answer arrives.
        try:
            await doctor.wait_for("answer", back, BACK_WITHIN)
        except AssertionError as failure:
            logs = "\n".join(server.output()[-3000:] for server in deployment.servers)
            raise AssertionError(f"{failure}\npatient: {patient.describe()}\n{logs}") from None
        await patient.wait_for("offer", back, 0.5)
        for server in deployment.servers:
            assert server.process.poll() is None, "a server process died"
            # One warning per connection, no traceback (the consumer closes cleanly).
            assert "Traceback" not in server.output()
        # Closed with "try again later" (like HTTP 503), which the call page retries.
        assert CLOSE_TRY_AGAIN in doctor.closes and CLOSE_TRY_AGAIN in patient.closes
    finally:
        await doctor.stop()
        await patient.stop()


@skip_in_production_run()
async def test_redis_restart_while_patient_waits(deployment):
    doctor_http, patient_http = joined_call(deployment)
    patient = Participant(patient_http, "patient")
    doctor = Participant(doctor_http, "doctor")
    try:
        started = time.monotonic()
        patient.start()
        await patient.wait_for("waiting", started, 10)

        await restart_redis(deployment, patient)

        # The doctor arrives after the restart: the waiting patient is seen and admitted.
        arrived = time.monotonic()
        doctor.start()
        await doctor.wait_for("peer-waiting", arrived, BACK_WITHIN)
        await doctor.wait_for("answer", arrived, BACK_WITHIN)
        for server in deployment.servers:
            assert server.process.poll() is None, "a server process died"
    finally:
        await doctor.stop()
        await patient.stop()
