"""The in-process channel layer of the embedded default, without its per-message full scan.

Channels' `InMemoryChannelLayer` runs `_clean_expired()` — a walk over every channel
queue and every group member of the process — at each `receive()` and `group_send()`.
Every consumer waits in `receive()`, so each relayed frame costs O(connections): with
500 calls (1,000 sockets) that walk was a quarter of the server's CPU and capped the
relay at under 200 frames/s (bench/README.md, "Performance"). Expiry is a safety net
for messages nobody reads (default 60 s); running it at most once a second keeps that
net and makes the cost per frame independent of the number of connections.
"""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer

CLEAN_INTERVAL = 1.0  # seconds between two expiry walks
clock = time.monotonic  # replaceable in tests


class ThrottledInMemoryChannelLayer(InMemoryChannelLayer):
    _next_clean = 0.0

    def _clean_expired(self) -> None:
        now = clock()
        if now < self._next_clean:
            return
        self._next_clean = now + CLEAN_INTERVAL
        super()._clean_expired()
