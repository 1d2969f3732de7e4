"""Fuzzing the signaling consumer: >= 10,000 generated frames, nothing invalid relayed.

Contract (WebSocket `/ws/call/`): checks apply in the order size → JSON/shape →
permission/state → content; a refused frame is never relayed and never ends the
connection by itself; offer/answer/candidate are relayed only after admission.

Every hypothesis example opens a fresh doctor + patient pair in-process (one event loop
for the whole run, in-memory channel layer) and sends fewer than 100 frames per
connection, so the 100-frames-per-10-s limit (4029) never hides the validation. Each
side then sends a valid candidate as a sentinel; once the peer has it, every earlier
frame has been handled, and each frame must have produced exactly one of: an `error`
to its sender, or an identical relay to the peer.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections import deque
from dataclasses import dataclass, field

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from consultations import services
from tests.support.callclient import FINGERPRINT, make_candidate, make_sdp

pytestmark = pytest.mark.django_db(transaction=True)

MAX_FRAME_BYTES = 64 * 1024
FRAMES_PER_SIDE = 90  # + admit + sentinels stays below the 100-frame flood limit
ERROR_CODES = {
    "bad-message",
    "unknown-type",
    "too-large",
    "not-admitted",
    "forbidden",
    "nobody-waiting",
    "insecure-sdp",
    "no-such-participant",
}
CLOSE_CODES = {4001, 4003, 4009, 4029}
RELAYED = {"offer": "sdp", "answer": "sdp", "candidate": "candidate"}
RECEIVE_TIMEOUT = 5
TOTAL = {"frames": 0, "relayed": 0, "refused": 0}

# --- frame strategies ----------------------------------------------------------------------

VALID_SDP = make_sdp("fuzz")
SDP_VARIANTS = [
    VALID_SDP,
    VALID_SDP.replace(FINGERPRINT + "\r\n", ""),  # no DTLS fingerprint
    VALID_SDP
    + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n",
    VALID_SDP.replace("a=fingerprint:", "a=FINGERPRINT:"),
    VALID_SDP.replace("\r\n", "\n"),
    "a=fingerprint:sha-256 00",
    "",
    "v=0\r\n" + "a=fingerprint:sha-256 AA\r\n" * 3,
    VALID_SDP.replace("a=setup:actpass", "a=crypto:0 x"),
    VALID_SDP + "\x00\ud7ff\u202e",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
type_names = st.sampled_from(
    [
        "offer",
        "answer",
        "candidate",
        "Offer",
        "OFFER",
        "offer ",
        "welcome",
        "admitted",
        "peer-left",
        "error",
        "waiting",
        "__init__",
        "websocket.disconnect",
        "appointment.closed",
        "relay",
        "",
        "\u0000",
        "candidate\u200b",
    ]
) | st.text(max_size=20)


def huge_text(piece: str, minimum: int, maximum: int) -> st.SearchStrategy[str]:
    """Long strings cheaply: one repeated piece (multi-byte pieces test UTF-8 sizing)."""
    return st.integers(minimum, maximum).map(lambda n: (piece * (n // len(piece) + 1))[:n])


huge_strings = st.one_of(
    huge_text("x", MAX_FRAME_BYTES - 64, MAX_FRAME_BYTES + 64),
    huge_text("ä", MAX_FRAME_BYTES // 2 - 40, MAX_FRAME_BYTES // 2 + 40),  # 2 bytes each
    huge_text("€", 21_800, 22_000),  # 3 bytes each: 65,400 … 66,000 bytes
    huge_text("a=x:0\r\n", 70_000, 150_000),
)
sdps = (
    st.sampled_from(SDP_VARIANTS)
    | st.text(max_size=200)
    | st.builds(lambda extra: VALID_SDP + extra, huge_strings)
)
candidates = (
    st.none()
    | st.builds(
        make_candidate,
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12),
    )
    | json_values
    | st.fixed_dictionaries(
        {"candidate": st.text(max_size=300), "sdpMid": json_scalars, "sdpMLineIndex": json_scalars}
    )
)


def signaling_objects() -> st.SearchStrategy[dict]:
    offer_like = st.fixed_dictionaries(
        {"type": st.sampled_from(["offer", "answer"]), "sdp": sdps | json_values}
    )
    candidate_like = st.fixed_dictionaries({"type": st.just("candidate"), "candidate": candidates})
    missing_payload = st.sampled_from(
        [{"type": "offer"}, {"type": "answer"}, {"type": "candidate"}, {}]
    )
    wrong_type = st.fixed_dictionaries({"type": json_values | type_names})
    with_extras = st.builds(
        lambda base, extra: {**extra, **base},
        offer_like | candidate_like,
        st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    )
    return offer_like | candidate_like | missing_payload | wrong_type | with_extras


def as_frame(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def not_state_changing(frame: str | bytes) -> bool:
    """`admit` and `bye` change the call's state on purpose; the fuzz leaves them out."""
    if isinstance(frame, bytes):
        return True
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        return True
    return not (isinstance(value, dict) and value.get("type") in ("admit", "bye"))


# Frames the consumer should relay, with content it must pass on unchanged.
valid_frames = st.one_of(
    st.builds(
        lambda kind, extra: as_frame({"type": kind, "sdp": VALID_SDP + extra}),
        st.sampled_from(["offer", "answer"]),
        st.text(max_size=100),
    ),
    st.builds(
        lambda text, mid, index: as_frame(
            {
                "type": "candidate",
                "candidate": {"candidate": text, "sdpMid": mid, "sdpMLineIndex": index},
            }
        ),
        st.text(max_size=200),
        st.none() | st.text(max_size=5),
        st.none() | st.integers(0, 2**40),
    ),
)

frames = st.one_of(
    valid_frames,
    valid_frames,
    signaling_objects().map(as_frame),
    json_values.map(as_frame),
    st.text(max_size=200),  # mostly not JSON at all
    huge_strings,
    huge_strings.map(lambda s: as_frame({"type": "candidate", "candidate": {"candidate": s}})),
    st.binary(max_size=300),  # binary frames are never signaling
    st.integers(1, 400).map(lambda depth: "[" * depth + "]" * depth),  # deep nesting
    st.integers(1, 400).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.sampled_from(
        [
            '{"type": "offer", "sdp": "x"',
            "{}",
            "null",
            "[]",
            '"offer"',
            "\ufeff{}",
            '{"type": "candidate", "candidate": NaN}',
            '{"type": 1e999}',
        ]
    ),
).filter(not_state_changing)

# One example: each side's frames, and the order in which the two sides take turns.
batches = st.tuples(
    st.lists(frames, min_size=FRAMES_PER_SIDE - 15, max_size=FRAMES_PER_SIDE),
    st.lists(frames, min_size=FRAMES_PER_SIDE - 15, max_size=FRAMES_PER_SIDE),
    st.randoms(use_true_random=False),
)


def interleave(doctor_frames: list, patient_frames: list, rng) -> list[tuple[bool, object]]:
    turns = [True] * len(doctor_frames) + [False] * len(patient_frames)
    rng.shuffle(turns)
    queues = {True: iter(doctor_frames), False: iter(patient_frames)}
    return [(turn, next(queues[turn])) for turn in turns]


# --- the oracle ------------------------------------------------------------------------------


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def definite_refusal(frame: str | bytes) -> str | None:
    """The error code the contract's check order forces for this frame, if any ("" means
    refused, code not pinned down)."""
    if isinstance(frame, bytes):
        return ""
    if len(frame.encode("utf-8", errors="surrogatepass")) > MAX_FRAME_BYTES:
        return "too-large"
    try:
        value = strict_json(frame)
    except (ValueError, RecursionError):
        try:
            json.loads(frame)
        except (ValueError, RecursionError):
            return "bad-message"
        return None  # NaN/Infinity: refusing is right; relaying would be caught as invalid
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return "bad-message"
    kind = value["type"]
    if kind not in ("admit", "remove", "offer", "answer", "candidate", "bye"):
        return "unknown-type"
    if kind in ("offer", "answer") and not isinstance(value.get("sdp"), str):
        return "bad-message"
    if kind == "candidate" and not (
        "candidate" in value
        and (value["candidate"] is None or isinstance(value["candidate"], dict))
    ):
        return "bad-message"
    if kind in ("offer", "answer"):
        if not secure_sdp(value["sdp"]):
            return ""  # insecure-sdp, or bad-message if the shape check is stricter
    return None


def secure_sdp(sdp: str) -> bool:
    """The contract's content rule: a DTLS fingerprint, no SDES `a=crypto:` key."""
    lowered = sdp.lower()
    return "a=fingerprint:" in lowered and "a=crypto:" not in lowered


def relay_matches(relay: dict, frame: str | bytes) -> bool:
    if isinstance(frame, bytes):
        return False
    try:
        value = json.loads(frame)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, dict) or value.get("type") != relay["type"]:
        return False
    key = RELAYED[relay["type"]]
    if key not in value:
        return False
    sent, relayed = value[key], relay[key]
    if isinstance(sent, dict) and isinstance(relayed, dict):
        # A relay may drop fields it does not know, never add or change one.
        return "candidate" in relayed and all(
            name in sent and _same_json(sent[name], field) for name, field in relayed.items()
        )
    return _same_json(sent, relayed)


def _same_json(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def assert_valid_server_message(message: dict) -> None:
    """What a client may receive at all (contract: server → client messages)."""
    kind = message.get("type")
    if kind == "error":
        assert message.keys() == {"type", "code", "message"}, message
        assert message["code"] in ERROR_CODES and isinstance(message["message"], str)
    elif kind in ("offer", "answer"):
        # Relayed messages carry the sender's participant id (`from`), nothing else added.
        assert message.keys() == {"type", "sdp", "from"}, message
        assert isinstance(message["sdp"], str) and isinstance(message["from"], str), message
        assert secure_sdp(message["sdp"]), message["sdp"][:300]
    elif kind == "candidate":
        assert message.keys() == {"type", "candidate", "from"}, message
        assert message["candidate"] is None or isinstance(message["candidate"], dict)
    else:
        raise AssertionError(f"unexpected message during the fuzz: {str(message)[:300]}")


# --- driving the consumer --------------------------------------------------------------------


@dataclass
class Side:
    name: str
    socket: WebsocketCommunicator
    sent: list = field(default_factory=list)
    received: list = field(default_factory=list)  # everything after the set-up

    async def recv(self) -> dict:
        output = await self.socket.receive_output(RECEIVE_TIMEOUT)
        if output["type"] == "websocket.close":
            raise AssertionError(f"{self.name} closed with {output.get('code')} during the fuzz")
        assert output["type"] == "websocket.send", output
        assert output.get("text") is not None, f"{self.name} got a binary frame"
        message = strict_json(output["text"])  # NaN/Infinity would be invalid JSON
        assert isinstance(message, dict), message
        return message

    async def expect(self, kind: str) -> dict:
        message = await self.recv()
        assert message["type"] == kind, f"{self.name}: expected {kind}, got {message}"
        return message

    async def send(self, frame: str | bytes) -> None:
        # Raw ASGI events: the communicator's helpers refuse empty frames, a browser not.
        if isinstance(frame, bytes):
            await self.socket.send_input({"type": "websocket.receive", "bytes": frame})
        else:
            await self.socket.send_input({"type": "websocket.receive", "text": frame})

    async def drain(self) -> None:
        while not await self.socket.receive_nothing(timeout=0, interval=0):
            self.received.append(await self.recv())


def ws(cookie: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        _application(),
        "/ws/call/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie.encode())],
    )


def _application():
    from redconnect.asgi import application

    return application


async def open_pair(cookies: dict[str, str]) -> tuple[Side, Side]:
    doctor, patient = Side("doctor", ws(cookies["doctor"])), Side("patient", ws(cookies["patient"]))
    connected, _code = await doctor.socket.connect()
    assert connected
    assert (await doctor.expect("welcome"))["role"] == "doctor"
    connected, _code = await patient.socket.connect()
    assert connected
    assert (await patient.expect("welcome"))["role"] == "patient"
    await patient.expect("waiting")
    await doctor.expect("peer-waiting")
    return doctor, patient


async def admit(doctor: Side, patient: Side) -> None:
    await doctor.send(json.dumps({"type": "admit"}))
    await doctor.expect("admitted")
    await patient.expect("admitted")


async def read_until_sentinel(side: Side, sentinel: dict) -> None:
    while True:
        message = await side.recv()
        if message.get("type") == "candidate" and message.get("candidate") == sentinel:
            return
        side.received.append(message)


def check_side(sender: Side, receiver: Side, admitted: bool) -> None:
    """Every frame of `sender` produced exactly one error to it or one relay to the peer."""
    for message in sender.received + receiver.received:
        assert_valid_server_message(message)
    errors = deque(m for m in sender.received if m["type"] == "error")
    relays = deque(m for m in receiver.received if m["type"] in RELAYED)
    for frame in sender.sent:
        forced = definite_refusal(frame)
        if relays and relay_matches(relays[0], frame):
            assert admitted, f"relayed before admission: {str(frame)[:200]}"
            assert forced is None, f"refused frame relayed ({forced}): {str(frame)[:200]}"
            relays.popleft()
            TOTAL["relayed"] += 1
            continue
        assert errors, f"{sender.name}: no error and no relay for {str(frame)[:200]!r}"
        error = errors.popleft()
        if forced:
            assert error["code"] == forced, (error, str(frame)[:200])
        elif forced == "":
            # Before admission the state check comes first (contract order); an unknown
            # `to` (an extra field the fuzz may add) is refused before the content.
            allowed = (
                {"bad-message", "insecure-sdp", "no-such-participant"}
                if admitted
                else {"bad-message", "not-admitted"}
            )
            assert error["code"] in allowed, (error, str(frame)[:200])
        elif not admitted:
            assert error["code"] in ("not-admitted", "bad-message"), (error, str(frame)[:200])
        TOTAL["refused"] += 1
    assert not errors, f"{sender.name}: extra errors {list(errors)[:3]}"
    assert not relays, f"{receiver.name} got relays nobody sent: {list(relays)[:3]}"


async def run_example(cookies: dict[str, str], script: list, admitted: bool) -> None:
    doctor, patient = await open_pair(cookies)
    try:
        if admitted:
            await admit(doctor, patient)
        for is_doctor, frame in script:
            side = doctor if is_doctor else patient
            side.sent.append(frame)
            await side.send(frame)
        TOTAL["frames"] += len(script)
        if not admitted:
            # Let each consumer finish the batch (it answers every refused frame), then
            # admit: nothing sent before admission may surface afterwards either.
            for side in (doctor, patient):
                marker = f"zz-sentinel-{uuid.uuid4().hex}"
                await side.send(json.dumps({"type": marker}))
                while sum(m["type"] == "error" for m in side.received) < len(side.sent) + 1:
                    side.received.append(await side.recv())
                assert side.received[-1]["code"] == "unknown-type"
                side.received.pop()
            await admit(doctor, patient)
        sentinels = {}
        for side in (doctor, patient):
            sentinels[side.name] = make_candidate(f"sentinel{uuid.uuid4().hex[:8]}")
            await side.send(json.dumps({"type": "candidate", "candidate": sentinels[side.name]}))
        # The connection survived the batch: each side's sentinel reaches the other.
        await read_until_sentinel(patient, sentinels["doctor"])
        await read_until_sentinel(doctor, sentinels["patient"])
        await doctor.drain()
        await patient.drain()
        check_side(doctor, patient, admitted)
        check_side(patient, doctor, admitted)
    finally:
        await doctor.socket.disconnect()
        await patient.socket.disconnect()
    # A closed connection's consumer has ended (no task lives on).
    assert doctor.socket.future.done() and patient.socket.future.done()


# --- the test --------------------------------------------------------------------------------


@pytest.fixture
def in_memory_layer(settings):
    """The fuzz runs in-process on the embedded profile's in-memory layer (in the
    production-profile run, too: Redis adds nothing to the validation under test)."""
    from django.conf import settings as live

    if "Redis" in live.CHANNEL_LAYERS["default"]["BACKEND"]:
        try:
            import signaling.layers  # noqa: F401  (the project's in-memory layer)

            backend = "signaling.layers.ThrottledInMemoryChannelLayer"
        except ImportError:
            backend = "channels.layers.InMemoryChannelLayer"
        capacity = live.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"]
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": backend, "CONFIG": {"capacity": capacity}}
        }


@pytest.fixture
def join_call(in_memory_layer, doctor):
    """A function that creates an appointment and returns the Cookie headers of its
    joined doctor and joined patient (through `POST /`, as the browsers do)."""
    doctor_client = Client()
    doctor_client.force_login(doctor)

    def header(client: Client) -> str:
        return "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items())

    def join() -> dict[str, str]:
        issued = services.create_appointment(doctor=doctor)
        response = doctor_client.post(
            "/", {"code": issued.doctor_code, "name": "", "consent": "on"}
        )
        assert response.status_code == 302, response.status_code
        patient_client = Client()
        response = patient_client.post(
            "/", {"code": issued.patient_code, "name": "Fuzzy Patient", "consent": "on"}
        )
        assert response.status_code == 302, response.status_code
        return {"doctor": header(doctor_client), "patient": header(patient_client)}

    return join


@pytest.fixture
def event_loop_for_fuzz():
    loop = asyncio.new_event_loop()
    yield loop
    # Leftover channel-layer receives of finished consumers: end them before closing.
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()

    async def finish() -> None:
        await asyncio.gather(*pending, return_exceptions=True)

    loop.run_until_complete(finish())
    loop.close()


def test_fuzzed_frames_are_refused_or_relayed_intact(join_call, event_loop_for_fuzz):
    TOTAL.update(frames=0, relayed=0, refused=0)

    @settings(
        max_examples=70,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(batch=batches, admitted=st.booleans())
    def fuzz(batch, admitted):
        doctor_frames, patient_frames, rng = batch
        script = interleave(doctor_frames, patient_frames, rng)
        # A fresh appointment per example: no state carries over between examples.
        cookies = join_call()
        event_loop_for_fuzz.run_until_complete(run_example(cookies, script, admitted))

    fuzz()
    print(
        f"\nfuzz: {TOTAL['frames']} frames sent, {TOTAL['refused']} refused, "
        f"{TOTAL['relayed']} relayed"
    )
    assert TOTAL["frames"] >= 10_000
