"""Personas and shared fixtures (healthchecks style: alice, bob, … as roles here)."""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.utils import timezone

from consultations import services
from consultations.models import Membership, Practice

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from tests.support.deployment import PROFILE_SKIP

PASSWORD = "correct-horse-battery-staple"
_skip_reasons: Counter[str] = Counter()
_outcomes: Counter[str] = Counter()


def pytest_runtest_logreport(report):
    if report.skipped and isinstance(report.longrepr, tuple):
        _skip_reasons[report.longrepr[2].removeprefix("Skipped: ")] += 1
    if report.when == "call" or report.outcome != "passed":
        _outcomes[report.outcome] += 1


def pytest_sessionfinish(session, exitstatus):
    """Only profile skips are allowed; `scripts/run_tests.py` prints the counts and reasons."""
    stray = {r: n for r, n in _skip_reasons.items() if not r.startswith(PROFILE_SKIP)}
    if stray:
        lines = "\n".join(f"  {n} × {reason}" for reason, n in stray.items())
        print(f"\nFAILED: tests skipped for a reason other than the profile:\n{lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if report := os.environ.get("RC_RUN_REPORT"):
        Path(report).write_text(json.dumps({"outcomes": _outcomes, "skipped": _skip_reasons}))


def _close_in_every_thread(executor, threads: int, timeout: float = 10) -> None:
    """Run `connections.close_all` once in each of an executor's threads: a connection
    belongs to its thread. Each task waits for all the others, so no thread runs two."""
    from django.db import connections

    barrier = threading.Barrier(threads)

    def close() -> None:
        connections.close_all()
        barrier.wait(timeout)

    for future in [executor.submit(close) for _ in range(threads)]:
        future.result(timeout)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, and at its end, before the test database is dropped, the
    connections that long-lived threads keep (CONN_MAX_AGE) closed: they would keep
    PostgreSQL from dropping it. Only sessions that use the database set it up."""
    yield
    from asgiref.sync import SyncToAsync

    gc.collect()  # threads that ended (closed event loops' pools) leave theirs to the collector
    with django_db_blocker.unblock():
        _close_in_every_thread(SyncToAsync.single_thread_executor, 1)
        if "redconnect.asgi" in sys.modules:
            from redconnect.handler import THREADS

            _close_in_every_thread(sys.modules["redconnect.asgi"].django_asgi_app.executor, THREADS)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2 costs ~0.3 s a persona on two cores; tests don't need slow hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_member(practice: Practice, username: str, role: str, **extra):
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=True, **extra
    )
    Membership.objects.create(user=user, practice=practice, role=role)
    return user


@pytest.fixture
def practice(db):
    return Practice.objects.create(name="Praxis Dr. Alpha")


@pytest.fixture
def other_practice(db):
    return Practice.objects.create(name="Praxis Dr. Beta")


@pytest.fixture
def doctor(practice):
    return make_member(
        practice, "doc", Membership.Role.DOCTOR, first_name="Dora", last_name="Doktor"
    )


@pytest.fixture
def second_doctor(practice):
    return make_member(
        practice, "doc2", Membership.Role.DOCTOR, first_name="Zweit", last_name="Ärztin"
    )


@pytest.fixture
def staff(practice):
    return make_member(practice, "mfa", Membership.Role.STAFF)


@pytest.fixture
def auditor(practice):
    return make_member(practice, "auditor", Membership.Role.AUDITOR)


@pytest.fixture
def other_practice_doctor(other_practice):
    return make_member(other_practice, "otherdoc", Membership.Role.DOCTOR)


@pytest.fixture
def other_practice_staff(other_practice):
    return make_member(other_practice, "othermfa", Membership.Role.STAFF)


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)


@pytest.fixture
def issued(doctor) -> services.IssuedAppointment:
    """An appointment for now with its two clear codes."""
    return services.create_appointment(doctor=doctor)


@pytest.fixture
def redis_server():
    """A private redis-server on a free loopback port, stopped after the test."""
    from testservices import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def clock():
    """Frozen time: TOTP codes and lock-out windows are deterministic, each step chosen."""
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller
