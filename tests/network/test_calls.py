"""Three real calls through NAT: via STUN, via the TURN relay, and over TURN/TLS on 443.

Doctor in "practice", patient in "home", each behind its own NAT router; the only way
between them is the lab's "internet" with the server and coturn (tests/support/netlab.py).
"""

from __future__ import annotations

import pytest

from tests.network.calls import close_call, decodes_video_both_ways, fingerprint, open_call, stats
from tests.support.netlab import HOME_WAN, PRACTICE_WAN, SERVER_IP

pytestmark = pytest.mark.network


def test_port_restricted_nat_both_sides_connects_via_stun(fresh_nat, browsers):
    doctor, patient = open_call(fresh_nat, browsers)
    try:
        decodes_video_both_ways(doctor, patient)
        for participant, other_wan in ((doctor, HOME_WAN), (patient, PRACTICE_WAN)):
            # While the two NATs' holes are still being punched, Chromium may select
            # the relay pair first and move to the direct pair once that answers
            # (the page's switch note; seen once in a fresh-machine run): wait for the
            # direct route, then check that the selected pair really is direct.
            participant.wait_state("route", "^direct$")
            s = stats(participant)
            assert "relay" not in (s["local"]["type"], s["remote"]["type"])
            # The LANs are not routed to each other: the pair goes through both NATs,
            # to the address STUN found for the other side (server-reflexive).
            assert s["remote"]["address"] == other_wan
            assert participant.page.text_content('[data-role="route"]') == "direkt"
    finally:
        close_call(doctor, patient)


def uses_relay(s: dict) -> bool:
    return "relay" in (s["local"]["type"], s["remote"]["type"])


def test_symmetric_nat_connects_via_coturn_end_to_end_encrypted(fresh_nat, browsers):
    fresh_nat.set_nat("hnat", "symmetric")
    doctor, patient = open_call(fresh_nat, browsers)
    try:
        decodes_video_both_ways(doctor, patient)
        doctor_stats, patient_stats = stats(doctor), stats(patient)
        for s in (doctor_stats, patient_stats):
            assert uses_relay(s), s
            # Whichever side allocated it, the relay is the lab's coturn.
            relays = [c for c in (s["local"], s["remote"]) if c["type"] == "relay"]
            assert {c["address"] for c in relays} == {SERVER_IP}
        # Through the relay, each browser still sees the other's own DTLS certificate:
        # coturn forwards ciphertext, it is no party to the encryption.
        assert fingerprint(doctor_stats["remoteSdp"]) == fingerprint(patient_stats["localSdp"])
        assert fingerprint(patient_stats["remoteSdp"]) == fingerprint(doctor_stats["localSdp"])
        assert doctor.state("safety-code") == patient.state("safety-code") != ""
        for participant in (doctor, patient):
            participant.wait_state("route", "^relay$")
            assert participant.page.text_content('[data-role="route"]') == "über Relay"
    finally:
        close_call(doctor, patient)


def test_udp_blocked_at_home_connects_over_turns_on_443(fresh_nat, browsers):
    fresh_nat.set_nat("hnat", "port-restricted", udp_blocked=True)
    doctor, patient = open_call(fresh_nat, browsers)
    try:
        decodes_video_both_ways(doctor, patient)
        patient_stats = stats(patient)
        assert patient_stats["local"]["type"] == "relay"
        # UDP never leaves the home network: the allocation is reached over TLS on 443,
        # the documented `turns:` entry (the lab's ICE_SERVERS offer no plain TURN/TCP).
        assert patient_stats["local"]["relayProtocol"] == "tls", patient_stats["local"]
        assert patient_stats["local"]["url"] == f"turns:{SERVER_IP}:443?transport=tcp"
        assert uses_relay(stats(doctor))
        patient.wait_state("route", "^relay$")
    finally:
        close_call(doctor, patient)
