"""Run all checks and aggregate them into the contract's JSON (shared/CONTRACT.md)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy

from compliance import registry
from compliance.registry import Status

FAIL, WARN, DECLARED, PASS = Status.FAIL, Status.WARN, Status.DECLARED, Status.PASS
STATUSES = tuple(status.value for status in Status)


def requirement_status(statuses: list[str]) -> Status:
    """fail if any check fails, else warn if any warns, else declared if any is, else pass."""
    for status in (FAIL, WARN, DECLARED):
        if status in statuses:
            return status
    return PASS


def overall_status(statuses: list[str]) -> Status:
    """The contract allows only pass/warn/fail overall; declarations do not lower it."""
    for status in (FAIL, WARN):
        if status in statuses:
            return status
    return PASS


def run_checks(now: datetime | None = None) -> dict:
    """Run every check once (each probe at most once per run); the contract's JSON."""
    observations = registry.Observations()
    requirements = []
    for requirement in registry.requirements():
        results = []
        for item in requirement.checks:
            finding = registry.run_check(item, observations)
            results.append(
                {
                    "id": item.id,
                    "label": str(item.label),
                    "static": item.static,
                    "status": finding.status.value,
                    "evidence": finding.evidence,
                }
            )
        requirements.append(
            {
                "number": requirement.number,
                "title": str(requirement.title),
                "current_reference": str(requirement.current_reference),
                "status": requirement_status([r["status"] for r in results]).value,
                "checks": results,
            }
        )
    return {
        "generated_at": (now or timezone.now()).isoformat(timespec="seconds"),
        "overall": overall_status([r["status"] for r in requirements]).value,
        "requirements": requirements,
    }


def canonical_json(result: dict) -> bytes:
    """The evidence as hashed in the attestation: sorted keys, UTF-8, no whitespace."""
    return json.dumps(result, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def evidence_sha256(result: dict) -> str:
    return hashlib.sha256(canonical_json(result)).hexdigest()


def failed_requirements(result: dict) -> list[int]:
    return [r["number"] for r in result["requirements"] if r["status"] == FAIL]


# --- Isolated run for the web process -------------------------------------------------


class RunError(RuntimeError):
    """The child process could not produce a result."""


def _database_url() -> str | None:
    """The database this process uses, as a URL for the child (tests use a test DB)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"] == "django.db.backends.postgresql":
        user = quote(db.get("USER") or "", safe="")
        password = quote(db.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if user else ""
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{auth}{db.get('HOST') or ''}{port}/{quote(db['NAME'], safe='')}"
    return None


def run_isolated(timeout: float = 90) -> dict:
    """Run `manage.py kbv_check --json` in a child process and return its result.

    The probes override settings process-wide (private cache and channel layer) and
    commit short-lived probe objects; inside a serving process that could touch live
    calls, so the web page runs them in a process of their own.
    """
    env = dict(os.environ)
    url = _database_url()
    if url:
        env["DATABASE_URL"] = url
    completed = subprocess.run(  # noqa: S603 - fixed command, no user input
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "kbv_check", "--json"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode not in (0, 1):
        lines = completed.stderr.strip().splitlines()
        raise RunError(lines[-1] if lines else "kbv_check failed")
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        raise RunError(f"kbv_check printed no JSON: {exc}") from None


# --- The admin page's runs: one at a time, the last result kept ------------------------

LAST_RUN_KEY = "compliance:last-run"
LOCK_KEY = "compliance:run-lock"
RUN_TIMEOUT = 90  # seconds the child process may take
LOCK_TIMEOUT = RUN_TIMEOUT + 30  # a lock whose holder died expires by itself


class AlreadyRunning(Exception):
    """Another request (in this or another server process) is running the checks."""


@contextmanager
def run_lock() -> Iterator[None]:
    """Held while a run is going on; `cache.add` is atomic in Redis, so this holds across
    all server processes of a deployment (in-process cache: within the one process)."""
    token = secrets.token_hex(8)
    if not cache.add(LOCK_KEY, token, LOCK_TIMEOUT):
        raise AlreadyRunning
    try:
        yield
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)


def run_and_store() -> dict:
    """Run the checks in a child process (AlreadyRunning if a run is going on) and keep
    the result, with its time, as the last run; a failed run keeps the last result."""
    with run_lock():
        try:
            result = run_isolated(RUN_TIMEOUT)
        except (RunError, OSError, subprocess.SubprocessError) as exc:
            record = {**(last_run() or {}), "error": str(exc)[:300]}
        else:
            record = {"result": result, "finished_at": timezone.now().isoformat(), "error": None}
        cache.set(LAST_RUN_KEY, record, timeout=None)
        return record


def last_run() -> dict | None:
    """`{"result", "finished_at", "error"}` of the last run, or None before the first."""
    return cache.get(LAST_RUN_KEY)


def is_running() -> bool:
    return cache.get(LOCK_KEY) is not None


# --- Presentation ---------------------------------------------------------------------

STATUS_LABELS = {
    PASS: gettext_lazy("passed"),
    FAIL: gettext_lazy("failed"),
    WARN: gettext_lazy("warning"),
    DECLARED: gettext_lazy("declared"),
}


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))
