"""Run manage.py in a subprocess with a modified environment (settings load at start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def run_manage(args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_database_env() -> dict[str, str]:
    """Environment that points a subprocess at the test database this process uses."""
    from django.db import connection

    config = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"DATABASE_URL": f"sqlite:///{config['NAME']}"}
    user, host, port = config["USER"], config["HOST"], config["PORT"]
    return {"DATABASE_URL": f"postgres://{user}@{host}:{port}/{config['NAME']}"}
