"""Real server processes for browser, multi-process, log and fault tests.

`ServeProcess` runs `manage.py serve` (daphne, DEBUG off) as a child process with its
own environment, captures everything it prints into a file, and can be stopped and
restarted on the same port. `manage()` runs a management command against the same
database, so a test can seed data and create appointments exactly as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from testservices import free_port  # noqa: E402


def embedded_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Environment for a throw-away embedded deployment in `workdir` (own SQLite, key)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
    env.update(
        REDCONNECT_VAR_DIR=str(workdir),
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        PYTHONUNBUFFERED="1",
        DJANGO_ALLOW_ASYNC_UNSAFE="",
    )
    if "REDIS_URL" not in extra:
        env.pop("REDIS_URL", None)  # embedded means in-process layers unless asked
    env.update(extra)
    if env.get("REDIS_URL") or not env["DATABASE_URL"].startswith("sqlite"):
        env.setdefault("SECRET_KEY", "test-secret-key-shared-by-all-processes-0123456789")
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run a management command; return its stdout (raises on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def manage_json(env: dict[str, str], *args: str) -> dict:
    return json.loads(manage(env, *args, "--json"))


class ServeProcess:
    def __init__(self, env: dict[str, str], port: int | None = None):
        self.env = env
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="redconnect-serve-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ServeProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> ServeProcess:
        self.stop()
        return self.start()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
