"""The call client's pure logic (quality rating, safety code) run with Node.js.

The same ES modules the browser loads are imported unchanged; Chromium runs them in
tests/e2e. `make test` installs Node (Debian's, 18 on a fresh machine); the repository's
package.json declares the modules as ES modules, which Node 18 needs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.deployment import require_tool

JS_DIR = Path(__file__).resolve().parent.parent / "static" / "js"


def run_module(source: str):
    """Run an ES module snippet; it prints one JSON value, which is returned."""
    result = subprocess.run(
        [require_tool("node"), "--input-type=module", "-e", source],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def rate(**sample) -> str:
    sample = {"connected": True, "rttMs": 20, "loss": 0, "outgoingKbps": 2000, **sample}
    return run_module(
        f"import {{ rate }} from '{JS_DIR / 'quality.js'}';"
        f"console.log(JSON.stringify(rate({json.dumps(sample)})));"
    )


@pytest.mark.parametrize(
    ("sample", "level"),
    [
        ({}, "good"),
        ({"rttMs": 250}, "fair"),
        ({"loss": 0.03}, "fair"),
        ({"outgoingKbps": 120}, "fair"),
        ({"rttMs": 450}, "poor"),
        ({"loss": 0.1}, "poor"),
        ({"outgoingKbps": 40}, "poor"),
        ({"connected": False}, "poor"),
        ({"rttMs": None, "outgoingKbps": None}, "good"),  # not measured yet is not bad
    ],
)
def test_quality_levels(sample, level):
    assert rate(**sample) == level


def safety_code(local_sdp: str, remote_sdp: str):
    return run_module(
        f"import {{ safetyCode }} from '{JS_DIR / 'safety.js'}';"
        f"console.log(JSON.stringify(await safetyCode({json.dumps(local_sdp)},"
        f" {json.dumps(remote_sdp)})));"
    )


DOCTOR_SDP = "v=0\r\na=fingerprint:sha-256 0A:1B:2C\r\na=setup:actpass\r\n"
PATIENT_SDP = "v=0\r\na=fingerprint:SHA-256 ff:ee:dd\r\na=setup:active\r\n"


def test_safety_code_is_sha256_over_both_sorted_fingerprints():
    prints = sorted(["sha-256 0A:1B:2C", "sha-256 FF:EE:DD"])
    digest = hashlib.sha256("\n".join(prints).encode()).digest()
    digits = f"{int.from_bytes(digest[:6], 'big') % 10**8:08d}"
    assert safety_code(DOCTOR_SDP, PATIENT_SDP) == f"{digits[:4]} {digits[4:]}"


def test_both_sides_get_the_same_safety_code():
    assert safety_code(DOCTOR_SDP, PATIENT_SDP) == safety_code(PATIENT_SDP, DOCTOR_SDP)


def test_a_swapped_certificate_changes_the_safety_code():
    intruder = "v=0\r\na=fingerprint:sha-256 0A:1B:2D\r\n"
    assert safety_code(DOCTOR_SDP, PATIENT_SDP) != safety_code(DOCTOR_SDP, intruder)


def test_no_safety_code_without_both_fingerprints():
    assert safety_code(DOCTOR_SDP, "v=0\r\n") is None


def reconnect_delays(code: int, attempts: int = 8) -> list[int]:
    """The call page's reconnect delays (ms) after `attempts` closes with `code`."""
    return run_module(
        "globalThis.window = {addEventListener() {}, location: {protocol: 'http:', host: 'x'}};"
        f"const {{ Signaling }} = await import('{JS_DIR / 'signaling.js'}');"
        "const s = new Signaling('/ws/call/');"
        f"const delays = Array.from({{length: {attempts}}}, () => s.nextDelay({code}));"
        "console.log(JSON.stringify(delays));"
    )


def test_reconnect_backs_off_exponentially_up_to_8_seconds():
    delays = reconnect_delays(1006)
    assert delays[0] <= 625 and max(delays) <= 10_000 and delays[-1] >= 6_000


def test_try_again_close_keeps_polling_within_2_seconds():
    """4503 (Redis down): signaling must be back within seconds of Redis returning."""
    delays = reconnect_delays(4503)
    assert max(delays) <= 2_500
