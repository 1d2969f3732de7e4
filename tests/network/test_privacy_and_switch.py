"""Relay-only mode hides the patient's addresses; route switches are announced calmly.

The practice default reaches the same page flag (tests/test_hide_ip.py); the browser
part below is the same for both ways of turning the mode on.
"""

from __future__ import annotations

import pytest

from tests.network.calls import PC_JS, close_call, decodes_video_both_ways, open_call, stats
from tests.support.netlab import HOME_LAN, HOME_WAN, SERVER_IP

pytestmark = pytest.mark.network

POLICY_JS = f"() => {PC_JS}.getConfiguration().iceTransportPolicy"


def assert_doctor_never_saw_the_patients_address(doctor, patient) -> None:
    received = doctor.page.evaluate("() => window.__remoteCandidates")
    sdps = doctor.page.evaluate("() => window.__remoteSdps || []")
    assert received, "the doctor's browser received no candidate at all"
    # Only relay candidates, all of them on coturn: no host, no server-reflexive one.
    assert all(" typ relay" in candidate for candidate in received), received
    for text in [*received, *sdps]:
        assert HOME_LAN not in text and HOME_WAN not in text
    # Nor did the patient's connectivity checks teach the doctor's browser an address
    # (a peer-reflexive candidate): every remote candidate it knows is the relay's.
    remote = stats(doctor)["remoteCandidates"]
    assert remote and {candidate["address"] for candidate in remote} == {SERVER_IP}, remote
    patient_stats = stats(patient)
    assert patient_stats["local"]["type"] == "relay"
    assert patient_stats["local"]["address"] == SERVER_IP


def test_patient_ticks_hide_ip_and_the_doctor_sees_only_the_relay(fresh_nat, browsers):
    # Both NATs would allow a direct connection (see test_calls): relay-only is a choice.
    doctor, patient = open_call(fresh_nat, browsers, hide_ip=True)
    try:
        decodes_video_both_ways(doctor, patient)
        assert patient.page.evaluate(POLICY_JS) == "relay"
        assert doctor.page.evaluate(POLICY_JS) == "all"
        assert_doctor_never_saw_the_patients_address(doctor, patient)
        patient.wait_state("route", "^relay$")
        assert doctor.state("safety-code") == patient.state("safety-code") != ""
    finally:
        close_call(doctor, patient)


ROUTE_NOTE = '[data-role="route-note"]'


def test_switch_to_relay_and_back_is_announced_on_both_sides(fresh_nat, browsers):
    doctor, patient = open_call(fresh_nat, browsers)
    try:
        for participant in (doctor, patient):
            participant.wait_state("route", "^direct$")
            assert participant.page.locator(ROUTE_NOTE).is_hidden()
        fresh_nat.cut_direct_path()
        for participant in (doctor, patient):
            participant.wait_state("route", "^relay$", timeout=60_000)
            note = participant.page.locator(ROUTE_NOTE)
            note.wait_for(state="visible")
            assert "Relay" in note.text_content() and "verschlüsselt" in note.text_content()
            assert participant.page.text_content('[data-role="route"]') == "über Relay"
        decodes_video_both_ways(doctor, patient)

        fresh_nat.restore_direct_path()
        doctor.page.evaluate(f"() => {PC_JS}.restartIce()")
        for participant in (doctor, patient):
            participant.wait_state("route", "^direct$", timeout=60_000)
            participant.page.locator(ROUTE_NOTE, has_text="direkt").wait_for(state="visible")
            assert participant.page.text_content('[data-role="route"]') == "direkt"
        decodes_video_both_ways(doctor, patient)
    finally:
        close_call(doctor, patient)
