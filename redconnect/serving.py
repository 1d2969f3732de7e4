"""What `manage.py serve` adjusts in daphne's WebSocket stack (autobahn) before it starts.

autobahn formats its whole protocol configuration with `pprint.pformat` for one debug
log line at every WebSocket connect — also when debug logging is off, because the
argument is built before the (no-op) log call. That was 11.7 % of the server's CPU to
open a waiting patient's connection (bench/README.md, "Issue 14, inboxes"). Here the
module's `pformat` formats only while txaio would write a debug line.
"""

from __future__ import annotations

import pprint

DEBUG_LEVELS = ("debug", "trace")


def pformat_when_debugging(value, *args, **kwargs) -> str:
    import txaio

    if txaio.get_global_log_level() in DEBUG_LEVELS:
        return pprint.pformat(value, *args, **kwargs)
    return ""  # only ever read by a debug line that is not written


def tune_autobahn() -> None:
    import autobahn.twisted.websocket  # noqa: F401  (selects txaio's Twisted API)
    from autobahn.websocket import protocol

    protocol.pformat = pformat_when_debugging
