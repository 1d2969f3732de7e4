"""Load on the production channel layer: no message may be lost (issue 14, item 6).

channels_redis' own `RedisChannelLayer` lost most messages at 1,000 msg/s: one process
read its Redis queue one message per four round trips, the queue filled up and sends
raised `ChannelFull`. This test drives the layer the production settings use
(`signaling.layers.LocalFirstRedisChannelLayer`, with encryption) on a real redis-server
at a moderate rate: two layer instances stand for two server processes, 60 call pairs
span both (every message crosses Redis) and 20 pairs live in one process (in-process
path), every endpoint sends and receives at the same time. Any message not received,
received twice or out of order fails the test. Bounded: about 3,200 messages in 2 s,
then at most 15 s to drain (time is not asserted: a slow machine only queues).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from channels.exceptions import ChannelFull

from redconnect import redisconf
from signaling.layers import LocalFirstRedisChannelLayer

pytestmark = pytest.mark.redis

CROSS_PAIRS = 60  # one side in each "process": every message goes through Redis
LOCAL_PAIRS = 20  # both sides in one process
RATE = 1600.0  # messages per second, all endpoints together
DURATION = 2.0  # seconds of sending
DRAIN = 15.0  # seconds allowed for the last messages to arrive


class Endpoint:
    """One consumer: its channel, what it sent, and what it received from whom."""

    def __init__(self, layer: LocalFirstRedisChannelLayer, channel: str):
        self.layer, self.channel = layer, channel
        self.peer: Endpoint | None = None
        self.sent = 0
        self.refused = 0
        self.received: dict[str, list[int]] = defaultdict(list)

    async def receive_forever(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            self.received[message["from"]].append(message["n"])

    async def send_at(self, interval: float, until: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(interval * (hash(self.channel) % 997) / 997)  # spread phases
        due = loop.time()
        while due < until:
            message = {"type": "call.relay", "from": self.channel, "n": self.sent}
            message["text"] = '{"type":"candidate","candidate":{"candidate":"x"}}' * 4
            try:
                await self.layer.send(self.peer.channel, message)
            except ChannelFull:
                self.refused += 1  # the consumer would drop it: a lost message
            self.sent += 1
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))


async def pair(one, other) -> tuple[Endpoint, Endpoint]:
    first = Endpoint(one, await one.new_channel())
    second = Endpoint(other, await other.new_channel())
    first.peer, second.peer = second, first
    return first, second


def complete(endpoints: list[Endpoint]) -> bool:
    return all(len(e.peer.received[e.channel]) >= e.sent for e in endpoints)


async def test_no_message_is_lost_across_processes_under_load(redis_server):
    config = {
        **redisconf.channel_layer_config(redis_server.url),
        "symmetric_encryption_keys": ["load-test-layer-key"],
    }
    process_a = LocalFirstRedisChannelLayer(**config)
    process_b = LocalFirstRedisChannelLayer(**config)
    endpoints: list[Endpoint] = []
    for _ in range(CROSS_PAIRS):
        endpoints += await pair(process_a, process_b)
    for _ in range(LOCAL_PAIRS):
        endpoints += await pair(process_b, process_b)
    receivers = [asyncio.ensure_future(e.receive_forever()) for e in endpoints]
    try:
        loop = asyncio.get_running_loop()
        interval = len(endpoints) / RATE
        until = loop.time() + DURATION
        await asyncio.gather(*(e.send_at(interval, until) for e in endpoints))
        deadline = time.monotonic() + DRAIN
        while not complete(endpoints) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive by now
    finally:
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
        await process_a.flush()
        await process_b.close_pools()

    sent = sum(e.sent for e in endpoints)
    # On a loaded machine the generator may fall behind its schedule; half is still load.
    assert sent >= RATE * DURATION / 2, f"the load generator fell short: {sent} sent"
    refused = sum(e.refused for e in endpoints)
    assert refused == 0, f"{refused} of {sent} sends raised ChannelFull"
    dropped = process_a.dropped + process_b.dropped
    assert dropped == 0, f"{dropped} messages dropped at a full local channel"
    for endpoint in endpoints:
        got = endpoint.peer.received[endpoint.channel]
        assert got == list(range(endpoint.sent)), (
            f"{endpoint.channel}: sent {endpoint.sent}, received {len(got)} "
            f"(lost {endpoint.sent - len(set(got))}, out of order or twice otherwise)"
        )
    # Nothing arrived that nobody sent (e.g. from a stale queue of an earlier test).
    assert sum(len(v) for e in endpoints for v in e.received.values()) == sent
