"""The call's rules in `signaling.room`, without Channels, database or cache.

`Bus` plays the channel layer: it carries `Deliver`/`Broadcast` events between the rooms
synchronously, in order, and records what each room's client was sent and which other
actions (close, admission bookkeeping) a room asked for.
"""

from __future__ import annotations

import json
from collections import deque

import pytest

from signaling import protocol, room
from signaling.protocol import ProtocolError
from tests.support.callclient import make_sdp

NOW = 1000.0


class Bus:
    def __init__(self) -> None:
        self.rooms: dict[str, room.Room] = {}
        self.sent: dict[str, list[dict]] = {}
        self.other: dict[str, list] = {}
        self.events: list[dict] = []
        self.clock = 0.0
        self.held: list[tuple[str, dict]] | None = None  # see hold_broadcasts()

    def join(self, name: str, role: str, seat: str | None = None, *, admitted=None, join="j"):
        self.clock += 1
        me = room.Member(
            id=f"id-{name}",
            channel=f"ch-{name}",
            role=role,
            seat=seat or role,
            name=name,
            since=self.clock,
            join=f"{join}-{name}",
            admitted=(role == room.DOCTOR) if admitted is None else admitted,
        )
        new = room.Room(me, ice=lambda turn: ["turn" if turn else "stun"], codes_version=1)
        # Presence knows the live connections of the other seats (signaling.consumers).
        expected = {
            r.me.channel for r in self.rooms.values() if not r.closing and r.me.seat != me.seat
        }
        self.rooms[me.channel] = new
        self.sent[me.channel] = []
        self.other[me.channel] = []
        self.run(me.channel, new.hello(expected))
        return new

    def run(self, channel: str, actions) -> None:
        queue = deque((channel, action) for action in actions)
        while queue:
            source, action = queue.popleft()
            if isinstance(action, room.Send):
                self.sent[source].append(action.message)
            elif isinstance(action, room.SendText):
                self.sent[source].append(json.loads(action.text))
            elif isinstance(action, room.Deliver):
                self.events.append(action.event)
                queue.extend(self._handle(action.channel, action.event))
            elif isinstance(action, room.Broadcast):
                self.events.append(action.event)
                if self.held is not None:
                    self.held.append((source, action.event))
                    continue
                for target in list(self.rooms):
                    queue.extend(self._handle(target, action.event))
            else:
                self.other[source].append(action)

    def _handle(self, channel: str, event: dict):
        target = self.rooms.get(channel)
        if target is None or (target.closing and event["type"] != "call.left"):
            return []
        handler = {
            "call.hello": lambda e: target.on_hello(e, NOW),
            "call.here": lambda e: target.on_here(e, NOW),
            "call.admit": lambda e: target.on_admit(e, NOW),
            "call.joined": target.on_joined,
            "call.remove": target.on_remove,
            "call.waiting": target.on_waiting,
            "call.relay": target.on_relay,
            "call.bye": target.on_bye,
            "call.left": target.on_left,
            "call.ping": lambda e: target.on_ping(e, NOW),
        }[event["type"]]
        return [(channel, action) for action in handler(event)]

    def hold_broadcasts(self) -> None:
        """Group events wait (e.g. in Redis) while direct deliveries go through."""
        self.held = []

    def release(self) -> None:
        held, self.held = self.held, None
        for source, event in held:
            self.run(source, [room.Broadcast(event)])

    def frame(self, who: room.Room, frame: dict) -> None:
        self.run(who.me.channel, who.on_frame(protocol.parse(json.dumps(frame))))

    def leave(self, who: room.Room) -> None:
        self.run(who.me.channel, who.leave())
        self.rooms.pop(who.me.channel, None)

    def take(self, who: room.Room) -> list[dict]:
        messages, self.sent[who.me.channel] = self.sent[who.me.channel], []
        return messages

    def kinds(self, who: room.Room) -> list[str]:
        return [m["type"] for m in self.take(who)]


def refused(bus: Bus, who: room.Room, frame: dict) -> str:
    with pytest.raises(ProtocolError) as caught:
        bus.frame(who, frame)
    return caught.value.code


@pytest.fixture
def bus() -> Bus:
    return Bus()


def call(bus: Bus):
    """Doctor, patient and one guest, both admitted (patient first)."""
    doctor = bus.join("doc", room.DOCTOR)
    patient = bus.join("pat", room.PATIENT)
    guest = bus.join("gst", room.GUEST, "guest-0")
    bus.frame(doctor, {"type": "admit"})
    bus.frame(doctor, {"type": "admit", "id": guest.me.id})
    for who in (doctor, patient, guest):
        bus.take(who)
    return doctor, patient, guest


# --- Welcome and waiting ----------------------------------------------------------------


def test_welcome_of_a_waiting_participant_names_only_the_doctor(bus):
    doctor = bus.join("doc", room.DOCTOR)
    bus.join("pat", room.PATIENT)
    guest = bus.join("gst", room.GUEST, "guest-0")
    welcome, waiting = bus.take(guest)
    assert welcome == {
        "type": "welcome",
        "role": "guest",
        "id": "id-gst",
        "ice_servers": ["stun"],  # no TURN credentials before admission
        "peer": {"role": "doctor", "name": "doc"},
        "participants": [{"id": "id-doc", "role": "doctor", "name": "doc", "admitted": True}],
    }
    assert waiting == {"type": "waiting"}
    assert bus.take(doctor)[-1] == {
        "type": "peer-waiting",
        "id": "id-gst",
        "role": "guest",
        "name": "gst",
    }


def test_the_doctors_welcome_has_turn_and_lists_everybody(bus):
    bus.join("pat", room.PATIENT)
    bus.join("gst", room.GUEST, "guest-0")
    doctor = bus.join("doc", room.DOCTOR)
    welcome, *states = bus.take(doctor)
    assert welcome["ice_servers"] == ["turn"]
    assert welcome["peer"] == {"role": "patient", "name": "pat"}
    assert [e["id"] for e in welcome["participants"]] == ["id-pat", "id-gst"]
    assert [(m["type"], m["id"]) for m in states] == [
        ("peer-waiting", "id-pat"),
        ("peer-waiting", "id-gst"),
    ]


def test_welcome_waits_for_the_known_connections(bus):
    bus.join("doc", room.DOCTOR)
    late = room.Room(room.Member("id-x", "ch-x", room.PATIENT, "patient", "x", 9.0))
    actions = late.hello({"ch-doc", "ch-gone"})
    assert not late.welcomed and [type(a) for a in actions] == [room.Broadcast]
    assert late.welcome()[0].message["type"] == "welcome"  # after the grace
    assert late.welcome() == []  # once


# --- Admission ----------------------------------------------------------------------------


def test_admission_by_id_and_who_hears_it(bus):
    doctor = bus.join("doc", room.DOCTOR)
    patient = bus.join("pat", room.PATIENT)
    guest = bus.join("gst", room.GUEST, "guest-0")
    bus.take(doctor), bus.take(patient), bus.take(guest)
    bus.frame(doctor, {"type": "admit", "id": guest.me.id})
    assert bus.take(doctor) == [{"type": "admitted", "id": "id-gst"}]
    (admitted,) = bus.take(guest)
    assert admitted["id"] == "id-gst" and admitted["ice_servers"] == ["turn"]
    assert [e["id"] for e in admitted["participants"]] == ["id-doc"]
    assert bus.take(patient) == []  # waiting: hears nothing
    assert room.StoreAdmission("guest-0", "j-gst") in bus.other["ch-doc"]
    assert room.KeepAdmission() in bus.other["ch-gst"]
    bus.frame(doctor, {"type": "admit"})  # without id: the patient
    (admitted,) = bus.take(patient)
    assert [e["id"] for e in admitted["participants"]] == ["id-doc", "id-gst"]
    assert bus.take(guest) == [
        {"type": "participant-joined", "id": "id-pat", "role": "patient", "name": "pat"}
    ]


def test_quick_admissions_keep_their_order_when_group_events_lag(bus):
    """The patient's `call.joined` reaches the guest only after the guest's own admission:
    the guest must still know that the patient came first, so only the patient offers."""
    doctor = bus.join("doc", room.DOCTOR)
    patient = bus.join("pat", room.PATIENT)
    guest = bus.join("gst", room.GUEST, "guest-0")
    bus.take(doctor), bus.take(patient), bus.take(guest)
    bus.hold_broadcasts()
    bus.frame(doctor, {"type": "admit"})
    bus.frame(doctor, {"type": "admit", "id": guest.me.id})
    bus.release()
    (admitted,) = bus.take(guest)  # no participant-joined for the earlier patient
    assert [e["id"] for e in admitted["participants"]] == ["id-doc", "id-pat"]
    joined = [m for m in bus.take(patient) if m["type"] == "participant-joined"]
    assert [m["id"] for m in joined] == ["id-gst"]


def test_admit_refusals(bus):
    doctor = bus.join("doc", room.DOCTOR)
    guest = bus.join("gst", room.GUEST, "guest-0")
    assert refused(bus, guest, {"type": "admit"}) == "forbidden"
    assert refused(bus, doctor, {"type": "admit"}) == "nobody-waiting"  # guests wait, not P
    assert refused(bus, doctor, {"type": "admit", "id": "nope"}) == "nobody-waiting"
    bus.frame(doctor, {"type": "admit", "id": guest.me.id})
    assert refused(bus, doctor, {"type": "admit", "id": guest.me.id}) == "nobody-waiting"


# --- Relays ---------------------------------------------------------------------------


def test_relays_go_to_the_addressee_with_from(bus):
    doctor, patient, guest = call(bus)
    bus.frame(patient, {"type": "candidate", "candidate": None, "to": guest.me.id})
    assert bus.take(guest) == [{"type": "candidate", "candidate": None, "from": "id-pat"}]
    assert bus.take(doctor) == []
    bus.frame(guest, {"type": "candidate", "candidate": None})  # default: the doctor
    assert bus.take(doctor) == [{"type": "candidate", "candidate": None, "from": "id-gst"}]
    bus.frame(doctor, {"type": "candidate", "candidate": None})  # default: the patient
    assert bus.take(patient) == [{"type": "candidate", "candidate": None, "from": "id-doc"}]
    relays = [e for e in bus.events if e["type"] == "call.relay"]
    assert relays and all(json.loads(e["text"])["type"] in protocol.RELAYED_TYPES for e in relays)


def test_relay_checks_in_contract_order(bus):
    doctor = bus.join("doc", room.DOCTOR)
    patient = bus.join("pat", room.PATIENT)
    guest = bus.join("gst", room.GUEST, "guest-0")
    bus.frame(doctor, {"type": "admit"})
    insecure = "v=0\r\n"
    assert refused(bus, guest, {"type": "offer", "sdp": insecure, "to": "x"}) == "not-admitted"
    assert refused(bus, doctor, {"type": "offer", "sdp": insecure, "to": "x"}) == (
        "no-such-participant"
    )
    assert refused(bus, patient, {"type": "offer", "sdp": insecure, "to": guest.me.id}) == (
        "no-such-participant"  # waiting
    )
    assert refused(bus, patient, {"type": "offer", "sdp": insecure, "to": patient.me.id}) == (
        "no-such-participant"  # oneself
    )
    assert refused(bus, patient, {"type": "offer", "sdp": insecure}) == "insecure-sdp"
    assert refused(bus, patient, {"type": "offer", "sdp": make_sdp(), "to": 3}) == "bad-message"


def test_the_doctor_without_an_admitted_patient_is_not_admitted(bus):
    doctor = bus.join("doc", room.DOCTOR)
    guest = bus.join("gst", room.GUEST, "guest-0")
    bus.frame(doctor, {"type": "admit", "id": guest.me.id})
    assert refused(bus, doctor, {"type": "candidate", "candidate": None}) == "not-admitted"
    bus.frame(doctor, {"type": "candidate", "candidate": None, "to": guest.me.id})
    assert bus.take(guest)[-1]["from"] == "id-doc"


def test_only_relayed_types_are_relayed(bus):
    _doctor, patient, _ = call(bus)
    for kind in ("welcome", "admitted", "peer-left"):
        with pytest.raises(ProtocolError) as caught:
            patient.on_frame(protocol.Message(kind, {"type": kind}))
        assert caught.value.code == "unknown-type"


# --- Remove, bye, leave, timeouts -----------------------------------------------------


def test_remove(bus):
    doctor, patient, guest = call(bus)
    assert refused(bus, patient, {"type": "remove", "id": "x"}) == "forbidden"
    assert refused(bus, doctor, {"type": "remove", "id": "x"}) == "no-such-participant"
    bus.frame(doctor, {"type": "remove", "id": guest.me.id})
    assert bus.take(doctor) == [
        {"type": "participant-left", "id": "id-gst"},
        {"type": "peer-waiting", "id": "id-gst", "role": "guest", "name": "gst"},
    ]
    assert bus.take(guest) == [{"type": "waiting"}]
    assert bus.take(patient) == [{"type": "participant-left", "id": "id-gst"}]
    assert room.EndAdmission() in bus.other["ch-gst"]
    assert refused(bus, guest, {"type": "candidate", "candidate": None}) == "not-admitted"
    assert refused(bus, doctor, {"type": "remove", "id": guest.me.id}) == "no-such-participant"


def test_a_guest_leaving(bus):
    doctor, patient, guest = call(bus)
    bus.leave(guest)
    assert bus.take(doctor) == [{"type": "participant-left", "id": "id-gst"}]
    assert bus.take(patient) == [{"type": "participant-left", "id": "id-gst"}]  # no peer-left
    assert guest.leave() == []  # once


def test_the_patient_leaving_is_also_peer_left(bus):
    doctor, patient, guest = call(bus)
    bus.leave(patient)
    assert bus.kinds(doctor) == ["participant-left", "peer-left"]
    assert bus.kinds(guest) == ["participant-left"]


def test_the_doctors_bye_ends_everybodys_admission(bus):
    doctor, patient, guest = call(bus)
    bus.frame(doctor, {"type": "bye"})
    assert bus.kinds(patient) == ["participant-left", "peer-left", "waiting"]
    assert bus.kinds(guest) == ["participant-left", "waiting"]
    assert room.EndAdmission() in bus.other["ch-pat"] and room.EndAdmission() in bus.other["ch-gst"]
    assert refused(bus, guest, {"type": "candidate", "candidate": None, "to": "id-pat"}) == (
        "not-admitted"
    )


def test_a_silent_connection_times_out(bus):
    _doctor, patient, _guest = call(bus)
    patient.on_ping({"type": "call.ping", "from": "ch-doc"}, NOW + 10)
    actions = patient.on_tick(NOW + 16, timeout=15)
    assert [a.message for a in actions] == [{"type": "participant-left", "id": "id-gst"}]
    assert "ch-doc" in patient.others and "ch-gst" not in patient.others


# --- Supersede, resume, re-issue ------------------------------------------------------


def test_a_newer_connection_of_a_seat_supersedes(bus):
    doctor, patient, guest = call(bus)
    newer = bus.join("gst2", room.GUEST, "guest-0")
    assert guest.superseded
    assert bus.other["ch-gst"][-2:] == [room.EndAdmission(), room.Close(4009)]
    assert bus.take(doctor) == [
        {"type": "participant-left", "id": "id-gst"},
        {"type": "peer-waiting", "id": "id-gst2", "role": "guest", "name": "gst2"},
    ]
    assert bus.take(patient) == [{"type": "participant-left", "id": "id-gst"}]
    assert bus.kinds(newer) == ["welcome", "waiting"]
    assert guest.leave() == []  # the newer hello told everybody already
    # A late hello of the superseded connection changes nothing.
    assert (
        doctor.on_hello({"type": "call.hello", "from": "ch-gst", "intro": guest.me.intro()}, 1)
        == []
    )


def test_a_resumed_admission_counts_as_an_admission(bus):
    doctor, patient, _ = call(bus)
    back = bus.join("gst-back", room.GUEST, "guest-1", admitted=True)
    welcome, admitted = bus.take(back)
    assert welcome["ice_servers"] == ["stun"] and admitted["ice_servers"] == ["turn"]
    assert {e["id"] for e in admitted["participants"]} == {"id-doc", "id-pat", "id-gst"}
    assert bus.take(doctor) == [{"type": "admitted", "id": "id-gst-back"}]
    assert bus.take(patient)[0]["type"] == "participant-joined"


def test_the_doctor_reconnecting(bus):
    doctor, patient, guest = call(bus)
    bus.leave(doctor)
    bus.take(patient), bus.take(guest)
    again = bus.join("doc2", room.DOCTOR)
    assert [(m["type"], m.get("id")) for m in bus.take(again)[1:]] == [
        ("admitted", "id-pat"),
        ("admitted", "id-gst"),
    ]
    assert bus.kinds(patient) == ["participant-joined", "admitted"]
    assert bus.kinds(guest) == ["participant-joined"]


def test_reissue_ends_patients_and_guests_but_not_the_doctor(bus):
    doctor, patient, guest = call(bus)
    assert doctor.on_reissued(2) == []
    assert patient.on_reissued(1) == []  # its own version: nothing
    bus.run("ch-gst", guest.on_reissued(2))
    assert bus.other["ch-gst"][-1] == room.Close(protocol.CLOSE_NO_SESSION)
    assert bus.take(doctor) == [{"type": "participant-left", "id": "id-gst"}]
    assert not guest.me.admitted  # nothing of that join may resume


# --- Privacy of the events ------------------------------------------------------------


def test_names_travel_only_in_introductions(bus):
    _doctor, patient, guest = call(bus)
    bus.frame(patient, {"type": "candidate", "candidate": None, "to": guest.me.id})
    bus.frame(guest, {"type": "bye"})
    bus.run("ch-pat", [room.Broadcast(patient.ping_event())])
    bus.leave(patient)
    checked = 0
    for event in bus.events:
        if event["type"] in ("call.hello", "call.here", "call.admit"):
            continue
        checked += 1
        assert "intro" not in event and "name" not in event, event
        if event["type"] == "call.relay":
            assert "name" not in json.loads(event["text"])
    assert checked >= 4
