"""Relay-only configuration and route-switch detection of the call client, run with Node.

The functions take plain data (one RouteWatch per peer connection), so they work the
same for one connection or one per pair of a group call.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

JS_DIR = Path(__file__).resolve().parent.parent / "static" / "js"


def run_module(source: str):
    node = shutil.which("node")
    assert node, "node (Debian package nodejs) is needed for the client logic tests"
    result = subprocess.run(
        [node, "--input-type=module", "-e", source],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def test_route_watch_reports_switches_but_not_the_first_route():
    samples = [
        {"connected": False},
        {"connected": True, "relayed": False},  # first route: no note
        {"connected": True, "relayed": False},
        {"connected": False},  # interrupted: nothing to say yet
        {"connected": True, "relayed": True},  # direct → relay
        {"connected": True, "relayed": True},
        {"connected": True, "relayed": False},  # relay → direct
    ]
    result = run_module(
        f"import {{ RouteWatch, routeOf }} from '{JS_DIR / 'quality.js'}';"
        f"const watch = new RouteWatch(); const samples = {json.dumps(samples)};"
        "console.log(JSON.stringify(samples.map((s) => [routeOf(s), watch.update(s)])));"
    )
    assert result == [
        [None, None],
        ["direct", None],
        ["direct", None],
        [None, None],
        ["relay", "relay"],
        ["relay", None],
        ["direct", "direct"],
    ]


def test_relay_only_configuration_and_turn_detection():
    # peer.js imports safety.js only; RTCPeerConnection is not touched by these functions.
    result = run_module(
        f"import {{ rtcConfiguration, hasTurnServer }} from '{JS_DIR / 'peer.js'}';"
        "const stun = [{urls: ['stun:turn.example.de:3478']}];"
        "const turn = [{urls: 'turns:turn.example.de:443?transport=tcp', username: 'u',"
        " credential: 'c'}];"
        "console.log(JSON.stringify([rtcConfiguration(turn, 'relay'),"
        " rtcConfiguration(undefined, 'all'), rtcConfiguration(stun, 'bogus'),"
        " hasTurnServer(stun), hasTurnServer(turn), hasTurnServer(undefined)]));"
    )
    assert result[0]["iceTransportPolicy"] == "relay"
    assert result[1] == {"iceServers": [], "iceTransportPolicy": "all"}
    assert result[2]["iceTransportPolicy"] == "all"  # anything else never means relay
    assert result[3:] == [False, True, False]
