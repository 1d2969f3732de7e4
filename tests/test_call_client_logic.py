"""The call client's pure logic (quality rating, safety code, who offers to whom in a
mesh, the uplink budget) run with Node.js.

The same ES modules the browser loads are imported unchanged; Chromium runs them in
tests/e2e. `make test` installs Node (Debian's, 18 on a fresh machine); the repository's
package.json declares the modules as ES modules, which Node 18 needs.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from redconnect import callcodes
from tests.support.deployment import require_tool

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


def page_stub(codes: dict | None = None) -> str:
    """JS that stands in for the call page: `window`, and the #rc-codes element the
    template renders with json_script (the Python table unless `codes` is given)."""
    table = json.dumps(json.dumps(callcodes.table() if codes is None else codes))
    return (
        "globalThis.window = {addEventListener() {}, location: {protocol: 'http:', host: 'x'}};"
        "globalThis.document = {getElementById: (id) =>"
        f" id === 'rc-codes' ? {{textContent: {table}}} : null}};"
    )


def reconnect_delays(code: int, attempts: int = 8, codes: dict | None = None) -> list[int]:
    """The call page's reconnect delays (ms) after `attempts` closes with `code`."""
    return run_module(
        page_stub(codes) + f"const {{ Signaling }} = await import('{JS_DIR / 'signaling.js'}');"
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


def test_signaling_exports_exactly_the_python_table():
    """signaling.js takes every close code, error code and message type from #rc-codes."""
    exported = run_module(
        page_stub() + f"const m = await import('{JS_DIR / 'signaling.js'}');"
        "console.log(JSON.stringify({codes: m.CODES, close: [m.CLOSE_EXPIRED,"
        " m.CLOSE_FORBIDDEN, m.CLOSE_SUPERSEDED, m.CLOSE_RATE_LIMITED, m.CLOSE_TRY_AGAIN]}));"
    )
    assert exported["codes"] == callcodes.table()
    assert exported["close"] == [
        callcodes.CLOSE_NO_SESSION,
        callcodes.CLOSE_NOT_ALLOWED,
        callcodes.CLOSE_SUPERSEDED,
        callcodes.CLOSE_RATE_LIMIT,
        callcodes.CLOSE_TRY_AGAIN,
    ]


def test_signaling_reads_the_codes_from_the_handed_table_not_a_literal():
    """Hand other numbers: the reconnect logic follows them, so no literal is left."""
    table = callcodes.table()
    moved = {**table, "close": {**table["close"], "TRY_AGAIN": 4777, "RATE_LIMIT": 4778}}
    assert max(reconnect_delays(4777, codes=moved)) <= 2_500  # "try again" polls briefly
    assert reconnect_delays(4778, attempts=1, codes=moved) == [11_000]  # rate-limit wait
    # ... and the real numbers are ordinary closes now (back-off up to 8 s).
    assert max(reconnect_delays(callcodes.CLOSE_TRY_AGAIN, codes=moved)) > 2_500


def test_signaling_refuses_to_start_without_the_table():
    result = subprocess.run(
        [
            require_tool("node"),
            "--input-type=module",
            "-e",
            page_stub().replace("id === 'rc-codes'", "id === 'elsewhere'")
            + f"await import('{JS_DIR / 'signaling.js'}');",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "rc-codes" in result.stderr


def test_no_protocol_code_is_typed_in_the_javascript():
    """Close codes and error codes appear in static/js code only as names of the table
    (comments may mention them)."""
    literals = [*map(str, callcodes.CLOSE_CODES.values()), *callcodes.ERROR_CODES]
    for module in JS_DIR.glob("*.js"):
        source = re.sub(r"/\*.*?\*/|//[^\n]*", "", module.read_text(encoding="utf-8"), flags=re.S)
        for literal in literals:
            assert literal not in source, f"{module.name} re-types {literal}"


# --- mesh.js: who offers to whom ------------------------------------------------------


def mesh(expression: str):
    return run_module(
        f"import * as mesh from '{JS_DIR / 'mesh.js'}';console.log(JSON.stringify({expression}));"
    )


@pytest.mark.parametrize(
    ("self_role", "event", "other_role", "offers"),
    [
        # The doctor offers to everyone it is told was admitted ...
        ("doctor", "admitted", "patient", True),
        ("doctor", "admitted", "guest", True),
        ("doctor", "participant-joined", "guest", False),
        # ... nobody else offers to the doctor ...
        ("patient", "participant-joined", "doctor", False),
        ("guest", "participant-joined", "doctor", False),
        # ... and between two others, the one admitted earlier offers to the newcomer.
        ("patient", "participant-joined", "guest", True),
        ("guest", "participant-joined", "patient", True),
        ("guest", "participant-joined", "guest", True),
        ("guest", "admitted", "patient", False),
    ],
)
def test_who_offers(self_role, event, other_role, offers):
    assert (
        mesh(
            f"mesh.offersTo({json.dumps(self_role)}, {json.dumps(event)}, {json.dumps(other_role)})"
        )
        is offers
    )


def test_every_pair_has_exactly_one_offerer_and_one_polite_side():
    """Simulate admissions in order: for each pair exactly one side offers, and both ends
    agree which of them is the polite one."""
    result = mesh(
        "(() => {"
        " const order = ['doctor', 'patient', 'guest', 'guest', 'guest'];"
        " const ids = ['d0c', 'Zp1', 'a2g', 'Mg3', 'kg4'];"
        " const pairs = [];"
        " order.forEach((newRole, n) => {"
        "  order.slice(0, n).forEach((oldRole, o) => {"
        # The doctor hears `admitted` for the newcomer; the others `participant-joined`.
        "   const oldEvent = oldRole === 'doctor' ? 'admitted' : 'participant-joined';"
        "   const oldOffers = mesh.offersTo(oldRole, oldEvent, newRole);"
        # The newcomer hears nothing per person: its own `admitted` lists everyone.
        "   const newOffers = false;"
        "   const politeOld = mesh.isPolite(oldRole, newRole, ids[o], ids[n]);"
        "   const politeNew = mesh.isPolite(newRole, oldRole, ids[n], ids[o]);"
        "   pairs.push({offers: Number(oldOffers) + Number(newOffers),"
        "    onePolite: politeOld !== politeNew,"
        "    doctorImpolite: oldRole !== 'doctor' || !politeOld});"
        "  });"
        " });"
        " return pairs;"
        "})()"
    )
    assert len(result) == 10
    assert all(pair == {"offers": 1, "onePolite": True, "doctorImpolite": True} for pair in result)


def test_doctor_is_never_polite():
    assert mesh(
        "[mesh.isPolite('doctor', 'patient', 'a', 'b'), mesh.isPolite('doctor', 'guest', 'z', 'b')]"
    ) == [False, False]
    assert mesh("mesh.isPolite('guest', 'doctor', 'a', 'z')") is True


def test_tiles_are_ordered_doctor_patient_then_guests_by_admission():
    people = [
        {"id": "g2", "role": "guest", "since": 4},
        {"id": "p", "role": "patient", "since": 3},
        {"id": "g1", "role": "guest", "since": 2},
        {"id": "d", "role": "doctor", "since": 5},
    ]
    assert [p["id"] for p in mesh(f"mesh.tileOrder({json.dumps(people)})")] == [
        "d",
        "p",
        "g1",
        "g2",
    ]
    assert mesh(f"mesh.primaryPeer('doctor', {json.dumps(people)}).id") == "p"
    assert mesh(f"mesh.primaryPeer('guest', {json.dumps(people)}).id") == "d"
    assert mesh("mesh.primaryPeer('patient', [])") is None


def test_ids_fall_back_to_the_role_for_a_server_without_ids():
    assert mesh("mesh.idOf({from: 'abcdefgh12'}, 'from', 'doctor')") == "abcdefgh12"
    assert mesh("mesh.idOf({}, 'from', 'doctor')") == "doctor"
    assert mesh("mesh.idOf({from: 7}, 'from', 'patient')") == "patient"


# --- bandwidth.js: the uplink budget ---------------------------------------------------


def bandwidth(expression: str):
    return run_module(
        f"import * as bw from '{JS_DIR / 'bandwidth.js'}';"
        f"console.log(JSON.stringify({expression}));"
    )


def test_two_person_call_has_no_budget_and_no_cap():
    assert bandwidth("[bw.budgetFor(1), bw.budgetFor(2)]") == [None, None]
    encoding = {"active": True, "maxBitrate": 500000, "scaleResolutionDownBy": 2}
    shaped = bandwidth(
        f"(() => {{ const e = {json.dumps(encoding)};"
        " const changed = bw.shapeEncoding('video', e, null); return {e, changed}; })()"
    )
    assert shaped == {"e": {"active": True, "scaleResolutionDownBy": 1}, "changed": True}
    audio = bandwidth(
        "(() => { const e = {active: true}; bw.shapeEncoding('audio', e, null); return e; })()"
    )
    assert audio == {"active": True}


def test_budget_splits_the_uplink_over_the_peers_from_three_people_on():
    budgets = bandwidth("[3, 4, 5, 6, 7, 8, 9].map((n) => bw.budgetFor(n))")
    uplink = bandwidth("bw.UPLINK_BUDGET_KBPS")
    assert [b["peers"] for b in budgets] == [2, 3, 4, 5, 6, 7, 8]
    for budget in budgets:
        # Everything this sender sends, to all peers, fits the uplink budget ...
        assert budget["peers"] * (budget["audioKbps"] + budget["videoKbps"]) <= uplink
        # ... and audio comes first: its share is reserved before video gets the rest.
        assert budget["audioKbps"] >= 32
    video = [b["videoKbps"] for b in budgets]
    assert video == sorted(video, reverse=True) and video[0] > 3 * video[-1]
    scales = [b["scaleResolutionDownBy"] for b in budgets]
    assert scales == sorted(scales) and scales[0] == 1 and scales[-1] > 1


def test_nine_people_on_a_2_mbit_uplink_still_hear_each_other():
    """Eight copies of audio and thumbnail video fit into 2 Mbit/s, with headroom."""
    budget = bandwidth("bw.budgetFor(9)")
    total_kbps = budget["peers"] * (budget["audioKbps"] + budget["videoKbps"])
    assert total_kbps <= 0.85 * 2000
    assert budget["videoKbps"] >= bandwidth("bw.MIN_VIDEO_KBPS")


def test_budget_is_applied_to_video_encodings_and_audio_gets_priority():
    shaped = bandwidth(
        "(() => { const b = bw.budgetFor(5); const v = {active: true}, a = {active: true};"
        " bw.shapeEncoding('video', v, b); bw.shapeEncoding('audio', a, b);"
        " return {v, a, b}; })()"
    )
    assert shaped["v"]["maxBitrate"] == shaped["b"]["videoKbps"] * 1000
    assert shaped["v"]["scaleResolutionDownBy"] == shaped["b"]["scaleResolutionDownBy"]
    assert "maxBitrate" not in shaped["a"]  # audio is never capped
    assert shaped["a"]["priority"] == "high" and shaped["v"]["priority"] == "low"
    unchanged = bandwidth(
        "(() => { const b = bw.budgetFor(5); const v = {active: true};"
        " bw.shapeEncoding('video', v, b); return bw.shapeEncoding('video', v, b); })()"
    )
    assert unchanged is False  # nothing to set again: no needless setParameters
