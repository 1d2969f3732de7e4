"""Issue 11 item 15: every persona × every client action on `/ws/call/`, in one table.

The HTTP routes have their table in tests/test_role_matrix.py; this is the one for the
WebSocket route. The actions come from the protocol itself (`protocol.CLIENT_TYPES`): a
new client message type without rows in ACTIONS fails `test_every_client_type_has_rules`.

Each cell runs in a scene of one appointment (a fresh one after any cell that changed
it), through the real ASGI application, with joins made by real `POST /` requests (new
ones per scene, so that no admission is resumed): the doctor, the patient, a guest and a
second guest who always waits (`waiting_guest`). Who is admitted depends on the persona
(SCENES). The acting persona sends one frame; what everybody then receives is summed up as

    close 4001   the connection is closed at once (no join), nobody hears anything
    <code>       an error with that code to the sender only (`forbidden`, …)
    to:<name>    relayed to that participant only, with the sender's id as `from`
    admitted:<n> that waiting participant is admitted (it and the doctor hear it)
    removed:<n>  that admitted participant is sent back to the waiting room
    left         the others hear `participant-left` for the sender (its `bye`)
    ended        the doctor's `bye`: everybody admitted is back in the waiting room (hears
                 `participant-left` for the doctor and `waiting`), the doctor hears
                 `peer-waiting` for everybody
    silent       nobody hears anything, the sender neither

Addressed frames name: the waiting guest (`admit` with id), the guest (`remove`), and
as `to` an admitted participant other than the default peer (TARGETS: patient → guest,
guest → patient, doctor → guest). Another practice's doctor acts from its own join for its own
appointment, with this call's ids: nothing reaches this call. Staff, auditor and
superuser cannot hold a doctor join (`POST /` with the doctor code is refused, 403); they
connect with their login session and whatever that refused attempt left.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from consultations import services
from signaling import protocol
from tests.support.callclient import make_candidate, make_sdp
from tests.test_signaling import (
    _cookie_header,
    communicator,
    connect,
    disconnect,
    doctor_cookie,
    expect,
    login_cookie,
    patient_cookie,
    send,
)

# The channel layer is the profile's: in-process, or Redis in the production profile
# (on Redis this table once hung at teardown: redis-py swallowed the cancellation of the
# layer's pump, see signaling.layers._raise_if_cancelled).
pytestmark = pytest.mark.django_db(transaction=True)

PERSONAS = (
    "anonymous",
    "patient_waiting",
    "patient_admitted",
    "guest_waiting",
    "guest_admitted",
    "doctor",  # the appointment's doctor, the patient admitted
    "doctor_patient_waiting",  # the same doctor, the patient not yet admitted
    "other_doctor",
    "staff",
    "auditor",
    "root",
)
CLOSED = "close 4001"


def row(*outcomes: str) -> dict[str, str]:
    return dict(zip(PERSONAS, outcomes, strict=True))


def connected(*outcomes: str) -> dict[str, str]:
    """A row for the personas that hold a join; the others are closed with 4001."""
    anonymous, staff, auditor, root = (CLOSED,) * 4
    patient_w, patient_a, guest_w, guest_a, doctor, doctor_pw, other = outcomes
    return row(
        anonymous, patient_w, patient_a, guest_w, guest_a, doctor, doctor_pw, other, staff,
        auditor, root,
    )  # fmt: skip


def relayed_row() -> dict[str, str]:
    return connected(
        "not-admitted", "to:doctor", "not-admitted", "to:doctor", "to:patient", "not-admitted",
        "not-admitted",  # another practice's doctor: its own patient is not admitted
    )  # fmt: skip


def relayed_to_row() -> dict[str, str]:
    return connected(
        "not-admitted", "to:guest", "not-admitted", "to:patient", "to:guest", "to:guest",
        "no-such-participant",  # this call's patient is no participant of its call
    )  # fmt: skip


FORBIDDEN = ("forbidden",) * 4  # patient and guest, waiting or admitted

# Action (a client type, optionally a variant) → outcome per persona.
ACTIONS: dict[str, dict[str, str]] = {
    "admit": connected(*FORBIDDEN, "nobody-waiting", "admitted:patient", "nobody-waiting"),
    "admit id": connected(
        *FORBIDDEN, "admitted:waiting_guest", "admitted:waiting_guest", "nobody-waiting"
    ),
    "remove": connected(*FORBIDDEN, "removed:guest", "removed:guest", "no-such-participant"),
    "offer": relayed_row(),
    "offer to": relayed_to_row(),
    "answer": relayed_row(),
    "answer to": relayed_to_row(),
    "candidate": relayed_row(),
    "candidate to": relayed_to_row(),
    "bye": connected("left", "left", "left", "left", "ended", "ended", "silent"),
    "unknown": connected(*["unknown-type"] * 7),
}

# Who is admitted in each persona's scene (the doctor always is; the waiting guest never).
SCENES: dict[str, set[str]] = {
    "patient_waiting": {"guest"},
    "guest_waiting": {"patient"},
    "doctor_patient_waiting": {"guest"},
}
DEFAULT_SCENE = {"patient", "guest"}
# The acting connection of each persona, if it is one of the scene's.
ACTOR_IN_SCENE = {
    "patient_waiting": "patient",
    "patient_admitted": "patient",
    "guest_waiting": "guest",
    "guest_admitted": "guest",
    "doctor": "doctor",
    "doctor_patient_waiting": "doctor",
}
# The `to` of `offer to` and the like, per acting scene member (another practice's
# doctor addresses this call's patient).
TARGETS = {"patient": "guest", "guest": "patient", "doctor": "guest", "other_doctor": "patient"}
TARGET_OF_OUTSIDERS = "other_doctor"  # `to` of anyone outside the scene: the patient


def frame(action: str, ids: dict[str, str], actor: str) -> dict:
    kind, _, variant = action.partition(" ")
    if kind == "unknown":
        return {"type": "chat", "text": "Hallo"}
    if kind == "admit":
        return {"type": "admit", "id": ids["waiting_guest"]} if variant else {"type": "admit"}
    if kind == "remove":
        return {"type": "remove", "id": ids["guest"]}
    if kind == "candidate":
        message = {"type": kind, "candidate": make_candidate(actor)}
    elif kind in ("offer", "answer"):
        message = {"type": kind, "sdp": make_sdp(actor)}
    else:
        message = {"type": kind}
    if variant == "to":
        message["to"] = ids[TARGETS[actor]]
    return message


def test_every_client_type_has_rules():
    kinds = {action.split(" ")[0] for action in ACTIONS} - {"unknown"}
    assert kinds == set(protocol.CLIENT_TYPES), "client types and rows in ACTIONS differ"
    for relayed in protocol.RELAYED_TYPES:  # with and without `to`
        assert {relayed, f"{relayed} to"} <= set(ACTIONS)
    assert "unknown" in ACTIONS and "chat" not in protocol.CLIENT_TYPES
    for action, outcomes in ACTIONS.items():
        assert set(outcomes) == set(PERSONAS), action


# --- Scenes ------------------------------------------------------------------------------


@dataclass
class Scene:
    sockets: dict[str, WebsocketCommunicator] = field(default_factory=dict)
    admitted: list[str] = field(default_factory=list)  # in the order of admission

    @property
    def ids(self) -> dict[str, str]:
        return {name: socket.participant_id for name, socket in self.sockets.items()}


async def admit(scene: Scene, name: str) -> None:
    doc, socket = scene.sockets["doctor"], scene.sockets[name]
    await send(doc, {"type": "admit", "id": socket.participant_id})
    await expect(doc, "admitted", id=socket.participant_id)
    await expect(socket, "admitted", id=socket.participant_id)
    for other in scene.admitted:
        await expect(scene.sockets[other], "participant-joined", id=socket.participant_id)
    scene.admitted.append(name)


async def build_scene(issued, doctor_join: bytes, admitted: set[str]) -> Scene:
    """Doctor, patient, guest, waiting guest: fresh joins (no resumed admission)."""
    scene = Scene()
    scene.sockets["doctor"], _ = await connect(doctor_join)
    joins = (
        ("patient", issued.patient_code, "Paula Patientin"),
        ("guest", issued.guest_codes[0], "Gerd Gast"),
        ("waiting_guest", issued.guest_codes[1], "Wilma Wartend"),
    )
    for name, code, person in joins:
        socket, _ = await connect(await patient_cookie(code, person))
        scene.sockets[name] = socket
        await expect(socket, "waiting")
        await expect(scene.sockets["doctor"], "peer-waiting", id=socket.participant_id)
    for name in ("patient", "guest"):
        if name in admitted:
            await admit(scene, name)
    return scene


async def drain(socket: WebsocketCommunicator) -> list[dict]:
    """Everything `socket` receives until it has been quiet for a moment."""
    messages = []
    while not await socket.receive_nothing(timeout=0.15):
        output = await socket.receive_output(1)
        if output["type"] == "websocket.close":
            messages.append({"type": "close", "code": output["code"]})
            break
        messages.append(_decoded(output))
    return messages


def _decoded(output: dict) -> dict:
    return json.loads(output["text"])


async def closed_at_once(socket: WebsocketCommunicator) -> list[dict]:
    """What a connection without a join receives: only its close, nothing before."""
    messages = []
    while True:
        output = await socket.receive_output(5)
        if output["type"] == "websocket.close":
            return [*messages, {"type": "close", "code": output["code"]}]
        messages.append(_decoded(output))


def summary(actor_id: str | None, ids: dict, mine: list[dict], heard: dict[str, list]) -> str:
    """The cell's outcome in the table's words, or what happened if it fits none."""
    heard = {name: messages for name, messages in heard.items() if messages}
    what = f"actor got {mine}, others heard {heard}"
    kinds = [message["type"] for message in mine]
    if kinds and kinds[0] in ("close", "error"):
        outcome = f"close {mine[0]['code']}" if kinds[0] == "close" else mine[0]["code"]
        return outcome if len(mine) == 1 and not heard else what
    if not mine and not heard:
        return "silent"
    if not mine and len(heard) == 1:
        ((name, messages),) = heard.items()
        kind = messages[0]["type"]
        if len(messages) == 1 and kind in protocol.RELAYED_TYPES:
            return f"to:{name}" if messages[0].get("from") == actor_id else what
    if "error" in kinds:
        return what
    for name, messages in heard.items():
        told = {"type": "admitted", "id": ids[name]}
        if told in mine and any(m["type"] == "admitted" and m["id"] == ids[name] for m in messages):
            return f"admitted:{name}"
        left = {"type": "participant-left", "id": ids[name]}
        if left in mine and {"type": "waiting"} in messages:
            return f"removed:{name}"
    gone = {"type": "participant-left", "id": actor_id}
    sent_back = {m.get("id") for m in mine if m["type"] == "peer-waiting"}
    if (
        kinds == ["peer-waiting"] * len(mine)
        and sent_back == set(ids.values()) - {actor_id}
        and any({"type": "waiting"} in messages for messages in heard.values())
        and all(
            m in (gone, {"type": "peer-left"}, {"type": "waiting"})
            for messages in heard.values()
            for m in messages
        )
    ):
        return "ended"
    if not mine and all(gone in messages for messages in heard.values()):
        return "left"
    return what


async def act(persona: str, action: str, scene: Scene, cookies: dict) -> str:
    """The persona sends the action's frame into `scene`; what happened, summed up."""
    name = ACTOR_IN_SCENE.get(persona)
    if name is not None:
        actor = scene.sockets[name]
        await send(actor, frame(action, scene.ids, name))
        others = {n: s for n, s in scene.sockets.items() if n != name}
        mine, *rest = await asyncio.gather(drain(actor), *map(drain, others.values()))
        return summary(actor.participant_id, scene.ids, mine, dict(zip(others, rest, strict=True)))
    if persona == "other_doctor":  # from its own join, for its own appointment
        actor, _ = await connect(cookies["other_doctor"])
    else:
        actor = communicator(cookies[persona])
        assert (await actor.connect(timeout=5))[0]  # accepted, so that the page can explain
    try:
        # Without a join the frame is sent before the close arrives; it must be ignored.
        await send(actor, frame(action, scene.ids, TARGET_OF_OUTSIDERS))
        if persona == "other_doctor":
            mine = await drain(actor)
        else:
            mine = await closed_at_once(actor)
        rest = await asyncio.gather(*map(drain, scene.sockets.values()))
        return summary(
            actor.participant_id if persona == "other_doctor" else None,
            scene.ids,
            mine,
            dict(zip(scene.sockets, rest, strict=True)),
        )
    finally:
        await disconnect(actor)


def keeps_the_scene(outcome: str) -> bool:
    """Refusals and relays change nobody's state: the next cell may reuse the scene."""
    return not outcome.startswith(("admitted:", "removed:", "left", "ended", "actor got"))


# --- Personas ----------------------------------------------------------------------------


@sync_to_async
def refused_doctor_join(code: str, user) -> bytes:
    """A logged-in non-doctor tries the doctor code: refused, no join; its cookies."""
    client = Client()
    if user is not None:
        client.force_login(user)
    response = client.post("/", {"code": code})
    if user is None:
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    else:
        assert response.status_code == 403, response.status_code
    assert not client.cookies.get(settings.JOIN_COOKIE_NAME), "a join for a non-doctor"
    return _cookie_header(client)


@pytest.fixture
def _fast_hashing(settings):
    # The personas are created with passwords; the default hasher costs ~0.3 s per user.
    # The channel layer is the profile's: in-process here, Redis in the production profile.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


async def test_each_persona_gets_exactly_its_outcome_for_each_action(
    _fast_hashing, doctor, other_practice_doctor, staff, auditor, superuser
):
    issued = await sync_to_async(services.create_appointment)(doctor=doctor, guests=2)
    own = await sync_to_async(services.create_appointment)(doctor=other_practice_doctor)
    cookies = {
        "doctor": await doctor_cookie(issued.doctor_code, doctor),
        "other_doctor": await doctor_cookie(own.doctor_code, other_practice_doctor),
        "anonymous": await refused_doctor_join(issued.doctor_code, None),
    }
    for persona, user in (("staff", staff), ("auditor", auditor), ("root", superuser)):
        cookies[persona] = await refused_doctor_join(issued.doctor_code, user)
    got, wrong = {}, []
    for persona in PERSONAS:
        scene = None
        for action, outcomes in ACTIONS.items():
            if scene is None:
                admitted = SCENES.get(persona, DEFAULT_SCENE)
                scene = await build_scene(issued, cookies["doctor"], admitted)
            result = await act(persona, action, scene, cookies)
            got[(action, persona)] = result
            if result != outcomes[persona]:
                wrong.append(f"{action} as {persona}: {result}, expected {outcomes[persona]}")
            if not keeps_the_scene(result):
                await disconnect(*scene.sockets.values())
                scene = None
        if scene is not None:
            await disconnect(*scene.sockets.values())
    if wrong:
        print("OBSERVED", got)
    assert not wrong, "\n".join(wrong)


@pytest.fixture(params=["staff", "auditor", "superuser", "other_practice_doctor"])
def outsider(request, _fast_hashing):
    return request.getfixturevalue(request.param)


async def test_the_doctors_join_cookie_is_refused_with_another_login(outsider, doctor):
    """Holding the doctor's join cookie (copied) does not help: it is bound to the login."""
    user = outsider
    issued = await sync_to_async(services.create_appointment)(doctor=doctor)
    cookie = await doctor_cookie(issued.doctor_code, doctor)
    join = b"; ".join(c for c in cookie.split(b"; ") if c.startswith(b"rc_join="))
    assert join
    socket = communicator(join + b"; " + await login_cookie(user))
    try:
        assert (await socket.connect(timeout=5))[0]
        assert await closed_at_once(socket) == [
            {"type": "close", "code": protocol.CLOSE_NOT_ALLOWED}
        ]
    finally:
        await disconnect(socket)
