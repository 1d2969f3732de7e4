"""The production channel layer (Redis) against the consumer's flood limit.

DESIGN "Signaling": the channel layer's per-channel capacity sits above the flood limit,
and a full or vanished peer channel is handled, never an internal error. The settings
are loaded exactly as a production process loads them (REDIS_URL set), then exercised
against a real redis-server. Two layer instances stand for two server processes (each
has its own client prefix, i.e. its own process queue in Redis); channels of one
instance are that instance's "in-process" channels (signaling.layers).
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import redis
from channels.exceptions import ChannelFull
from redis.exceptions import RedisError

from redconnect import redisconf
from redconnect.rediscache import RedisCache
from signaling import layers, presence, protocol
from signaling.layers import LocalFirstRedisChannelLayer
from tests.support.helpers import run_manage

pytestmark = pytest.mark.redis

SHOW_SETTINGS = (
    "from django.conf import settings as s; import json; "
    "print(json.dumps([s.CHANNEL_LAYERS['default']['BACKEND'], s.CACHES['default']['BACKEND'], "
    "s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]['address'], "
    "s.CHANNEL_LAYERS['default']['CONFIG']['symmetric_encryption_keys']]))"
)
SECRET = "test-secret-key-for-the-layer-config-0123456789"


def test_redis_url_switches_layer_and_cache_to_redis(redis_server):
    """What a production process loads: the layer and cache of redconnect.redisconf."""
    result = run_manage(
        ["shell", "-v0", "-c", SHOW_SETTINGS],
        REDIS_URL=redis_server.url,
        SECRET_KEY=SECRET,
        CHANNEL_LAYER_KEY="",
    )
    assert result.returncode == 0, result.stderr
    layer, cache, address, keys = json.loads(result.stdout.strip().splitlines()[-1])
    assert layer == "signaling.layers.LocalFirstRedisChannelLayer"
    assert cache == "redconnect.rediscache.RedisCache"
    assert address == redis_server.url
    # Encrypted, with a key derived from (not equal to) SECRET_KEY.
    assert len(keys) == 1 and len(keys[0]) >= 32 and SECRET not in keys[0]


def test_channel_layer_key_setting_replaces_the_derived_key(redis_server):
    result = run_manage(
        ["shell", "-v0", "-c", SHOW_SETTINGS],
        REDIS_URL=redis_server.url,
        SECRET_KEY=SECRET,
        CHANNEL_LAYER_KEY="an-operator-chosen-layer-key-0123456789",
    )
    assert result.returncode == 0, result.stderr
    keys = json.loads(result.stdout.strip().splitlines()[-1])[3]
    assert keys == ["an-operator-chosen-layer-key-0123456789"]


@pytest.fixture
def layer_config(redis_server) -> dict:
    config = redisconf.channel_layer_config(redis_server.url)
    return {"CONFIG": {**config, "symmetric_encryption_keys": ["test-layer-key"]}}


def test_layer_capacity_sits_above_the_flood_limit(layer_config):
    config = layer_config["CONFIG"]
    # A flooding peer's relays plus the control events of a flood window fit.
    assert config["capacity"] > protocol.FLOOD_LIMIT + 10
    assert config["channel_capacity"]["specific.*"] >= config["capacity"]
    # Undelivered messages outlive a heartbeat round, never minutes.
    assert presence.HEARTBEAT_INTERVAL < config["expiry"] <= 60
    # Group membership (joined once per connection) outlives any call.
    assert config["group_expiry"] >= 12 * 3600


async def test_a_busy_peer_receives_a_whole_flood_window_in_order(layer_config):
    config = layer_config["CONFIG"]
    receiver, sender = LocalFirstRedisChannelLayer(**config), LocalFirstRedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        burst = protocol.FLOOD_LIMIT + 10  # relays of one window + pings, hello, bye …
        for number in range(burst):
            await sender.send(channel, {"type": "call.relay", "n": number})
        # The receiving consumer was busy the whole time; nothing was lost.
        received = [await asyncio.wait_for(receiver.receive(channel), 5) for _ in range(burst)]
        assert [message["n"] for message in received] == list(range(burst))
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_a_process_that_stopped_reading_makes_senders_see_channel_full(layer_config):
    """The bound exists (no unbounded Redis memory); the consumer turns ChannelFull into a
    dropped event for that peer, never an error for the sender (signaling.consumers)."""
    config = layer_config["CONFIG"]
    receiver, sender = LocalFirstRedisChannelLayer(**config), LocalFirstRedisChannelLayer(**config)
    try:
        channels = [await receiver.new_channel() for _ in range(2)]
        limit = config["channel_capacity"]["specific.*"]
        for number in range(limit):  # two connections of one process share the queue
            await sender.send(channels[number % 2], {"type": "call.ping"})
        with pytest.raises(ChannelFull):
            await sender.send(channels[0], {"type": "call.ping"})
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_stale_connections_after_a_redis_restart_are_retried(redis_server):
    """Redis restarted: the pooled connections are dead. The next send and receive
    succeed anyway (one quick retry), so a reconnecting call is not refused again."""
    config = redisconf.channel_layer_config(redis_server.url)
    receiver, sender = LocalFirstRedisChannelLayer(**config), LocalFirstRedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        await sender.send(channel, {"type": "call.ping", "n": 1})
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["n"] == 1
        redis_server.stop()
        redis_server.start()  # same port, empty
        await sender.send(channel, {"type": "call.ping", "n": 2})
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["n"] == 2
    finally:
        await receiver.flush()
        await sender.close_pools()


def test_the_cache_recovers_after_a_redis_restart(redis_server):
    """Presence and rate limits: usable at once after a restart (redis-py's sync pool
    also re-checks connections on checkout; the retry covers drops mid-command)."""
    options = redisconf.cache_config(redis_server.url)
    cache = RedisCache(options["LOCATION"], {"OPTIONS": options["OPTIONS"]})
    client = cache._cache.get_client()
    cache.set("rc:test", "before", 30)
    redis_server.stop()
    redis_server.start()
    assert cache.get("rc:test") is None  # emptied, and the stale connection replaced
    cache.set("rc:test", "after", 30)
    assert cache.get("rc:test") == "after"
    assert cache._cache.get_client() is client  # the one client survived the restart


def test_the_cache_reuses_one_redis_client_across_calls_and_threads(redis_server):
    """Django's backend builds a redis-py client per cache call (≈ 140 µs each, a tenth of
    a call set-up's CPU); ours keeps one per connection pool, shared by every thread."""
    options = redisconf.cache_config(redis_server.url)
    cache = RedisCache(options["LOCATION"], {"OPTIONS": options["OPTIONS"]})
    cache.set("rc:first", 0, 30)  # the first call builds the client
    seen = [cache._cache.get_client(write=True)]

    def work(n: int) -> None:
        for i in range(20):
            cache.set(f"rc:thread:{n}:{i}", i, 30)
            assert cache.get(f"rc:thread:{n}:{i}") == i
            seen.append(cache._cache.get_client(write=True))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 81
    assert len({id(client) for client in seen}) == 1, "a new redis-py client per cache call"
    assert seen[0].connection_pool is cache._cache._get_connection_pool(True)


# --- In-process delivery, the pump, privacy (signaling.layers) ---------------------------


def redis_commands(url: str) -> dict[str, int]:
    """Redis' count of calls per command since its start (or the last reset)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


async def test_in_process_delivery_never_touches_redis(layer_config, redis_server):
    """Both consumers in one process: the message stays in memory (privacy, and the
    reason the relay of such a call costs no Redis round trip)."""
    layer = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        first, second = await layer.new_channel(), await layer.new_channel()
        redis.Redis.from_url(redis_server.url).config_resetstat()
        await layer.send(second, {"type": "call.relay", "text": "v=0 secret-sdp"})
        received = await asyncio.wait_for(layer.receive(second), 5)
        assert received == {"type": "call.relay", "text": "v=0 secret-sdp"}
        written = set(redis_commands(redis_server.url)) & {"zadd", "eval", "evalsha", "publish"}
        assert not written, f"an in-process message went to Redis: {written}"
        assert first != second
    finally:
        await layer.flush()


async def test_cross_process_messages_are_encrypted_in_redis(layer_config, redis_server):
    receiver = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    sender = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel = await receiver.new_channel()
        await sender.send(channel, {"type": "call.relay", "text": "a=fingerprint:secret-sdp"})
        # Not received yet: the message waits in the receiving process' Redis queue.
        client = redis.Redis.from_url(redis_server.url)
        stored = b"".join(
            member for key in client.keys("asgi*") for member in client.zrange(key, 0, -1)
        )
        assert stored and b"secret-sdp" not in stored and b"call.relay" not in stored
        received = await asyncio.wait_for(receiver.receive(channel), 5)
        assert received["text"] == "a=fingerprint:secret-sdp"
        assert "__asgi_channel__" not in received
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_a_full_local_channel_raises_channel_full_and_keeps_the_order(layer_config):
    """Per-channel capacity holds for in-process delivery too: the consumer drops the
    event for that peer (never the sender), and what fitted arrives in order."""
    layer = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel = await layer.new_channel()
        capacity = layer_config["CONFIG"]["capacity"]
        for number in range(capacity):
            await layer.send(channel, {"type": "call.relay", "n": number})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "call.relay", "n": capacity})
        received = [(await layer.receive(channel))["n"] for _ in range(capacity)]
        assert received == list(range(capacity))
    finally:
        await layer.flush()


async def test_group_send_reaches_local_and_remote_members_once(layer_config):
    process_a = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    process_b = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        doctor, patient = await process_a.new_channel(), await process_b.new_channel()
        old_tab = await process_a.new_channel()
        for layer, channel in [(process_a, doctor), (process_b, patient), (process_a, old_tab)]:
            await layer.group_add("appt.test", channel)
        await process_a.group_send("appt.test", {"type": "call.hello", "n": 1})
        await process_a.group_discard("appt.test", old_tab)
        await process_b.group_send("appt.test", {"type": "call.hello", "n": 2})
        for layer, channel, expected in [
            (process_a, doctor, [1, 2]),
            (process_b, patient, [1, 2]),
            (process_a, old_tab, [1]),
        ]:
            got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in expected]
            # Order holds per sender; the two senders here are different processes.
            assert sorted(got) == expected
            with pytest.raises(TimeoutError):  # exactly once: nothing further
                await asyncio.wait_for(layer.receive(channel), 0.3)
    finally:
        await process_a.flush()
        await process_b.close_pools()


async def test_inboxes_get_local_and_cross_process_messages_and_the_layers_failure(
    layer_config, redis_server
):
    """A consumer's inbox (signaling.layers.Inboxes) in production: messages of its own
    process arrive without Redis, those of another process through the pump; mail that
    waited before the attach comes first; when Redis goes, the inbox gets the error."""
    layer = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    other = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel, inbox = await layer.new_channel(), asyncio.Queue()
        await layer.send(channel, {"type": "call.hello", "n": 0})  # before the attach
        layer.attach(channel, inbox)
        await layer.send(channel, {"type": "call.relay", "n": 1})
        await other.send(channel, {"type": "call.relay", "n": 2})
        got = [(await asyncio.wait_for(inbox.get(), 5))["n"] for _ in range(3)]
        assert got == [0, 1, 2]
        assert channel not in layer.mailboxes
        await asyncio.sleep(0.2)  # the pump blocks on the process queue again
        redis_server.stop()
        failure = await asyncio.wait_for(inbox.get(), 10)
        redis_server.start()
        assert isinstance(failure, RedisError)
        layer.detach(channel)
        assert layer.inboxes == {}
    finally:
        await layer.flush()
        await other.close_pools()


async def test_mail_expired_before_the_attach_is_not_delivered(layer_config):
    layer = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel, inbox = await layer.new_channel(), asyncio.Queue()
        await layer.send(channel, {"type": "call.hello", "n": "stale"})
        await layer.send(channel, {"type": "call.hello", "n": "fresh"})
        stale = layer.mailboxes[channel].messages[0][1]
        layer.mailboxes[channel].messages[0] = (0.0, stale)  # its expiry has passed
        layer.attach(channel, inbox)
        assert inbox.get_nowait()["n"] == "fresh" and inbox.empty()
    finally:
        await layer.flush()


async def test_a_full_inbox_refuses_like_a_full_mailbox(layer_config):
    layer = LocalFirstRedisChannelLayer(**{**layer_config["CONFIG"], "capacity": 2})
    try:
        channel, inbox = await layer.new_channel(), asyncio.Queue()
        layer.attach(channel, inbox)
        await layer.send(channel, {"type": "call.relay", "n": 1})
        await layer.send(channel, {"type": "call.relay", "n": 2})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "call.relay", "n": 3})
        assert [inbox.get_nowait()["n"] for _ in range(2)] == [1, 2] and inbox.empty()
    finally:
        await layer.flush()


async def test_a_cancelled_receive_loses_nothing(layer_config):
    """Consumers' receives are cancelled when they end (and by timeouts in tests); a
    message that arrives afterwards waits for the next receive."""
    receiver = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    sender = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel = await receiver.new_channel()
        for layer in (receiver, sender):  # in-process, then from the other process
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(receiver.receive(channel), 0.2)
            await layer.send(channel, {"type": "call.ping", "via": id(layer)})
            assert (await asyncio.wait_for(receiver.receive(channel), 5))["via"] == id(layer)
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_expired_messages_are_not_delivered_and_idle_mailboxes_go(layer_config, monkeypatch):
    monkeypatch.setattr(layers, "SWEEP_INTERVAL", 0.0)
    layer = LocalFirstRedisChannelLayer(**{**layer_config["CONFIG"], "expiry": 1})
    try:
        live, gone = await layer.new_channel(), await layer.new_channel()
        await layer.send(live, {"type": "call.ping", "n": "stale"})
        await layer.send(gone, {"type": "call.ping"})  # its consumer has left
        await asyncio.sleep(1.1)
        await layer.send(live, {"type": "call.ping", "n": "fresh"})  # sweeps
        assert gone not in layer.mailboxes
        assert (await asyncio.wait_for(layer.receive(live), 5))["n"] == "fresh"
    finally:
        await layer.flush()


async def test_redis_going_away_fails_every_waiting_receive(layer_config, redis_server):
    """What makes every consumer close with 4503 (try again) when Redis goes away; the
    next receive, once Redis is back, works again."""
    layer = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    other = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channels = [await layer.new_channel() for _ in range(3)]
        waiting = [asyncio.ensure_future(layer.receive(channel)) for channel in channels]
        await asyncio.sleep(0.2)  # the pump now blocks on the process queue
        redis_server.stop()
        done, pending = await asyncio.wait(waiting, timeout=10)
        assert not pending, "a receive kept waiting although Redis was gone"
        assert all(isinstance(task.exception(), RedisError) for task in done)
        redis_server.start()
        await other.send(channels[0], {"type": "call.ping", "n": "after"})
        assert (await asyncio.wait_for(layer.receive(channels[0]), 5))["n"] == "after"
    finally:
        await layer.flush()
        await other.close_pools()


async def test_a_burst_beyond_the_connection_pool_waits_instead_of_failing(layer_config):
    """More senders at once than the pool has connections (redis-py's default pool
    would raise MaxConnectionsError beyond 100): all are delivered, in order per sender."""
    receiver = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    sender = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel = await receiver.new_channel()
        burst = 3 * layers.POOL_SIZE
        await asyncio.gather(
            *(sender.send(channel, {"type": "call.ping", "n": n}) for n in range(burst))
        )
        received = [
            (await asyncio.wait_for(receiver.receive(channel), 5))["n"] for _ in range(burst)
        ]
        assert sorted(received) == list(range(burst))
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_an_idle_process_keeps_receiving(layer_config):
    """The pump blocks in BZPOPMIN for brpop_timeout seconds at a time; a quiet process
    (longer than one such wait, and than redis-py's default socket timeout) must not
    take "no message yet" for a dead Redis."""
    receiver = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    sender = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel = await receiver.new_channel()
        waiting = asyncio.ensure_future(receiver.receive(channel))
        await asyncio.sleep(receiver.brpop_timeout + 1.5)
        assert not waiting.done(), waiting
        await sender.send(channel, {"type": "call.ping", "n": "late"})
        assert (await asyncio.wait_for(waiting, 5))["n"] == "late"
    finally:
        await receiver.flush()
        await sender.close_pools()


# --- Batched cross-process sends (signaling.layers: the outbox) ---------------------------


async def test_sends_of_one_pass_share_one_round_trip_and_only_a_full_queue_refuses(
    layer_config,
):
    """One event-loop pass of sends to two processes: one Lua call, and the process whose
    queue is full makes exactly its own senders raise ChannelFull; the rest arrive."""
    config = {**layer_config["CONFIG"], "channel_capacity": {"specific.*": 3}}
    full_process, ok_process = (
        LocalFirstRedisChannelLayer(**config),
        LocalFirstRedisChannelLayer(**config),
    )
    sender = LocalFirstRedisChannelLayer(**config)
    try:
        stuck, fine = await full_process.new_channel(), await ok_process.new_channel()
        for number in range(3):  # fills the process queue of full_process
            await sender.send(stuck, {"type": "call.ping", "n": number})
        before = sender.batches
        outcomes = await asyncio.gather(
            sender.send(fine, {"type": "call.ping", "n": 0}),
            sender.send(stuck, {"type": "call.ping", "n": 3}),
            sender.send(fine, {"type": "call.ping", "n": 1}),
            sender.send(fine, {"type": "call.ping", "n": 2}),
            return_exceptions=True,
        )
        assert sender.batches == before + 1, "the sends of one pass took several round trips"
        assert [type(outcome).__name__ for outcome in outcomes] == [
            "NoneType",
            "ChannelFull",
            "NoneType",
            "NoneType",
        ]
        got = [(await asyncio.wait_for(ok_process.receive(fine), 5))["n"] for _ in range(3)]
        assert got == [0, 1, 2]
        got = [(await asyncio.wait_for(full_process.receive(stuck), 5))["n"] for _ in range(3)]
        assert got == [0, 1, 2]  # what fitted, without the refused one
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(full_process.receive(stuck), 0.3)
    finally:
        await full_process.flush()
        await ok_process.close_pools()
        await sender.close_pools()


async def test_a_batch_keeps_the_capacity_exact_within_itself(layer_config):
    """The capacity is checked message by message inside the batch: of five sends in one
    pass to a queue with room for three, the last two are refused."""
    config = {**layer_config["CONFIG"], "channel_capacity": {"specific.*": 3}}
    receiver, sender = LocalFirstRedisChannelLayer(**config), LocalFirstRedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        outcomes = await asyncio.gather(
            *(sender.send(channel, {"type": "call.ping", "n": n}) for n in range(5)),
            return_exceptions=True,
        )
        assert [isinstance(outcome, ChannelFull) for outcome in outcomes] == [
            False,
            False,
            False,
            True,
            True,
        ]
        got = [(await asyncio.wait_for(receiver.receive(channel), 5))["n"] for _ in range(3)]
        assert got == [0, 1, 2]
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_group_messages_of_two_groups_and_a_direct_send_share_one_round_trip(layer_config):
    """The fan-out of two groups (one message per process queue, listing that process'
    members) and a direct send, queued in one pass: one Lua call, each member gets its
    group's message once. (group_send first reads the members, a round trip of its own,
    so here the fan-out is queued directly; test_group_send_reaches_local_and_remote_
    members_once covers the whole group_send.)"""
    config = layer_config["CONFIG"]
    sender = LocalFirstRedisChannelLayer(**config)
    remote, other = LocalFirstRedisChannelLayer(**config), LocalFirstRedisChannelLayer(**config)
    try:
        one_a, one_b, two, direct = [await remote.new_channel() for _ in range(4)]
        one_other = await other.new_channel()
        before = sender.batches
        await asyncio.gather(
            sender._group_send_through_redis(
                "appt.one", [one_a, one_b, one_other], {"type": "call.hello", "n": "one"}
            ),
            sender._group_send_through_redis("appt.two", [two], {"type": "call.hello", "n": "two"}),
            sender.send(direct, {"type": "call.ping", "n": "direct"}),
        )
        assert sender.batches == before + 1, "one pass of sends took several round trips"
        for layer, channel, expected in [
            (remote, one_a, "one"),
            (remote, one_b, "one"),
            (other, one_other, "one"),
            (remote, two, "two"),
            (remote, direct, "direct"),
        ]:
            assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == expected
            with pytest.raises(TimeoutError):  # exactly once
                await asyncio.wait_for(layer.receive(channel), 0.2)
    finally:
        await remote.flush()
        await other.close_pools()
        await sender.close_pools()


async def test_order_per_sender_and_channel_holds_across_batches(layer_config):
    """Two senders of one process, two channels of another, more messages at once than
    one batch takes: each sender's messages to each channel arrive in the order sent."""
    config = {**layer_config["CONFIG"], "capacity": 1000}  # all wait before the reads
    receiver, sender = LocalFirstRedisChannelLayer(**config), LocalFirstRedisChannelLayer(**config)
    try:
        channels = [await receiver.new_channel() for _ in range(2)]
        per_stream = layers.SEND_BATCH // 2 + 20  # 4 streams: the sends span several batches
        before = sender.batches

        async def stream(name: str, channel: str) -> None:
            for number in range(per_stream):
                await sender.send(channel, {"type": "call.relay", "from": name, "n": number})

        async def burst(name: str, channel: str) -> None:  # not awaiting each other
            await asyncio.gather(
                *(
                    sender.send(channel, {"type": "call.relay", "from": name, "n": number})
                    for number in range(per_stream)
                )
            )

        await asyncio.gather(
            stream("a", channels[0]),
            stream("b", channels[1]),
            burst("c", channels[0]),
            burst("d", channels[1]),
        )
        # Unbatched: 4 * per_stream round trips. Batched: the two streams (each awaits its
        # send) share one per message, the bursts ride along.
        assert sender.batches - before < 2 * per_stream, "the sends were not batched"
        for channel, names in [(channels[0], "ac"), (channels[1], "bd")]:
            got: dict[str, list[int]] = {name: [] for name in names}
            for _ in range(2 * per_stream):
                message = await asyncio.wait_for(receiver.receive(channel), 5)
                got[message["from"]].append(message["n"])
            assert got == {name: list(range(per_stream)) for name in names}
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_redis_gone_fails_every_sender_of_the_batch(layer_config, redis_server):
    """Each sender of a batch that could not be written raises a Redis error of its own
    (the consumer closes with 4503); once Redis is back, sends work again."""
    receiver = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    sender = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel = await receiver.new_channel()
        await sender.send(channel, {"type": "call.ping", "n": "before"})
        redis_server.stop()
        outcomes = await asyncio.gather(
            *(sender.send(channel, {"type": "call.ping"}) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, RedisError) for outcome in outcomes), outcomes
        assert len({id(outcome) for outcome in outcomes}) == 3  # not one shared instance
        redis_server.start()
        await sender.send(channel, {"type": "call.ping", "n": "after"})
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["n"] == "after"
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_group_messages_are_encrypted_in_redis_too(layer_config, redis_server):
    receiver = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    sender = LocalFirstRedisChannelLayer(**layer_config["CONFIG"])
    try:
        channel = await receiver.new_channel()
        await receiver.group_add("appt.secret", channel)
        await sender.group_send("appt.secret", {"type": "call.hello", "name": "Frieda Geheim"})
        client = redis.Redis.from_url(redis_server.url)
        queue = [key for key in client.keys("asgi*") if b":group:" not in key]
        stored = b"".join(member for key in queue for member in client.zrange(key, 0, -1))
        assert stored and b"Frieda" not in stored and b"call.hello" not in stored
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["name"] == "Frieda Geheim"
    finally:
        await receiver.flush()
        await sender.close_pools()


@pytest.fixture
def redis6_server():
    """A redis-server without BZMPOP (as Redis < 7): the pump's fallback reader."""
    import shutil
    import subprocess

    from testservices import free_port, wait_for_port

    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (make test installs it)"
    port = free_port()
    server = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(
        [*server, "--appendonly", "no", "--rename-command", "BZMPOP", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_pump_reads_a_redis_without_bzmpop(redis6_server):
    config = {
        **redisconf.channel_layer_config(redis6_server),
        "symmetric_encryption_keys": ["test-layer-key"],
    }
    receiver, sender = LocalFirstRedisChannelLayer(**config), LocalFirstRedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        waiting = asyncio.ensure_future(receiver.receive(channel))
        await asyncio.sleep(0.2)  # the pump found no BZMPOP and waits in BZPOPMIN
        await asyncio.gather(*(sender.send(channel, {"n": n, "type": "x"}) for n in range(5)))
        got = [(await asyncio.wait_for(waiting, 5))["n"]]
        got += [(await asyncio.wait_for(receiver.receive(channel), 5))["n"] for _ in range(4)]
        assert got == list(range(5))
        assert receiver._bzmpop is False
    finally:
        await receiver.flush()
        await sender.close_pools()


async def test_an_undecryptable_message_is_dropped_not_fatal(layer_config, redis_server):
    """A member of the process queue that does not decrypt (a process with another layer
    key) is dropped and logged; the receivers keep receiving (no 4503 for every call)."""
    config = layer_config["CONFIG"]
    receiver = LocalFirstRedisChannelLayer(**config)
    stranger = LocalFirstRedisChannelLayer(**{**config, "symmetric_encryption_keys": ["other"]})
    sender = LocalFirstRedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        waiting = asyncio.ensure_future(receiver.receive(channel))
        await asyncio.sleep(0.2)  # the pump waits on the process queue
        await stranger.send(channel, {"type": "call.ping", "n": "foreign"})
        await sender.send(channel, {"type": "call.ping", "n": "ours"})
        assert (await asyncio.wait_for(waiting, 5))["n"] == "ours"
        assert receiver.undecodable == 1
    finally:
        await receiver.flush()
        await stranger.close_pools()
        await sender.close_pools()


# --- Encryption format (signaling.layers.AeadSerializer) ----------------------------------


def test_layer_messages_are_sealed_with_unique_nonces_and_authenticated():
    config = {"symmetric_encryption_keys": ["test-layer-key"], "expiry": 30}
    one = LocalFirstRedisChannelLayer(**config)
    message = {"type": "call.relay", "text": "a=fingerprint:secret-sdp"}
    sealed = [one.serialize(message) for _ in range(3)]
    assert len(set(sealed)) == 3  # unique members of the sorted set
    assert all(b"secret-sdp" not in member and b"call.relay" not in member for member in sealed)
    nonces = {member[20:32] for member in sealed}
    assert len(nonces) == 3
    # Another process (another salt) reads them; a flipped byte anywhere is refused.
    other = LocalFirstRedisChannelLayer(**config)
    assert other.deserialize(sealed[0]) == message
    for position in (5, 25, 35, len(sealed[0]) - 1):
        tampered = bytearray(sealed[0])
        tampered[position] ^= 1
        with pytest.raises(ValueError):
            other.deserialize(bytes(tampered))
    # A process with another key cannot read them.
    with pytest.raises(ValueError):
        LocalFirstRedisChannelLayer(symmetric_encryption_keys=["other"]).deserialize(sealed[0])


def test_a_forked_process_draws_a_new_salt():
    """Salt + message number are the nonce: a child process must not continue the
    parent's numbers under the parent's salt (nonce reuse breaks AES-GCM)."""
    layer = LocalFirstRedisChannelLayer(symmetric_encryption_keys=["test-layer-key"])
    before = layer.serialize({"type": "x"})
    layer._serializer.pid = -1  # what os.getpid() answers differently in a child
    after = layer.serialize({"type": "x"})
    assert before[4:20] != after[4:20]


def test_key_rotation_and_the_time_window(monkeypatch):
    old = LocalFirstRedisChannelLayer(symmetric_encryption_keys=["old-key"], expiry=30)
    rotated = LocalFirstRedisChannelLayer(
        symmetric_encryption_keys=["new-key", "old-key"], expiry=30
    )
    sealed = old.serialize({"type": "call.ping", "n": 1})
    assert rotated.deserialize(sealed)["n"] == 1  # every listed key decrypts
    with pytest.raises(ValueError):  # the first key encrypts: a process on old only
        old.deserialize(rotated.serialize({"type": "x"}))
    now = layers.time.time()
    monkeypatch.setattr(layers.time, "time", lambda: now + 30 + 11)
    with pytest.raises(ValueError):  # older than expiry + 10 s: a replay, refused
        rotated.deserialize(sealed)


async def test_a_process_of_the_previous_release_is_still_understood(layer_config):
    """Rolling restart: channels_redis' own Fernet tokens (what the previous release and
    RedisChannelLayer write) are still read by the pump."""
    from channels_redis.core import RedisChannelLayer

    config = layer_config["CONFIG"]
    receiver, previous = LocalFirstRedisChannelLayer(**config), RedisChannelLayer(**config)
    try:
        channel = await receiver.new_channel()
        await previous.send(channel, {"type": "call.ping", "n": "fernet"})
        assert (await asyncio.wait_for(receiver.receive(channel), 5))["n"] == "fernet"
    finally:
        await receiver.flush()
        await previous.close_pools()
