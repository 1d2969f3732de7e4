"""Verdicts that several requirements' checks share (one home per idea)."""

from __future__ import annotations

from compliance.probes import JoinOutcome
from compliance.registry import Finding


def refusal_finding(
    outcome: JoinOutcome, *, refused_right: bool, opened: str, refused_wrong: str, refused: str
) -> Finding:
    """Judge a request that must not open the call.

    Opening the call fails; a refusal by other means than the expected one (no 403, no
    redirect to the login page: `refused_right` is false) warns; the expected refusal
    passes. Each sentence names the observed outcome as `%(result)s`.
    """
    result = {"result": outcome.describe()}
    if outcome.joined:
        return Finding.failed(opened % result)
    if not refused_right:
        return Finding.warned(refused_wrong % result)
    return Finding.passed(refused % result)
