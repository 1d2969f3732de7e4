"""coturn as started in the lab is the documented one, and it cannot reach inside.

OWASP ASVS 5.0 17.1.1: a TURN server must not relay to internal addresses. A client
with valid REST credentials (the scheme the application hands out) asks the lab's coturn
for permissions: loopback, the server's own address and the documented denied ranges
are refused with 403, the other side's public address is allowed.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.support.netlab import (
    DEPLOYMENT_DOC,
    HOME_LAN,
    LAB_PUBLIC_RANGE,
    PRACTICE_LAN,
    PRACTICE_WAN,
    SERVER_IP,
    TURN_OVERRIDES,
    TURN_PORT,
    config_key,
    documented_turn_config,
    in_netns,
)
from tests.support.turnclient import TurnClient, rest_credentials

pytestmark = pytest.mark.network

REFUSED = [
    "127.0.0.1",  # loopback of the TURN host
    SERVER_IP,  # the TURN host's own (and the application's) address
    HOME_LAN,  # the client's own private network
    PRACTICE_LAN,  # the other side's private network
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata service
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104 (a peer address here, not a bind)
    "224.0.0.1",
]


def permissions(lab, peers: list[str], password: str | None = None) -> dict:
    def probe():
        username, credential = rest_credentials(lab.turn_secret)
        with TurnClient((SERVER_IP, TURN_PORT), username, password or credential) as client:
            allocation = client.allocate()
            if not allocation.success:
                return {"allocate": allocation.error}
            result = {"allocate": "ok", "relayed": client.relayed}
            for peer in peers:
                response = client.create_permission(peer)
                result[peer] = "ok" if response.success else response.error
            return result

    return in_netns(lab.ns["home"], probe)


def test_turn_refuses_internal_peers_and_relays_to_the_other_side(lab):
    result = permissions(lab, [*REFUSED, PRACTICE_WAN])
    assert result["allocate"] == "ok"
    assert result["relayed"][0] == SERVER_IP
    assert {peer: result[peer] for peer in REFUSED} == {peer: 403 for peer in REFUSED}
    assert result[PRACTICE_WAN] == "ok"


def test_turn_refuses_wrong_credentials(lab):
    assert permissions(lab, [], password="d3Jvbmc=")["allocate"] == 401


def test_lab_runs_the_documented_coturn_configuration(lab):
    started = (lab.workdir / "turnserver.conf").read_text().splitlines()
    documented = documented_turn_config()
    kept = [line for line in documented if config_key(line) not in TURN_OVERRIDES]
    # Every documented line that is not a lab override is in the started file, and
    # nothing else is, apart from the overrides.
    assert [line for line in started if config_key(line) not in TURN_OVERRIDES] == kept
    overridden = {config_key(line) for line in started} - {config_key(line) for line in kept}
    assert overridden <= set(TURN_OVERRIDES)
    assert f"allowed-peer-ip={LAB_PUBLIC_RANGE}" in started
    # The documented settings this issue relies on are there and are not overridden.
    for required in ("use-auth-secret", "no-cli", "no-multicast-peers", "tls-listening-port=443"):
        assert required in kept
    assert any(line.startswith("user-quota=") for line in kept)
    assert any(line.startswith("total-quota=") for line in kept)
    # coturn read every documented denied range (IPv6 included): it logs each one.
    log = lab.read_full("turn.log")
    assert "CONFIG ERROR" not in log and "Bad configuration" not in log
    denied = [line.split("=", 1)[1] for line in kept if line.startswith("denied-peer-ip=")]
    assert any(":" in entry for entry in denied)
    for entry in denied:
        assert f"Black listing: {entry}" in log


def documented_value(key: str) -> str:
    values = [line.split("=", 1)[1] for line in documented_turn_config() if config_key(line) == key]
    assert len(values) == 1, key
    return values[0]


def test_one_appointment_cannot_exceed_its_allocation_quota(lab):
    """user-quota counts allocations per username, i.e. per appointment (docs/deployment.md)."""
    quota = int(documented_value("user-quota"))

    def allocate_many():
        username, credential = rest_credentials(lab.turn_secret, name="quota-appointment")
        clients = [
            TurnClient((SERVER_IP, TURN_PORT), username, credential) for _ in range(quota + 1)
        ]
        try:
            results = [client.allocate() for client in clients]
        finally:
            for client in clients:
                client.close()
        # Closed clients delete their allocations (tests.support.turnclient), so no
        # allocation outlives the test to clash with a later one: the quota frees up
        # again (coturn deletes them on its next timer tick, within about a second).
        for _attempt in range(50):
            with TurnClient((SERVER_IP, TURN_PORT), username, credential) as client:
                again = client.allocate()
            if again.success:
                break
            time.sleep(0.1)
        other_user, other_credential = rest_credentials(lab.turn_secret, name="other-appointment")
        with TurnClient((SERVER_IP, TURN_PORT), other_user, other_credential) as client:
            other = client.allocate()
        retried = {
            i: (c.mismatches, c.resent) for i, c in enumerate(clients) if c.mismatches or c.resent
        }
        return (
            [r.success for r in results],
            [r.error for r in results],
            again,
            other.success,
            retried,
        )

    granted, errors, again, other_granted, retried = in_netns(lab.ns["practice"], allocate_many)
    refused = {i: error for i, error in enumerate(errors) if error is not None}
    # What to look at if this fails: the refused allocations' error codes, and the clients
    # that had to retry (index: 437 retries from a new socket, requests sent again).
    assert granted == [True] * quota + [False], f"refused {refused}, retried {retried}"
    assert errors[-1] == 486  # Allocation Quota Reached
    assert again.success, again.error
    assert other_granted  # another appointment is not affected


def test_a_client_port_still_holding_an_allocation_gets_437_and_the_client_moves_on(lab):
    """A crashed client's allocation outlives it; a new client the kernel gives the same
    source port meets it: 437 (Allocation Mismatch), and per RFC 8656 §7.3 it retries from
    another port (what tests.support.turnclient does, like browsers)."""

    def crash_then_reuse():
        username, credential = rest_credentials(lab.turn_secret, name="mismatch-appointment")
        crashed = TurnClient((SERVER_IP, TURN_PORT), username, credential)
        assert crashed.allocate().success
        port = crashed.sock.getsockname()[1]
        crashed.sock.close()  # gone without deleting its allocation
        with TurnClient((SERVER_IP, TURN_PORT), username, credential, source_port=port) as again:
            response = again.allocate()
            moved = again.sock.getsockname()[1]
        # The crashed client's allocation, from a socket on its port, so it ends now.
        with TurnClient((SERVER_IP, TURN_PORT), username, credential, source_port=port) as old:
            old.relayed = crashed.relayed
        return response.success, again.mismatches, port, moved

    success, mismatches, port, moved = in_netns(lab.ns["practice"], crash_then_reuse)
    assert mismatches == 1
    assert success and moved != port


def test_lab_browsers_get_the_documented_ice_servers(lab):
    """The calls use the ICE_SERVERS of deployment.md, only on the lab's address."""
    line = re.search(r"^ICE_SERVERS=(.*)$", DEPLOYMENT_DOC.read_text(), re.M).group(1)
    documented = json.loads(line)
    lab_servers = json.loads(lab.env["ICE_SERVERS"])
    assert [s["country"] for s in lab_servers] == [s["country"] for s in documented]
    lab_urls = [url.replace(SERVER_IP, "turn.example.de") for url in lab_servers[0]["urls"]]
    assert lab_urls == documented[0]["urls"]
