"""What `manage.py serve` adjusts in daphne's stack (autobahn, Twisted) before it starts.

1. autobahn builds the arguments of its debug log lines also when debug logging is off,
because they are built before the (no-op) log call: its whole protocol configuration
through `pprint.pformat` at every WebSocket connect (11.7 % of the server's CPU to open
a waiting patient's connection, bench/README.md, "Issue 14, inboxes"), and colour-
highlighted names (`hltype`, `hlval`) at every frame read and sent (≈ 3.5 % of the CPU
per relayed message). Here these helpers format only while txaio would write a debug
line.

2. Twisted's TCP connections never send in `write()`: they queue the bytes and ask the
reactor to watch the socket for writability, send when it reports back, then stop
watching. Under the asyncio reactor that is an `add_writer`, a loop wake-up and a
`remove_writer` for every relayed signaling frame. Here a write with nothing queued
before it is sent at once, as asyncio's own transports do; what the socket does not
take, and every write while something is queued, goes Twisted's way, so the order of
bytes is kept. A/B at 2,000 msg/s (bench/README.md, "Issue 14, serving"): p99 4.1–5.9 →
2.6–2.7 ms, CPU per relayed message −6 %.

3. Python's cyclic garbage collector scans its young generation after every 700 new
container objects (the default). A server process that holds thousands of connections
allocates many small objects per frame and per connect, and ran that scan every few
relayed messages. Here it runs after every 50,000; the older generations keep their
defaults, so cycles are still collected, a little later. A/B in one sitting
(docs/architecture.md, "Serving"): opening a waiting patient's connection −20 % CPU, a
relayed message −7 %. The price is memory: garbage is collected later and Python keeps
the memory it once used, ≈ 40 MiB more RSS after a burst of 5,000 page requests.
"""

from __future__ import annotations

import functools
import gc
import pprint

import txaio
from autobahn import util as autobahn_util
from twisted.internet import tcp

DEBUG_LEVELS = ("debug", "trace")


def only_when_debugging(format_value):
    """`format_value`, or "" while no debug line is written (only such lines read it)."""

    @functools.wraps(format_value)
    def formatted(*args, **kwargs) -> str:
        if txaio.get_global_log_level() in DEBUG_LEVELS:
            return format_value(*args, **kwargs)
        return ""

    return formatted


pformat_when_debugging = only_when_debugging(pprint.pformat)
hltype_when_debugging = only_when_debugging(autobahn_util.hltype)
hlval_when_debugging = only_when_debugging(autobahn_util.hlval)


def tune_autobahn() -> None:
    import autobahn.twisted.websocket as twisted_websocket
    from autobahn.websocket import protocol

    protocol.pformat = pformat_when_debugging
    for module in (protocol, twisted_websocket):
        module.hltype = hltype_when_debugging
        module.hlval = hlval_when_debugging


_buffered_write = tcp.Connection.write


def write_now(self: tcp.Connection, data: bytes) -> None:
    """`tcp.Connection.write`: send at once when nothing is queued before `data`."""
    if (
        not self.TLS  # with TLS, write() hands the bytes to the TLS layer: keep that
        and type(data) is bytes
        and data
        and self.connected
        and not self.disconnecting
        and not self._writeDisconnected
        and not self._tempDataBuffer
        and self.offset == len(self.dataBuffer)
        # A pull producer is asked for more only when a queued write was flushed.
        and (self.producer is None or self.streamingProducer)
    ):
        sent = self.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:  # else: lost or full, Twisted's way tells
            if sent == len(data):
                return
            data = data[sent:]
    _buffered_write(self, data)


def tune_twisted() -> None:
    tcp.Connection.write = write_now


GC_YOUNG_THRESHOLD = 50_000  # Python's default: 700


def tune_gc() -> None:
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
