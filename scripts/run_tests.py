"""`make test`: the suite on the embedded default, then again on PostgreSQL + Redis.

Both servers are started here as child processes on free loopback ports and stopped
at the end, whatever happens. Exit code: non-zero if any run failed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testservices import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent
PYTEST = [sys.executable, "-m", "pytest"]


def run(label: str, args: list[str], env: dict[str, str]) -> int:
    print(f"\n=== {label} ===", flush=True)
    return subprocess.call(PYTEST + args, cwd=ROOT, env=env)


def main(extra: list[str]) -> int:
    base_env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
    }
    failures = 0
    failures += run("embedded default: SQLite, in-process layers", extra, base_env) != 0

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
    print("\nall test runs passed" if not failures else f"\n{failures} test run(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
