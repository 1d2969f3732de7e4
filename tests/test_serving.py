"""`manage.py serve`'s adjustment of autobahn (redconnect.serving): no pretty-printing of
the protocol configuration at each WebSocket connect unless debug lines are written."""

from __future__ import annotations

import txaio
from autobahn.websocket import protocol

from redconnect import serving


def test_autobahn_formats_its_configuration_only_for_debug_lines(monkeypatch):
    calls = []
    monkeypatch.setattr(serving.pprint, "pformat", lambda value, *a, **k: calls.append(value))
    monkeypatch.setattr(protocol, "pformat", protocol.pformat)  # undone after the test
    serving.tune_autobahn()
    assert protocol.pformat is serving.pformat_when_debugging
    assert txaio.get_global_log_level() not in serving.DEBUG_LEVELS
    assert protocol.pformat([("autoPingInterval", 20, "Factory")]) == "" and calls == []
    level = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    try:
        protocol.pformat([("autoPingInterval", 20, "Factory")])
    finally:
        txaio.set_global_log_level(level)
    assert calls == [[("autoPingInterval", 20, "Factory")]]


def test_the_serve_command_applies_it_before_daphne_starts(monkeypatch):
    """Runs `serve` with daphne's Server replaced by a recorder of what autobahn's
    `pformat` is when the server is built."""
    import daphne.server
    from django.core.management import call_command

    seen = []

    class Recorder:
        def __init__(self, **kwargs):
            seen.append(protocol.pformat)

        def run(self):
            pass

    monkeypatch.setattr(protocol, "pformat", protocol.pformat)  # undone after the test
    monkeypatch.setattr(daphne.server, "Server", Recorder)
    call_command("serve", "--port", "8123")
    assert seen == [serving.pformat_when_debugging]
