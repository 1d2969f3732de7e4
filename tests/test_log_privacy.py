"""The server's whole output over a full join and call holds no personal data.

Contract "Serving": the request log holds no client address, no query string and no
personal data; DESIGN/TEAM "Privacy": never log a patient name, client IP, clear access
code, API key or signaling content. A real `manage.py serve` runs a complete call —
HTTP joins of doctor and patient, a wrong code, a query string, API calls with a bearer
key, admission, offer/answer and candidates over the WebSocket — once as is and once
behind a (simulated) proxy with `PROXY_HEADERS=true` and `X-Forwarded-For`; then every
line it printed is searched for each secret.
"""

from __future__ import annotations

import json
import re

import pytest

from consultations.services import normalise_code
from tests.support.callclient import CallSocket, HttpSession, make_candidate, make_sdp
from tests.support.deployment import production_profile, start_deployment
from tests.support.live import manage_json

PATIENT_NAME = "Zyxwvu Qwertz"
FORWARDED_FOR = "203.0.113.7"  # documentation range (RFC 5737); only ever a header value
QUERY_SECRET = "qsecret-7f3k2m9x"
SDP_MARKER = "sdpmarkerq7w3"
CANDIDATE_MARKER = "candmarkerz9y8"
BANNER = re.compile(r"^RED connect: http://127\.0\.0\.1:\d+/ \(Ctrl\+C stops\)$")
REQUEST_LINE = re.compile(r"\b(GET|POST|DELETE) (/\S*) (\d{3}) (\d+(?:\.\d+)?)ms\b")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """The current run's profile: embedded (SQLite, in-process) or PostgreSQL + Redis."""
    production = production_profile()
    deployment = start_deployment(
        tmp_path_factory.mktemp("logs"), postgres=production, redis=production
    )
    yield deployment
    deployment.stop()


async def full_call(deployment, server, headers: dict[str, str]) -> dict[str, str]:
    """Drive everything a day at the practice does; return the secrets that went by."""
    appointment = deployment.appointment()
    api_key = manage_json(
        deployment.env, "create_api_key", "--practice", str(deployment.seed["practice"]["id"])
    )["key"]

    anonymous = HttpSession(server.url, extra_headers=headers)
    assert anonymous.get(f"/?secret={QUERY_SECRET}&name=Zyxwvu").status == 200
    assert anonymous.get(f"/faq/?code={appointment['patient_code']}").status == 200
    wrong = anonymous.join("ZZZZ-ZZZZ-ZZZZ", PATIENT_NAME)
    assert wrong.status == 200 and "ungültig" in wrong.body

    api = HttpSession(server.url, extra_headers=headers)
    bearer = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    body = json.dumps({"doctor": deployment.doctor, "scheduled_at": appointment["scheduled_at"]})
    api.request("POST", "/api/v1/appointments", body=body.encode(), headers=bearer)
    api.request("GET", f"/api/v1/appointments/{appointment['id']}", headers=bearer)
    api.request("GET", "/api/v1/appointments/x", headers={"Authorization": f"Bearer {api_key}x"})

    doctor_http = HttpSession(server.url, extra_headers=headers)
    doctor_http.login(deployment.doctor, deployment.seed["doctor"]["password"])
    assert doctor_http.join(appointment["doctor_code"]).status == 302
    patient_http = HttpSession(server.url, extra_headers=headers)
    assert patient_http.join(appointment["patient_code"], PATIENT_NAME).status == 302
    assert patient_http.get("/call/").status == 200

    doctor, patient = CallSocket(doctor_http), CallSocket(patient_http)
    offer, answer = make_sdp(f"{SDP_MARKER}o"), make_sdp(f"{SDP_MARKER}a")
    try:
        await doctor.connect()
        await patient.connect()
        await patient.expect("waiting")
        assert (await doctor.expect("peer-waiting"))["name"] == PATIENT_NAME
        await doctor.send({"type": "admit"})
        await doctor.expect("admitted")
        await patient.expect("admitted")
        await doctor.send({"type": "offer", "sdp": offer})
        assert (await patient.expect("offer"))["sdp"] == offer
        await patient.send({"type": "answer", "sdp": answer})
        assert (await doctor.expect("answer"))["sdp"] == answer
        candidate = make_candidate(CANDIDATE_MARKER)
        await patient.send({"type": "candidate", "candidate": candidate})
        assert (await doctor.expect("candidate"))["candidate"] == candidate
        # Refused frames (content echoed nowhere, logged nowhere).
        await patient.send({"type": "offer", "sdp": f"v=0 {SDP_MARKER}x without fingerprint"})
        assert (await patient.expect("error"))["code"] == "insecure-sdp"
        await patient.send(f"not json {SDP_MARKER}y")
        assert (await patient.expect("error"))["code"] == "bad-message"
        await patient.send({"type": "bye"})
        await doctor.expect("peer-left", skip=("participant-left",))
    finally:
        await doctor.close()
        await patient.close()

    secrets = {
        "patient name": PATIENT_NAME,
        "patient surname": "Qwertz",
        "query string": QUERY_SECRET,
        "API key": api_key,
        "SDP content": SDP_MARKER,
        "candidate": CANDIDATE_MARKER,
        "join cookie": patient_http.cookies["rc_join"],
        "session cookie": doctor_http.cookies["sessionid"],
    }
    for role in ("doctor", "patient"):
        code = appointment[f"{role}_code"]
        secrets[f"{role} code"] = code
        secrets[f"{role} code (normalised)"] = normalise_code(code)
    return secrets


@pytest.mark.parametrize("behind_proxy", [False, True], ids=["direct", "proxy-headers"])
async def test_server_output_holds_no_personal_data(deployment, behind_proxy):
    if behind_proxy:
        server = deployment.serve(PROXY_HEADERS="true")
        headers = {"X-Forwarded-For": FORWARDED_FOR, "X-Forwarded-Proto": "http"}
    else:
        server = deployment.serve()
        headers = {}
    secrets = await full_call(deployment, server, headers)
    server.stop()  # flush and end: the output is complete
    output = server.output()

    lines = [line for line in output.splitlines() if not BANNER.match(line)]
    assert len(lines) < len(output.splitlines()), "the start-up banner is missing"
    text = "\n".join(lines)
    for label, secret in secrets.items():
        assert secret not in text, f"the server output contains the {label}"
    # The client's address appears nowhere (the banner names the server's own address).
    assert "127.0.0.1" not in text
    assert FORWARDED_FOR not in text
    assert "Traceback" not in text

    # The request log still records method, path, status and duration of every request.
    logged = {(m[1], m[2], m[3]) for m in REQUEST_LINE.finditer(text)}
    assert ("GET", "/", "200") in logged  # the path without its query string
    assert ("POST", "/", "302") in logged
    assert ("POST", "/", "200") in logged  # the wrong code
    assert ("GET", "/call/", "200") in logged
    assert any(method == "POST" and path == "/api/v1/appointments" for method, path, _ in logged)
    for match in REQUEST_LINE.finditer(text):
        assert "?" not in match[2]
