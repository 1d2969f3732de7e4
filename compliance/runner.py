"""Run all checks and aggregate them into the contract's JSON (shared/CONTRACT.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy

from compliance import checks
from compliance.requirements import REQUIREMENTS

FAIL, WARN, DECLARED, PASS = checks.FAIL, checks.WARN, checks.DECLARED, checks.PASS


def requirement_status(statuses: list[str]) -> str:
    """fail if any check fails, else warn if any warns, else declared if any is, else pass."""
    for status in (FAIL, WARN, DECLARED):
        if status in statuses:
            return status
    return PASS


def overall_status(statuses: list[str]) -> str:
    """The contract allows only pass/warn/fail overall; declarations do not lower it."""
    for status in (FAIL, WARN):
        if status in statuses:
            return status
    return PASS


def run_checks(now: datetime | None = None) -> dict:
    """Run every check once (the probes once per run); the contract's JSON as a dict."""
    context = checks.Context()
    requirements = []
    for requirement in REQUIREMENTS:
        results = [
            {
                "id": item.id,
                "label": str(item.label),
                "static": item.static,
                **_finding(checks.run_check(item, context)),
            }
            for item in checks.CHECKS
            if item.requirement == requirement.number
        ]
        requirements.append(
            {
                "number": requirement.number,
                "title": str(requirement.title),
                "status": requirement_status([r["status"] for r in results]),
                "checks": results,
            }
        )
    return {
        "generated_at": (now or timezone.now()).isoformat(timespec="seconds"),
        "overall": overall_status([r["status"] for r in requirements]),
        "requirements": requirements,
    }


def _finding(finding: checks.Finding) -> dict:
    return {"status": finding.status, "evidence": finding.evidence}


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
        raise RunError(completed.stderr.strip().splitlines()[-1:] or "kbv_check failed")
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        raise RunError(f"kbv_check printed no JSON: {exc}") from None


# --- Presentation ---------------------------------------------------------------------

STATUS_LABELS = {
    PASS: gettext_lazy("passed"),
    FAIL: gettext_lazy("failed"),
    WARN: gettext_lazy("warning"),
    DECLARED: gettext_lazy("declared"),
}


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))
