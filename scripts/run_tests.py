"""`make test`: the suite on the embedded default, in Chromium, and on PostgreSQL + Redis.

Both servers are started here as child processes on free loopback ports and stopped
at the end, whatever happens. Exit code: non-zero if any run failed.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testservices import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent
PYTEST = [sys.executable, "-m", "pytest"]
# Browser and network tests have runs of their own.
UNIT = ["-m", "not e2e and not network"]
# Per run, the file where tests/conftest.py writes its counts and skip reasons.
REPORTS: dict[str, Path] = {}


def pytest_env(label: str, env: dict[str, str]) -> dict[str, str]:
    REPORTS[label] = Path(tempfile.mkstemp(prefix="rc-run-", suffix=".json")[1])
    return {**env, "RC_RUN_REPORT": str(REPORTS[label])}


def print_summary() -> None:
    """Counts of every run, and why tests were skipped (only the other profile's may skip)."""
    print("\n=== summary ===")
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for label, path in REPORTS.items():
        report = json.loads(path.read_text() or '{"outcomes": {}, "skipped": {}}')
        path.unlink()
        outcomes = report["outcomes"]
        for key in total:
            total[key] += outcomes.get(key, 0)
        print(
            f"{label}: {outcomes.get('passed', 0)} passed, {outcomes.get('failed', 0)} failed, "
            f"{outcomes.get('skipped', 0)} skipped"
        )
        for reason, count in sorted(report["skipped"].items(), key=lambda item: -item[1]):
            print(f"  skipped {count:4d} × {reason}")
    print(f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")


@dataclass
class Run:
    """One pytest run of the suite, with its own log file."""

    label: str
    command: list[str]
    env: dict[str, str]
    migrate: bool = True  # tests that run `manage.py` use the profile's real database
    log: Path = field(init=False)
    process: subprocess.Popen | None = None
    started: float = 0.0

    def start(self) -> Run:
        self.env = pytest_env(self.label, self.env)
        self.log = Path(tempfile.mkstemp(prefix="rc-log-", suffix=".txt")[1])
        steps = []
        if self.migrate:
            # the schema must be there, as on a deployed machine
            steps.append(shlex.join([sys.executable, "manage.py", "migrate", "-v0", "--no-input"]))
        steps.append(shlex.join(self.command))
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                ["bash", "-c", " && ".join(steps)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()
        print(f"started: {self.label}", flush=True)
        return self

    def finish(self) -> bool:
        """Print the run's whole output once it has ended; True if it passed."""
        code = self.process.wait()
        minutes = (time.monotonic() - self.started) / 60
        print(f"\n=== {self.label} ({minutes:.1f} min, exit {code}) ===", flush=True)
        print(self.log.read_text(), flush=True)
        self.log.unlink()
        # exit 5 = no test collected (e.g. everything filtered out by PYTEST_ARGS)
        return code in (0, 5)


def in_loopback_namespace(command: list[str]) -> list[str]:
    """Run a command in a fresh network namespace that has only `lo`.

    Browser calls gather ICE candidates on every interface; inside the namespace the
    only one is loopback, so no test traffic can reach any other address.
    """
    script = 'ip link set lo up && exec "$@"'
    return ["unshare", "--net", "sh", "-c", script, "sh", *command]


def wait_all(runs: list[Run]) -> int:
    """Failures among the runs, printing each one's output as it ends."""
    pending, failures = list(runs), 0
    while pending:
        for run in pending:
            if run.process.poll() is not None:
                failures += not run.finish()
                pending.remove(run)
                break
        else:
            time.sleep(1)
    return failures


def main(extra: list[str]) -> int:
    # `--only=production` (or `embedded`): one profile, e.g. while working on one of them.
    only = extra[0].removeprefix("--only=") if extra and extra[0].startswith("--only=") else ""
    extra = extra[1:] if only else extra
    base_env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
    }
    # The runs are independent (own databases, own servers on free ports) and mostly wait
    # on sockets and browsers, so they run side by side: CI's wall time, not its CPU, is
    # what the three serial runs used to cost.
    runs = []
    if only in ("", "embedded"):
        runs.append(
            Run("embedded default: SQLite, in-process layers", [*PYTEST, *UNIT, *extra], base_env)
        )
        # Browser tests prove the client; they run once, on the embedded default.
        runs.append(
            Run(
                "browser tests: real Chromium, loopback-only network namespace",
                in_loopback_namespace([*PYTEST, "-m", "e2e", *extra]),
                base_env,
                migrate=False,
            )
        )
    redis, postgres = RedisServer(), PostgresServer()
    try:
        if only in ("", "production"):
            redis.start()
            postgres.start()
            env = {
                **base_env,
                "DATABASE_URL": postgres.url,
                "REDIS_URL": redis.url,
                "SECRET_KEY": secrets.token_urlsafe(50),
            }
            runs.append(
                Run("production profile: PostgreSQL + Redis", [*PYTEST, *UNIT, *extra], env)
            )
        failures = wait_all([run.start() for run in runs])
    finally:
        postgres.stop()
        redis.stop()
    if only in ("", "embedded"):
        # The lab's calls measure bitrate on an impaired link: alone, not beside the other
        # runs, so that a busy CPU does not pass for a bad network.
        network = Run(
            "network tests: NAT, coturn, bad connections (own namespaces)",
            [*PYTEST, "-m", "network", *extra],
            base_env,
            migrate=False,
        )
        failures += wait_all([network.start()])
    print_summary()
    print("\nall test runs passed" if not failures else f"\n{failures} test run(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
