"""`make test`: the suite on the embedded default, then again on PostgreSQL + Redis.

Both servers are started here as child processes on free loopback ports and stopped
at the end, whatever happens. Exit code: non-zero if any run failed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testservices import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent
PYTEST = [sys.executable, "-m", "pytest"]
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


def run(label: str, args: list[str], env: dict[str, str]) -> int:
    print(f"\n=== {label} ===", flush=True)
    env = pytest_env(label, env)
    # Tests that run `manage.py` as a subprocess use the profile's real database (not
    # pytest's test database): it must have the schema, as on a deployed machine.
    migrated = subprocess.call(
        [sys.executable, "manage.py", "migrate", "-v0", "--no-input"], cwd=ROOT, env=env
    )
    if migrated != 0:
        print("migrating the profile's database failed", flush=True)
        return migrated
    return subprocess.call(PYTEST + args, cwd=ROOT, env=env)


def in_loopback_namespace(command: list[str]) -> list[str]:
    """Run a command in a fresh network namespace that has only `lo`.

    Browser calls gather ICE candidates on every interface; inside the namespace the
    only one is loopback, so no test traffic can reach any other address.
    """
    script = 'ip link set lo up && exec "$@"'
    return ["unshare", "--net", "sh", "-c", script, "sh", *command]


def main(extra: list[str]) -> int:
    # `--only=production` (or `embedded`): one profile, e.g. while working on one of them.
    only = extra[0].removeprefix("--only=") if extra and extra[0].startswith("--only=") else ""
    extra = extra[1:] if only else extra
    base_env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
    }
    failures = 0
    if only in ("", "embedded"):
        failures += (
            run("embedded default: SQLite, in-process layers", ["-m", "not e2e", *extra], base_env)
            != 0
        )
        print("\n=== browser tests: real Chromium, loopback-only network namespace ===", flush=True)
        e2e = in_loopback_namespace([*PYTEST, "-m", "e2e", *extra])
        # exit 5 = no browser test collected (e.g. filtered out by PYTEST_ARGS)
        e2e_env = pytest_env("browser tests", base_env)
        failures += subprocess.call(e2e, cwd=ROOT, env=e2e_env) not in (0, 5)
    if only not in ("", "production"):
        print_summary()
        return 1 if failures else 0

    redis, postgres = RedisServer(), PostgresServer()
    try:
        redis.start()
        postgres.start()
        env = {
            **base_env,
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url,
            "SECRET_KEY": secrets.token_urlsafe(50),
        }
        # Browser tests prove the client; they run once, on the embedded default.
        failures += (
            run("production profile: PostgreSQL + Redis", ["-m", "not e2e", *extra], env) != 0
        )
    finally:
        postgres.stop()
        redis.stop()
    print_summary()
    print("\nall test runs passed" if not failures else f"\n{failures} test run(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
