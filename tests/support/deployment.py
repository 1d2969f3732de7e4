"""A throw-away production-like deployment: PostgreSQL, Redis and `manage.py serve`s.

Used by the multi-process, log-privacy and fault tests. Every server is a child
process on a free loopback port and is stopped by `Deployment.stop()`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.live import ServeProcess, embedded_env, manage, manage_json

DEMO_PASSWORD = "demo-password-for-tests-9f3a"


# Every skip reason starts with this: `make test` fails on any other skip (tests/conftest.py),
# because a test that skips itself on a fresh machine hides a missing install step.
PROFILE_SKIP = "other profile: "


def production_profile() -> bool:
    """True in the second `make test` run (the suite against PostgreSQL + Redis)."""
    return bool(os.environ.get("REDIS_URL"))


def skip_in_production_run() -> pytest.MarkDecorator:
    """For tests that start their own PostgreSQL + Redis: one run proves them."""
    return pytest.mark.skipif(
        production_profile(),
        reason=PROFILE_SKIP
        + "starts its own PostgreSQL + Redis deployment; the first run already ran it",
    )


def skip_other_profile(reason: str):
    """Skip a test that belongs to the other `make test` profile (the only allowed skip)."""
    pytest.skip(PROFILE_SKIP + reason)


def require_tool(name: str) -> str:
    """The path of a program the test needs; a missing one fails the test, never skips it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: `make test` installs it (scripts/debian-packages.txt)",
            pytrace=False,
        )
    return path


@dataclass
class Deployment:
    env: dict[str, str]
    redis: object | None = None
    postgres: object | None = None
    servers: list[ServeProcess] = field(default_factory=list)
    seed: dict = field(default_factory=dict)

    def serve(self, **extra_env: str) -> ServeProcess:
        server = ServeProcess({**self.env, **extra_env}).start()
        self.servers.append(server)
        return server

    def appointment(self) -> dict:
        """A new appointment for now, through the operator's command (clear codes)."""
        return manage_json(self.env, "create_appointment", "--doctor", self.doctor)

    @property
    def doctor(self) -> str:
        return self.seed["doctor"]["username"]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()


@contextmanager
def two_servers(workdir: Path) -> Iterator[Deployment]:
    """A deployment with two server processes sharing its PostgreSQL and Redis; stopped after.

    For tests of what must hold across processes (a call split over both, one failing).
    """
    deployment = start_deployment(workdir)
    try:
        deployment.serve()
        deployment.serve()
        yield deployment
    finally:
        deployment.stop()


def start_deployment(
    workdir: Path, *, postgres: bool = True, redis: bool = True, **extra: str
) -> Deployment:
    """Start the services, migrate and seed; servers are started with `serve()`."""
    from testservices import PostgresServer, RedisServer

    deployment = Deployment(env={})
    try:
        settings_env: dict[str, str] = {"DEMO_PASSWORD": DEMO_PASSWORD}
        if redis:
            deployment.redis = RedisServer().start()
            settings_env["REDIS_URL"] = deployment.redis.url
        if postgres:
            deployment.postgres = PostgresServer().start()
            settings_env["DATABASE_URL"] = deployment.postgres.url
        if redis or postgres:
            settings_env["SECRET_KEY"] = secrets.token_urlsafe(50)
        deployment.env = embedded_env(workdir, **settings_env, **extra)
        manage(deployment.env, "migrate", "-v0")
        deployment.seed = manage_json(deployment.env, "seed_demo")
        deployment.seed["doctor"]["password"] = DEMO_PASSWORD
    except BaseException:
        deployment.stop()
        raise
    return deployment
