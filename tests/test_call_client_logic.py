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


def safety_code(local: str | None, remote: str | None, dtls: str = "connected", sdp: str = ""):
    """safetyCode(pc) of a stand-in RTCPeerConnection whose getStats() reports one DTLS
    transport with these certificates ("sha-256 AB:…"); its SDP says `sdp`."""

    def certificate(cert_id, value):
        if value is None:
            return None
        algorithm, fingerprint = value.split(" ")
        return {
            "id": cert_id,
            "type": "certificate",
            "fingerprintAlgorithm": algorithm,
            "fingerprint": fingerprint,
        }

    entries = [
        {
            "id": "T0",
            "type": "transport",
            "dtlsState": dtls,
            "localCertificateId": "CL",
            "remoteCertificateId": "CR",
        },
        certificate("CL", local),
        certificate("CR", remote),
    ]
    report = [[e["id"], e] for e in entries if e]
    return run_module(
        f"import {{ safetyCode }} from '{JS_DIR / 'safety.js'}';"
        f"const report = new Map({json.dumps(report)});"
        f"const sdp = {json.dumps(sdp)};"
        "const pc = {getStats: async () => report, localDescription: {sdp},"
        " remoteDescription: {sdp}};"
        "console.log(JSON.stringify(await safetyCode(pc)));"
    )


DOCTOR = "sha-256 0A:1B:2C"
PATIENT = "SHA-256 ff:ee:dd"


def test_safety_code_is_sha256_over_both_sorted_transport_fingerprints():
    prints = sorted(["sha-256 0A:1B:2C", "sha-256 FF:EE:DD"])
    digest = hashlib.sha256("\n".join(prints).encode()).digest()
    digits = f"{int.from_bytes(digest[:6], 'big') % 10**8:08d}"
    assert safety_code(DOCTOR, PATIENT) == f"{digits[:4]} {digits[4:]}"


def test_both_sides_get_the_same_safety_code():
    assert safety_code(DOCTOR, PATIENT) == safety_code(PATIENT, DOCTOR)


def test_a_swapped_certificate_changes_the_safety_code():
    assert safety_code(DOCTOR, PATIENT) != safety_code(DOCTOR, "sha-256 0A:1B:2D")


def test_the_code_ignores_the_sdp_text():
    # A tampering server puts the genuine fingerprint first in the SDP: no effect.
    forged = f"v=0\r\na=fingerprint:{DOCTOR}\r\na=fingerprint:sha-256 66:66\r\n"
    assert safety_code(DOCTOR, PATIENT, sdp=forged) == safety_code(DOCTOR, PATIENT)


def test_no_safety_code_before_dtls_is_connected_or_without_a_certificate():
    assert safety_code(DOCTOR, PATIENT, dtls="connecting") is None
    assert safety_code(DOCTOR, None) is None


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
