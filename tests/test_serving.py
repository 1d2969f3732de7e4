"""`manage.py serve`'s adjustments of daphne's stack (redconnect.serving): autobahn builds
its debug-line arguments only for debug lines, Twisted sends a write at once when
nothing is queued before it, and the garbage collector scans its young generation less
often."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest
import txaio
from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol
from twisted.internet import tcp

from redconnect import serving
from tests.support.helpers import ROOT


@pytest.fixture
def restored(monkeypatch):
    """Whatever the test tunes is put back afterwards."""
    for module, names in (
        (protocol, ("pformat", "hltype", "hlval")),
        (twisted_websocket, ("hltype", "hlval")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(tcp.Connection, "write", tcp.Connection.write)
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)


@pytest.fixture
def debug_level():
    level = txaio.get_global_log_level()

    def set_debug():
        txaio.set_global_log_level("debug")

    yield set_debug
    txaio.set_global_log_level(level)


TUNED = [
    (protocol, "pformat", [("autoPingInterval", 20, "Factory")]),
    (protocol, "hltype", serving.tune_autobahn),
    (protocol, "hlval", 4711),
    (twisted_websocket, "hltype", serving.tune_autobahn),
    (twisted_websocket, "hlval", 4711),
]


@pytest.mark.parametrize(("module", "name", "value"), TUNED)
def test_autobahn_formats_debug_arguments_only_for_debug_lines(
    restored, debug_level, module, name, value
):
    original = getattr(module, name)
    serving.tune_autobahn()
    tuned = getattr(module, name)
    assert tuned is not original and tuned.__wrapped__ is original
    assert txaio.get_global_log_level() not in serving.DEBUG_LEVELS
    assert tuned(value) == ""
    debug_level()
    assert tuned(value) == original(value) != ""


def test_the_serve_command_applies_them_before_daphne_starts(restored, monkeypatch):
    """Runs `serve` with daphne's Server replaced by a recorder of what is in place when
    the server is built."""
    import daphne.server
    from django.core.management import call_command

    seen = []

    class Recorder:
        def __init__(self, **kwargs):
            seen.append(
                (
                    protocol.pformat,
                    protocol.hlval,
                    twisted_websocket.hltype,
                    tcp.Connection.write,
                    gc.get_threshold()[0],
                )
            )

        def run(self):
            pass

    monkeypatch.setattr(daphne.server, "Server", Recorder)
    call_command("serve", "--port", "8123")
    assert seen == [
        (
            serving.pformat_when_debugging,
            serving.hlval_when_debugging,
            serving.hltype_when_debugging,
            serving.write_now,
            serving.GC_YOUNG_THRESHOLD,
        )
    ]


def twisted_writes(mode: str) -> dict:
    """tests/support/twisted_writes.py in its own process (it runs a reactor)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.twisted_writes", mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_write_with_nothing_queued_goes_out_without_watching_the_socket():
    result = twisted_writes("write_now")
    assert result["intact"], result  # every byte, in order, then a clean close
    assert result["small_write_watches"] == 0


def test_twisted_alone_watches_the_socket_for_every_write():
    """The counter sees Twisted's own way: the test above can fail."""
    result = twisted_writes("buffered")
    assert result["intact"], result
    assert result["small_write_watches"] == 1


def test_a_tls_connection_keeps_twisteds_way(monkeypatch):
    """With TLS, `write()` hands the bytes to the TLS layer: they must never go to the
    socket as they are (the connection has no socket here: a send would raise)."""
    handed_on = []
    monkeypatch.setattr(serving, "_buffered_write", lambda connection, data: handed_on.append(data))
    connection = tcp.Connection.__new__(tcp.Connection)
    connection.TLS = True
    connection.connected = True
    connection._tempDataBuffer = []
    connection.producer = None
    serving.write_now(connection, b"clear text")
    assert handed_on == [b"clear text"]


def test_the_collector_scans_young_objects_less_often_and_keeps_the_older_generations(restored):
    gc.set_threshold(700, 10, 10)
    serving.tune_gc()
    assert gc.get_threshold() == (serving.GC_YOUNG_THRESHOLD, 10, 10)
    assert gc.isenabled()
