"""Issue 11 item 3: nothing a participant sends or is called is readable in Redis.

A private redis-server carries the production channel layer (redisconf, encrypted with
CHANNEL_LAYER_KEY) and the cache. Redis' MONITOR records every command during a
two-person call through the real consumer — join, admission, offer, answer, candidates,
bye — and the record must hold no patient name, no SDP, no candidate address and no
access code. The same call on a layer without the key shows them all: the recorder
sees what it is meant to see.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from django.core.cache import cache

from consultations import services
from redconnect import redisconf
from tests.support.callclient import make_sdp
from tests.test_signaling import (
    PATIENT_NAME,
    admitted_call,
    disconnect,
    expect,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)

CANDIDATE_ADDRESS = "192.0.2.133"  # documentation range; only ever a string here
SDP_MARKERS = ("v=0", "a=fingerprint")


class Monitor:
    """Everything Redis executes, as MONITOR prints it, until `stop()`."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        assert self.sock.recv(5) == b"+OK\r\n"
        self.sock.settimeout(0.2)
        self.chunks: list[bytes] = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            self.chunks.append(data)

    def stop(self) -> str:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()
        return b"".join(self.chunks).decode("latin1")


@pytest.fixture
def redis_layers(settings, redis_server):
    def configure(encrypted: bool):
        config = redisconf.channel_layer_config(redis_server.url, settings.CHANNEL_LAYER_KEY)
        if not encrypted:
            config.pop("symmetric_encryption_keys")
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}
        }
        settings.CACHES = {"default": redisconf.cache_config(redis_server.url)}
        cache.clear()

    return configure


async def a_call(issued, doctor) -> None:
    doc, patient = await admitted_call(issued, doctor)
    try:
        offer, answer = make_sdp("offer"), make_sdp("answer")
        await send(doc, {"type": "offer", "sdp": offer})
        assert (await expect(patient, "offer"))["sdp"] == offer
        await send(patient, {"type": "answer", "sdp": answer})
        assert (await expect(doc, "answer"))["sdp"] == answer
        candidate = {
            "candidate": f"candidate:1 1 udp 2122260223 {CANDIDATE_ADDRESS} 54321 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
        await send(patient, {"type": "candidate", "candidate": candidate})
        assert (await expect(doc, "candidate"))["candidate"] == candidate
        await send(patient, {"type": "bye"})
        await expect(doc, "participant-left")  # then, between doctor and patient:
        await expect(doc, "peer-left")
    finally:
        await disconnect(doc, patient)
    await asyncio.sleep(0.3)  # let the last group messages and presence writes land


def secrets_of(issued: services.IssuedAppointment) -> dict[str, str]:
    found = {
        "patient name": PATIENT_NAME,
        "patient surname": PATIENT_NAME.split()[-1],
        "candidate address": CANDIDATE_ADDRESS,
    }
    for marker in SDP_MARKERS:
        found[f"SDP {marker}"] = marker
    for role, code in (("doctor", issued.doctor_code), ("patient", issued.patient_code)):
        found[f"{role} code"] = code
        found[f"{role} code (normalised)"] = services.normalise_code(code)
    return found


async def monitored_call(redis_server, doctor) -> tuple[services.IssuedAppointment, str]:
    """A new appointment's call over the Redis layers, with all Redis saw meanwhile."""
    issued = await asyncio.to_thread(services.create_appointment, doctor=doctor)
    monitor = Monitor(redis_server.port)
    try:
        await a_call(issued, doctor)
    finally:
        traffic = monitor.stop()
    return issued, traffic


async def test_monitor_sees_nothing_readable_during_a_call(redis_layers, redis_server, doctor):
    redis_layers(encrypted=True)
    issued, traffic = await monitored_call(redis_server, doctor)
    assert "EVAL" in traffic.upper() or "ZADD" in traffic.upper(), "no layer traffic recorded"
    for label, secret in secrets_of(issued).items():
        assert secret not in traffic, f"Redis saw the {label}"


async def test_without_the_key_the_monitor_would_see_it_all(redis_layers, redis_server, doctor):
    redis_layers(encrypted=False)
    _issued, traffic = await monitored_call(redis_server, doctor)
    assert "v=0" in traffic and "a=fingerprint" in traffic and CANDIDATE_ADDRESS in traffic


def test_the_key_is_derived_from_the_secret_key_unless_set():
    derived = redisconf.channel_layer_key("secret-a")
    assert derived == redisconf.channel_layer_key("secret-a")
    assert derived != redisconf.channel_layer_key("secret-b")
    assert "secret-a" not in derived
    assert redisconf.channel_layer_key("secret-a", "explicit-key") == "explicit-key"


def test_production_settings_encrypt_the_layer():
    from tests.support.helpers import run_manage

    script = (
        "from django.conf import settings as s; import json; "
        "c = s.CHANNEL_LAYERS['default']['CONFIG']; "
        "print(json.dumps([c['symmetric_encryption_keys'], s.CHANNEL_LAYER_KEY]))"
    )
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "SECRET_KEY": "k" * 50}
    derived = run_manage(["shell", "-c", script], **env)
    assert derived.returncode == 0, derived.stderr
    keys, key = json.loads(derived.stdout.strip().splitlines()[-1])
    assert keys == [key] == [redisconf.channel_layer_key("k" * 50)]
    explicit = run_manage(["shell", "-c", script], CHANNEL_LAYER_KEY="layer-key-1", **env)
    assert json.loads(explicit.stdout.strip().splitlines()[-1]) == [["layer-key-1"], "layer-key-1"]
