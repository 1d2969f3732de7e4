"""Start throw-away Redis and PostgreSQL servers as child processes on free loopback ports.

Used by `scripts/run_tests.py` (the suite against PostgreSQL + Redis) and by test
fixtures that need their own Redis (e.g. to stop and restart it). Nothing is daemonised:
each server dies with the process that started it, and `stop()` cleans up.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin"), Path("/usr/bin")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def _pg_binary(name: str) -> str:
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    raise RuntimeError(f"PostgreSQL's {name} is not installed")


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as `postgres` (or `nobody`) then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, but there is no unprivileged user for PostgreSQL")


@dataclass
class PostgresServer:
    port: int = field(default_factory=free_port)
    directory: Path | None = None
    user: str | None = None

    @property
    def url(self) -> str:
        return f"postgres://redconnect@127.0.0.1:{self.port}/redconnect"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        return subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kwargs)

    def start(self) -> PostgresServer:
        self.user = _unprivileged_user()
        self.directory = Path(tempfile.mkdtemp(prefix="redconnect-pg-"))
        if self.user:
            shutil.chown(self.directory, user=self.user)
        data = self.directory / "data"
        self._run(
            [
                _pg_binary("initdb"),
                "-D",
                str(data),
                "-U",
                "redconnect",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        self.resume()
        self._run(
            [
                _pg_binary("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "redconnect",
                "redconnect",
            ]
        )
        return self

    def resume(self) -> PostgresServer:
        """(Re)start the server on its port with the existing data directory."""
        self._run(
            [
                _pg_binary("pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-l",
                str(self.directory / "log"),
                "-w",
                "-o",
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
                "start",
            ]
        )
        return self

    def pause(self) -> None:
        """Stop the server but keep its data, so that `resume()` brings it back (fault
        tests: the database briefly unavailable)."""
        self._run(
            [_pg_binary("pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop"]
        )

    def stop(self) -> None:
        if self.directory is None:
            return
        try:
            self.pause()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
