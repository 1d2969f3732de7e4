"""The relay hot path stays cheap (DESIGN "Signaling"; figures in bench/README.md).

A relayed frame makes no thread hop (`sync_to_async`): channels' stock
`AsyncConsumer.dispatch` makes one before every handler, which made the relay five times
more expensive. And the embedded default's in-process layer walks its channels for expired
messages at most once per `CLEAN_INTERVAL`, not once per message, while still expiring them.
The presence entries of all of a process's connections are refreshed with one cache write
(one thread hop) per heartbeat interval, not one per connection. A peer's event goes
straight into the consumer's one inbox: no layer receive and no task per message.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.exceptions import ChannelFull
from django.core.cache import cache, caches

from signaling import layers, presence
from tests.support.callclient import make_candidate, make_sdp
from tests.support.deployment import skip_other_profile
from tests.test_signaling import (
    admitted_call,
    connect,
    disconnect,
    doctor_cookie,
    expect,
    patient_cookie,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def count_thread_hops(monkeypatch) -> dict[str, int]:
    hops = {"sync_to_async": 0}
    original = SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        hops["sync_to_async"] += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    return hops


async def test_relayed_frames_make_no_thread_hop(issued, doctor, settings, monkeypatch):
    """With the project's own layer and cache (in-process, or Redis in the second run)."""
    settings.SIGNALING_HEARTBEAT_INTERVAL = 3600  # the heartbeat is not the relay path
    cache.clear()
    doc, patient = await admitted_call(issued, doctor)
    hops = count_thread_hops(monkeypatch)
    try:
        for round_ in range(3):
            await send(doc, {"type": "offer", "sdp": make_sdp(f"o{round_}")})
            await expect(patient, "offer")
            await send(patient, {"type": "answer", "sdp": make_sdp(f"a{round_}")})
            await expect(doc, "answer")
            for _ in range(5):
                await send(patient, {"type": "candidate", "candidate": make_candidate()})
                await expect(doc, "candidate")
        assert hops == {"sync_to_async": 0}
    finally:
        monkeypatch.undo()
        await disconnect(doc, patient)


async def test_a_relayed_message_goes_straight_into_the_peers_inbox(
    issued, doctor, settings, monkeypatch
):
    """With the project's own layer: each consumer reads one queue (signaling.layers.Inboxes).

    Channels' way — a layer receive per message and `await_many_dispatch` (a task and an
    `asyncio.wait` per message) — must not run: both are made to fail loudly here.
    """
    from channels.layers import get_channel_layer

    from signaling import consumers

    settings.SIGNALING_HEARTBEAT_INTERVAL = 3600
    cache.clear()

    def refuse(*args, **kwargs):
        raise AssertionError("a call consumer took Channels' two-receiver path")

    monkeypatch.setattr(consumers, "await_many_dispatch", refuse)
    layer = get_channel_layer()
    monkeypatch.setattr(type(layer), "receive", refuse)
    doc, patient = await admitted_call(issued, doctor)
    try:
        assert len(layer.inboxes) == 2
        for round_ in range(3):
            await send(doc, {"type": "offer", "sdp": make_sdp(f"o{round_}")})
            await expect(patient, "offer")
            await send(patient, {"type": "candidate", "candidate": make_candidate()})
            await expect(doc, "candidate")
    finally:
        await disconnect(doc, patient)
    assert layer.inboxes == {}, "a closed connection kept its inbox"


async def test_the_in_process_layer_fills_inboxes_with_copies_within_capacity():
    layer = layers.ThrottledInMemoryChannelLayer(capacity=3)
    inbox, other = asyncio.Queue(), await layer.new_channel()
    layer.attach("specific.a!x", inbox)
    await layer.group_add("appt.x", "specific.a!x")
    await layer.group_add("appt.x", other)
    event = {"type": "call.relay", "text": "v=0"}
    await layer.send("specific.a!x", event)
    await layer.group_send("appt.x", {"type": "call.ping"})
    got = inbox.get_nowait()
    assert got == event and got is not event  # the receiver's own dict
    assert inbox.get_nowait() == {"type": "call.ping"}
    assert await layer.receive(other) == {"type": "call.ping"}  # no inbox: the layer's queue
    for n in range(3):
        await layer.send("specific.a!x", {"type": "call.relay", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send("specific.a!x", {"type": "call.relay", "n": 3})
    await layer.group_send("appt.x", {"type": "call.ping"})  # a full member is skipped
    assert [inbox.get_nowait()["n"] for _ in range(3)] == [0, 1, 2]
    layer.detach("specific.a!x")
    await layer.send("specific.a!x", {"type": "call.relay", "n": 4})
    assert inbox.empty() and await layer.receive("specific.a!x") == {"type": "call.relay", "n": 4}


async def test_a_send_from_another_thread_reaches_an_inbox_on_its_loop():
    """A sync view's `async_to_sync(group_send)` runs its own loop in another thread."""
    layer = layers.ThrottledInMemoryChannelLayer()
    inbox = asyncio.Queue()
    layer.attach("specific.a!x", inbox)
    await asyncio.to_thread(asyncio.run, layer.send("specific.a!x", {"type": "call.notice"}))
    assert await asyncio.wait_for(inbox.get(), 5) == {"type": "call.notice"}


async def test_a_waiting_patients_connect_makes_one_thread_hop(issued, settings, monkeypatch):
    """Join check, presence snapshot and the new presence entry share one worker-thread
    hop; no session cookie, so no login to resolve (redconnect.wsauth)."""
    settings.SIGNALING_HEARTBEAT_INTERVAL = 3600
    cache.clear()
    cookie = await patient_cookie(issued.patient_code)
    hops = count_thread_hops(monkeypatch)
    patient, _ = await connect(cookie)
    try:
        await expect(patient, "waiting")
        assert hops == {"sync_to_async": 1}
        key = presence.presence_key(issued.appointment.pk, "patient")
        assert await sync_to_async(cache.get)(key)  # the entry that hop wrote
    finally:
        await disconnect(patient)


@pytest.fixture
def fake_clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(layers, "clock", lambda: now[0])
    return now


async def test_in_process_layer_expires_messages_without_a_walk_per_message(fake_clock):
    layer = layers.ThrottledInMemoryChannelLayer(expiry=60)
    layer._clean_expired()  # the first walk of this second
    await layer.send("specific.a!x", {"type": "call.relay"})
    layer.channels["specific.a!x"]._queue[0] = (0.0, {"type": "call.relay"})  # expired now
    await layer.send("specific.b!y", {"type": "call.ping"})  # a send walks nothing …
    await layer.group_send("appt.x", {"type": "call.ping"})  # … neither does a group send
    assert "specific.a!x" in layer.channels
    fake_clock[0] += layers.CLEAN_INTERVAL
    await layer.group_send("appt.x", {"type": "call.ping"})  # next second: the walk runs
    assert "specific.a!x" not in layer.channels
    assert "specific.b!y" in layer.channels


def test_embedded_default_uses_the_throttled_layer(settings):
    if settings.REDIS_URL:
        skip_other_profile("the production profile uses the Redis layer")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == (
        "signaling.layers.ThrottledInMemoryChannelLayer"
    )


# --- Presence refresh: one write per interval for the whole process --------------------


def spy_on_cache_writes(monkeypatch) -> list[tuple[str, dict, object]]:
    """Record every cache write (the real call runs): (method, keys → values, timeout).

    A `set` made by the backend inside `set_many` (LocMemCache loops over `set`) is part
    of that one call and not recorded again.
    """
    writes: list[tuple[str, dict, object]] = []
    inside = threading.local()
    backend = type(caches["default"])
    original_set, original_set_many = backend.set, backend.set_many

    # Recorded once the write is done: a test that sees it may read the value back (on
    # Redis the write runs in another thread and takes a round trip).
    def spy_set(self, key, value, timeout=None, *args, **kwargs):
        result = original_set(self, key, value, timeout, *args, **kwargs)
        if not getattr(inside, "set_many", False):
            writes.append(("set", {key: value}, timeout))
        return result

    def spy_set_many(self, data, timeout=None, *args, **kwargs):
        inside.set_many = True
        try:
            result = original_set_many(self, data, timeout, *args, **kwargs)
        finally:
            inside.set_many = False
        writes.append(("set_many", dict(data), timeout))
        return result

    monkeypatch.setattr(backend, "set", spy_set)
    monkeypatch.setattr(backend, "set_many", spy_set_many)
    return writes


async def until(condition, timeout: float = 10) -> None:
    """Wait for what the refresher does on its own schedule (no assertion on the clock)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_many_connections_share_one_cache_write_per_interval(settings, monkeypatch):
    settings.SIGNALING_HEARTBEAT_INTERVAL = 0.05
    connections = {
        (uuid.uuid4(), role, f"specific.x!{index}{role}")
        for index in range(50)
        for role in ("doctor", "patient")
    }
    writes = spy_on_cache_writes(monkeypatch)
    hops = count_thread_hops(monkeypatch)
    for appointment, role, channel in connections:
        presence.keep_alive(appointment, role, channel)
    try:
        await until(lambda: len(writes) >= 3)
        expected = {presence.presence_key(a, role): ch for a, role, ch in connections}
        for method, data, timeout in writes[:3]:
            assert (method, data, timeout) == ("set_many", expected, presence.PRESENCE_TTL)
        assert hops["sync_to_async"] <= len(writes) + 1  # one hop per refresh, not per key
    finally:
        for _, _, channel in connections:
            presence.let_expire(channel)
    assert presence.refresher().task is None  # nothing registered: the task has ended


async def test_a_connection_is_refreshed_until_it_closes(issued, doctor, settings, monkeypatch):
    """With the project's own cache: the entry is rewritten each interval, then dropped."""
    settings.SIGNALING_HEARTBEAT_INTERVAL = 0.05
    settings.SIGNALING_PEER_TIMEOUT = 3600
    cache.clear()
    doc, patient = await admitted_call(issued, doctor)
    key = presence.presence_key(issued.appointment.pk, "doctor")
    writes = spy_on_cache_writes(monkeypatch)
    try:
        # Gone from the cache (as after PRESENCE_TTL without refresh) …
        await sync_to_async(cache.delete)(key)
        # … the next refresh writes it again, with both connections in one write.
        # (Polled in the cache itself: a write already under way when the entry was
        # deleted would be recorded too, but not bring it back.)
        # A refresh writes the presence entries and then the admissions: wait for both.
        await until(
            lambda: (
                cache.get(key) is not None
                and any(ttl == presence.RESUME_WINDOW for _, _, ttl in writes)
            )
        )
        assert any(key in data for _, data, _ in writes)
        assert {method for method, _, _ in writes} == {"set_many"}
        # Per interval one write of both presence entries and, since the patient is
        # admitted, one of its admission (kept for the resume window after it is last seen).
        presence_writes = [data for _, data, ttl in writes if ttl == presence.PRESENCE_TTL]
        admission_writes = [data for _, data, ttl in writes if ttl == presence.RESUME_WINDOW]
        assert len(presence_writes) + len(admission_writes) == len(writes)
        assert presence_writes and all(len(data) == 2 for data in presence_writes)
        admission = presence.admission_key(issued.appointment.pk, "patient")
        assert admission_writes and all(list(data) == [admission] for data in admission_writes)
    finally:
        await disconnect(doc)
    # After the disconnect the entry is withdrawn and no longer refreshed.
    seen = len(writes)
    await until(lambda: len(writes) >= seen + 2)
    assert all(key not in data for _, data, _ in writes[seen + 1 :])
    assert await sync_to_async(cache.get)(key) is None
    await disconnect(patient)
    monkeypatch.undo()
    assert presence.refresher().task is None


async def test_a_failed_refresh_is_one_warning_and_retried(settings, monkeypatch, caplog):
    settings.SIGNALING_HEARTBEAT_INTERVAL = 0.05
    attempts: list[dict] = []

    def unreachable(self, data, timeout=None, *args, **kwargs):
        attempts.append(dict(data))
        raise ConnectionError("redis://secret-host:6379 refused")

    monkeypatch.setattr(type(caches["default"]), "set_many", unreachable)
    channel = "specific.x!down"
    presence.keep_alive(uuid.uuid4(), "patient", channel)
    try:
        await until(lambda: len(attempts) >= 2)  # the next interval tries again
    finally:
        presence.let_expire(channel)
    warnings = [r for r in caplog.records if "refresh call presence" in r.getMessage()]
    assert warnings and all(r.exc_info is None for r in warnings)
    assert all("secret-host" not in r.getMessage() for r in warnings)
    assert all(channel not in r.getMessage() for r in warnings)


# --- The heartbeat of a connection alone in its room -----------------------------------


async def test_a_lone_connection_beats_rarely_until_somebody_comes(
    issued, doctor, settings, monkeypatch
):
    """A waiting patient alone has nobody to ping or drop: it beats every ALONE_BEATS
    intervals (idle CPU with thousands waiting); with the doctor there, every interval."""
    from signaling import consumers

    settings.SIGNALING_HEARTBEAT_INTERVAL = 0.05
    settings.SIGNALING_PEER_TIMEOUT = 3600
    beats: dict[str, int] = {}
    original = consumers.CallConsumer._beat

    def counting(self):
        beats[self.join.role] = beats.get(self.join.role, 0) + 1
        return original(self)

    monkeypatch.setattr(consumers.CallConsumer, "_beat", counting)
    patient, _ = await connect(await patient_cookie(issued.patient_code))
    doc = None
    try:
        await expect(patient, "waiting")
        await asyncio.sleep(0.05 * consumers.ALONE_BEATS * 0.8)
        assert beats.get("patient", 0) == 0, "a lone connection beat every interval"
        doc, _ = await connect(await doctor_cookie(issued.doctor_code, doctor))
        before = beats.get("patient", 0)
        await until(lambda: beats.get("patient", 0) >= before + 5, timeout=5)
    finally:
        await disconnect(*[socket for socket in (patient, doc) if socket is not None])
