"""The relay hot path stays cheap (DESIGN "Signaling"; figures in bench/README.md).

A relayed frame makes no thread hop (`sync_to_async`): channels' stock
`AsyncConsumer.dispatch` makes one before every handler, which made the relay five times
more expensive. And the embedded default's in-process layer walks its channels for expired
messages at most once per `CLEAN_INTERVAL`, not once per message, while still expiring them.
"""

from __future__ import annotations

import pytest
from asgiref.sync import SyncToAsync
from django.core.cache import cache

from signaling import layers
from tests.callclient import make_candidate, make_sdp
from tests.test_signaling import admitted_call, disconnect, expect, send

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
        pytest.skip("the production profile uses the Redis layer")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == (
        "signaling.layers.ThrottledInMemoryChannelLayer"
    )
