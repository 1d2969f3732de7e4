"""A real call between two Chromium browsers through a real daphne server.

Doctor and patient join exactly as people do (join form, admin login, device check,
admission), then the tests check on both pages that media flows peer-to-peer over a
direct ICE candidate pair with DTLS, that the safety codes match the DTLS fingerprints,
that chat goes over the data channel, and that the call survives the signaling server
going away and comes back into signaling when it returns (KBV § 5 Nr. 5, 6, 7).
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from tests.e2e.conftest import DEMO_PASSWORD
from tests.support.live import manage_json

pytestmark = pytest.mark.e2e

PATIENT_NAME = "Erika Mustermann"
TIMEOUT_MS = 20_000

# Everything the assertions need from one page's RTCPeerConnection, read via getStats.
STATS_JS = """
async () => {
  const pc = window.redconnect.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const result = {ice: pc.iceConnectionState, framesDecoded: 0, dtls: null, local: null,
                  remote: null, localSdp: pc.localDescription && pc.localDescription.sdp,
                  remoteSdp: pc.remoteDescription && pc.remoteDescription.sdp};
  report.forEach((stats) => {
    if (stats.type === "transport" && stats.selectedCandidatePairId) {
      result.dtls = stats.dtlsState;
      const pair = report.get(stats.selectedCandidatePairId);
      result.local = report.get(pair.localCandidateId).candidateType;
      result.remote = report.get(pair.remoteCandidateId).candidateType;
    }
    if (stats.type === "inbound-rtp" && stats.kind === "video") {
      result.framesDecoded = stats.framesDecoded || 0;
    }
  });
  return result;
}
"""


SENDER_PARAMETERS_JS = """
() => window.redconnect.pc.getSenders()
  .filter((sender) => sender.track && sender.track.kind === "video")
  .map((sender) => {
    const parameters = sender.getParameters();
    return {degradationPreference: parameters.degradationPreference || null,
            maxBitrate: parameters.encodings.map((e) => e.maxBitrate).find((b) => b) || null};
  })
"""

VIDEO_DIRECTIONS_JS = """
() => window.redconnect.pc.getTransceivers()
  .filter((t) => t.receiver.track.kind === "video").map((t) => t.currentDirection)
"""


@dataclass(eq=False)
class Participant:
    page: object
    problems: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)  # URLs of the WebSockets it opened

    def state(self, name: str) -> str:
        return self.page.get_attribute("[data-call]", f"data-{name}") or ""

    def wait_state(self, name: str, pattern: str, timeout: int = TIMEOUT_MS) -> None:
        self.page.wait_for_function(
            "([name, pattern]) => new RegExp(pattern).test("
            "document.querySelector('[data-call]').getAttribute('data-' + name) || '')",
            arg=[name, pattern],
            timeout=timeout,
        )

    def stats(self) -> dict:
        return self.page.evaluate(STATS_JS)

    def wait_frames_above(self, count: int) -> int:
        """Polled from Python: page.wait_for_function does not await an async predicate
        (the returned Promise counts as truthy at once), and getStats is async."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            stats = self.stats()
            if stats and stats["framesDecoded"] > count:
                return stats["framesDecoded"]
            assert time.monotonic() < deadline, f"no more than {count} frames decoded: {stats}"
            self.page.wait_for_timeout(250)


def open_participant(browser, base_url: str) -> Participant:
    context = browser.new_context(base_url=base_url, locale="de-DE")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    participant = Participant(page)
    page.on("websocket", lambda socket: participant.sockets.append(socket.url))
    # Uncaught script errors and CSP violations fail the tests at the end.
    page.on("pageerror", lambda error: participant.problems.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            participant.problems.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return participant


def log_in(page, username: str) -> None:
    """Log in at /admin/login/ with the demo password (2FA is optional on http)."""
    page.goto("/admin/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.locator("input[type=submit]").click()
    page.wait_for_url(re.compile(r"/admin/"))


def fill_join_form(page, code: str, name: str = "") -> None:
    page.goto("/")
    form = page.locator("form.join-form")
    form.locator("input[name=code]").fill(code)
    if name:
        form.locator("input[name=name]").fill(name)
        form.locator("input[name=consent]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/call/")


def pass_device_check(participant: Participant) -> None:
    page = participant.page
    join = page.locator('[data-action="join"]')
    join.wait_for(state="visible")
    page.wait_for_function("() => !document.querySelector('[data-action=join]').disabled")
    join.click()


def join_waiting(participant: Participant, code: str, name: str) -> None:
    """Join with a patient's or guest's code and name; wait until the waiting room shows."""
    fill_join_form(participant.page, code, name)
    pass_device_check(participant)
    participant.wait_state("ws-state", "^open$")
    participant.page.locator('[data-view="waiting"]').wait_for(state="visible")


def join_as_doctor(doctor: Participant, username: str, code: str) -> None:
    """Log in as `username` and join with the doctor's code, past the device check."""
    log_in(doctor.page, username)
    fill_join_form(doctor.page, code)
    pass_device_check(doctor)


def admit_and_connect(doctor: Participant, patient: Participant) -> None:
    """The doctor lets the one waiting person in; both wait until their call connects."""
    doctor.page.locator('[data-role="admit-box"]').wait_for(state="visible")
    doctor.page.locator('[data-action="admit"]').click()
    for participant in (doctor, patient):
        participant.wait_state("connection-state", "^connected$")


def readmit(doctor: Participant, before: str, patient_name: str) -> None:
    """Admit the patient if the doctor is asked to; else wait for the server's `admitted`.

    `before` is the doctor's admission count, read before the interruption.
    """
    doctor.page.wait_for_function(
        "(before) => !document.querySelector('[data-role=admit-box]').hidden"
        " || document.querySelector('[data-call]').dataset.admissions !== before",
        arg=before,
    )
    if doctor.page.locator('[data-role="admit-box"]').is_visible():
        assert doctor.page.text_content('[data-role="waiting-name"]') == patient_name
        doctor.page.locator('[data-action="admit"]').click()


def safety_code_of(fingerprints: Iterable[str]) -> str:
    """The safety code computed independently of the page: SHA-256 over the fingerprints
    (`sha-256 AB:CD:…`), sorted and one a line; its first 6 bytes as 8 digits."""
    digest = hashlib.sha256("\n".join(sorted(fingerprints)).encode()).digest()
    digits = f"{int.from_bytes(digest[:6], 'big') % 10**8:08d}"
    return f"{digits[:4]} {digits[4:]}"


def expected_safety_code(sdp_a: str, sdp_b: str) -> str:
    """The safety code of a call between these two SDPs' fingerprints."""
    prints = []
    for sdp in (sdp_a, sdp_b):
        algorithm, value = re.search(r"^a=fingerprint:(\S+)\s+([0-9A-Fa-f:]+)", sdp, re.M).groups()
        prints.append(f"{algorithm.lower()} {value.upper()}")
    return safety_code_of(prints)


@pytest.fixture(scope="module")
def call(live_site, browser):
    """Doctor and patient in a connected call; yields (doctor, patient, server)."""
    server, seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    patient = open_participant(browser, server.url)
    doctor = open_participant(browser, server.url)

    join_waiting(patient, appointment["patient_code"], PATIENT_NAME)
    join_as_doctor(doctor, seed["doctor"]["username"], appointment["doctor_code"])

    admit_box = doctor.page.locator('[data-role="admit-box"]')
    admit_box.wait_for(state="visible")
    assert doctor.page.text_content('[data-role="waiting-name"]') == PATIENT_NAME
    doctor.page.locator('[data-action="admit"]').click()

    for participant in (doctor, patient):
        participant.wait_state("connection-state", "^connected$")
        participant.wait_state("safety-code", r"^\d{4} \d{4}$")
    yield doctor, patient, server
    for participant in (doctor, patient):
        participant.page.context.close()


def test_media_flows_directly_over_dtls(call):
    doctor, patient, _server = call
    for participant in (doctor, patient):
        participant.wait_frames_above(10)
        stats = participant.stats()
        assert stats["ice"] in ("connected", "completed")
        assert stats["dtls"] == "connected"
        # A direct host-to-host pair: no relay in between (KBV § 5 Nr. 5).
        assert (stats["local"], stats["remote"]) == ("host", "host")
        assert participant.state("ice-state") in ("connected", "completed")
        assert participant.state("dtls-state") == "connected"
        assert participant.page.get_attribute('[data-role="quality"]', "data-level") in (
            "good",
            "fair",
            "poor",
            "unknown",
        )
        # Adaptive quality without caps (KBV § 5 Nr. 7): degradationPreference, no maxBitrate.
        assert participant.page.evaluate(SENDER_PARAMETERS_JS) == [
            {"degradationPreference": "balanced", "maxBitrate": None}
        ]


def test_both_pages_open_the_call_socket_with_the_same_routing_key(call):
    """What nginx hashes to put both on one server process (redconnect/affinity.py)."""
    doctor, patient, _server = call
    queries = {
        url.split("?", 1)[1] if "?" in url else ""
        for participant in (doctor, patient)
        for url in participant.sockets
        if "/ws/call/" in url
    }
    assert len(queries) == 1, queries
    assert re.fullmatch(r"r=[0-9a-f]{8}", queries.pop())


def test_safety_codes_match_both_dtls_fingerprints(call):
    doctor, patient, _server = call
    doctor_stats, patient_stats = doctor.stats(), patient.stats()
    # Each side's remote fingerprint is the other side's own: nobody in between.
    assert (
        re.search(r"a=fingerprint:.*", doctor_stats["remoteSdp"]).group()
        == re.search(r"a=fingerprint:.*", patient_stats["localSdp"]).group()
    )
    expected = expected_safety_code(doctor_stats["localSdp"], doctor_stats["remoteSdp"])
    assert doctor.state("safety-code") == patient.state("safety-code") == expected
    assert doctor.page.text_content('[data-role="safety-code"]') == expected
    assert patient.page.text_content('[data-role="safety-code"]') == expected


def send_chat(sender: Participant, receiver: Participant, text: str) -> None:
    sender.page.fill('[data-role="chat-input"]', text)
    sender.page.locator('[data-role="chat-send"]').click()
    receiver.page.locator('[data-role="chat-log"] [data-side="peer"]', has_text=text).wait_for()


def test_chat_goes_both_ways(call):
    doctor, patient, _server = call
    send_chat(patient, doctor, "Guten Tag, Frau Doktor")
    send_chat(doctor, patient, "Guten Tag! Wie geht es Ihnen?")
    # The patient's name is what the doctor's chat shows as the author.
    assert PATIENT_NAME in doctor.page.text_content('[data-role="chat-log"]')
    assert doctor.page.text_content('[data-role="peer-name"]') == PATIENT_NAME
    # The patient learns the doctor's account name peer-to-peer (data channel hello).
    doctor_name = doctor.page.get_attribute("[data-call]", "data-display-name")
    assert doctor_name and patient.page.text_content('[data-role="peer-name"]') == doctor_name


def test_audio_only_switch_stops_video_both_ways_and_back(call):
    doctor, patient, _server = call
    patient.page.locator('.controls [data-action="audio-only"]').click()
    for participant in (doctor, patient):
        participant.page.wait_for_function(
            f"() => ({VIDEO_DIRECTIONS_JS})().every((d) => d === 'inactive')"
        )
    doctor.page.locator('[data-role="remote-note"]', has_text="Nur Audio").wait_for()
    patient.page.locator('.controls [data-action="audio-only"]').click()
    for participant in (doctor, patient):
        participant.page.wait_for_function(
            f"() => ({VIDEO_DIRECTIONS_JS})().every((d) => d === 'sendrecv')"
        )
        participant.wait_frames_above(participant.stats()["framesDecoded"] + 10)
    assert patient.page.get_attribute('.controls [data-action="audio-only"]', "aria-pressed") == (
        "false"
    )


def test_mute_is_shown_to_the_other_side_peer_to_peer(call):
    doctor, patient, _server = call
    patient.page.locator('[data-action="mute"]').click()
    doctor.page.locator('[data-role="remote-note"]', has_text="stummgeschaltet").wait_for()
    assert patient.page.evaluate(
        "() => window.redconnect.pc.getSenders().filter((s) => s.track && s.track.kind === 'audio')"
        ".map((s) => s.track.enabled)"
    ) == [False]
    patient.page.locator('[data-action="mute"]').click()
    doctor.page.locator('[data-role="remote-note"]').wait_for(state="hidden")


ICE_UFRAG_JS = "() => /a=ice-ufrag:(\\S+)/.exec(window.redconnect.pc.localDescription.sdp)[1]"


def test_ice_restart_from_either_side_keeps_the_call(call):
    doctor, patient, _server = call
    code = doctor.state("safety-code")
    for initiator in (patient, doctor):  # the polite side first, then the impolite one
        before = {p: p.page.evaluate(ICE_UFRAG_JS) for p in (doctor, patient)}
        initiator.page.evaluate("() => window.redconnect.pc.restartIce()")
        for participant in (doctor, patient):
            participant.page.wait_for_function(
                f"(old) => ({ICE_UFRAG_JS})() !== old", arg=before[participant]
            )
            participant.wait_state("ice-state", "^(connected|completed)$")
            participant.wait_frames_above(participant.stats()["framesDecoded"] + 10)
    assert doctor.state("safety-code") == patient.state("safety-code") == code


def test_call_survives_server_stop_and_signaling_returns(call):
    doctor, patient, server = call
    before = {p: p.wait_frames_above(0) for p in (doctor, patient)}
    code_before = doctor.state("safety-code")
    admissions = doctor.state("admissions")

    server.stop()
    for participant in (doctor, patient):
        participant.wait_state("ws-state", "^(retrying|connecting)$")
    # Media and chat go browser to browser: five seconds without any server.
    doctor.page.wait_for_timeout(5000)
    for participant in (doctor, patient):
        stats = participant.stats()
        assert stats["ice"] in ("connected", "completed")
        assert stats["framesDecoded"] > before[participant] + 30
    send_chat(doctor, patient, "Der Server ist weg, wir nicht.")

    server.start()
    for participant in (doctor, patient):
        participant.wait_state("ws-state", "^open$", timeout=30_000)
    # If the restarted server lost the admission (in-process cache), the doctor admits
    # the patient again; otherwise the server re-sends `admitted` by itself.
    readmit(doctor, admissions, PATIENT_NAME)
    for participant in (doctor, patient):
        participant.wait_state("admissions", "^[2-9]$")
        participant.wait_state("connection-state", "^connected$")
        participant.wait_frames_above(before[participant] + 60)
    # Still the same DTLS connection: the fresh offer renegotiated, it did not replace it.
    assert doctor.state("safety-code") == patient.state("safety-code") == code_before


def test_no_script_errors_or_csp_violations(call):
    doctor, patient, _server = call
    assert doctor.problems == []
    assert patient.problems == []


def test_patient_reloading_the_page_is_let_in_again_with_a_new_connection(call):
    doctor, patient, _server = call
    old_code = doctor.state("safety-code")
    admissions = doctor.state("admissions")
    patient.page.reload()
    pass_device_check(patient)
    # The same join coming back resumes its admission on the server, or the doctor
    # lets the patient in again; either way the doctor starts a new connection.
    readmit(doctor, admissions, PATIENT_NAME)
    patient.wait_state("admissions", "^[1-9]$")
    for participant in (doctor, patient):
        participant.wait_state("connection-state", "^connected$")
        participant.wait_state("safety-code", r"^\d{4} \d{4}$")
        participant.wait_frames_above(10)
    # New DTLS certificates on the patient's side, hence a new safety code on both.
    assert doctor.state("safety-code") == patient.state("safety-code") != old_code


def test_doctor_hangs_up_and_patient_is_told(call):
    doctor, patient, _server = call
    doctor.page.locator('.controls [data-action="hangup"]').click()
    doctor.page.locator('[data-view="ended"]').wait_for()
    patient.page.locator('[data-role="status"]', has_text="Gespräch beendet").wait_for()
    patient.page.locator('[data-view="waiting"]').wait_for()
    assert patient.page.evaluate("() => window.redconnect.pc") is None
    assert doctor.state("ws-state") == "closed"


def test_second_window_and_cancellation_are_explained_in_german(live_site, browser):
    server, seed = live_site
    appointment = manage_json(server.env, "create_appointment", "--doctor", "demo-arzt")
    first = open_participant(browser, server.url)
    fill_join_form(first.page, appointment["patient_code"], PATIENT_NAME)
    pass_device_check(first)
    first.wait_state("ws-state", "^open$")

    # The same patient session in a second window supersedes the first (close 4009).
    second = Participant(first.page.context.new_page())
    second.page.goto("/call/")
    pass_device_check(second)
    second.wait_state("ws-state", "^open$")
    first.page.locator('[data-view="ended"]').wait_for()
    assert "anderen Fenster" in first.page.text_content('[data-role="ended-text"]')
    assert first.state("ws-state") == "closed"  # no reconnect that would steal it back

    # The practice cancels the appointment: the live connection is closed with 4001.
    key = manage_json(server.env, "create_api_key", "--practice", str(seed["practice"]["id"]))
    request = urllib.request.Request(
        f"{server.url}/api/v1/appointments/{appointment['id']}",
        method="DELETE",
        headers={"Authorization": f"Bearer {key['key']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    second.page.locator('[data-view="ended"]').wait_for()
    assert "abgelaufen oder der Termin wurde abgesagt" in second.page.text_content(
        '[data-role="ended-text"]'
    )
    assert first.problems == []
    first.page.context.close()
