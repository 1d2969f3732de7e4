"""The call's state as plain code: one connection's view of its appointment's room.

No Channels, no database, no cache, no clock: every consumer (one per connection) holds
a `Room` and feeds it what happens — its client's frames and the other connections'
channel-layer events — and carries out the actions it returns (`Send` to its client,
`Deliver` to one other connection, `Broadcast` to all, `Close`, and the admission
bookkeeping). Contract: shared/CONTRACT.md, "WebSocket /ws/call/" and "More than two
participants".

Why a view per connection and not one room object: connections of one appointment may
live in different server processes (Redis channel layer). Each connection is the
authority on itself — its seat, its name, whether it is admitted — and announces
changes to the others (`call.hello`, `call.joined`, `call.waiting`, `call.bye`,
`call.left`); the doctor's connection decides admissions (`call.admit`, `call.remove`).

Events between connections (all carry `from`, the sender's channel name):

- `call.hello`   a new connection introduces itself (`intro`: id, role, seat, name,
                 since, join, admitted); the others answer directly with `call.here`.
                 A newer connection of a seat supersedes the older one (closed 4009).
- `call.admit`   doctor → the admitted connection;  `call.remove` doctor → the removed.
- `call.joined`  a connection has been admitted (by the doctor, or it resumed).
- `call.waiting` an admitted connection was sent back to the waiting room.
- `call.relay`   an offer/answer/candidate, validated and encoded, to one connection.
- `call.bye`, `call.left`  the sender hung up / its connection closed.
- `call.ping`    heartbeat: a connection silent for the peer timeout has gone.

Names travel only in `call.hello`/`call.here`, the introductions that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from redconnect import callcodes
from signaling import protocol
from signaling.protocol import ProtocolError

DOCTOR, PATIENT, GUEST = "doctor", "patient", "guest"


# --- Actions (what the consumer carries out) -------------------------------------------


@dataclass(frozen=True)
class Send:
    """A message to this connection's own client."""

    message: dict


@dataclass(frozen=True)
class SendText:
    """An already encoded message to this connection's client (a relay)."""

    text: str


@dataclass(frozen=True)
class Deliver:
    """A channel-layer event to one other connection."""

    channel: str
    event: dict


@dataclass(frozen=True)
class Broadcast:
    """A channel-layer event to every connection of the appointment."""

    event: dict


@dataclass(frozen=True)
class Close:
    code: int


@dataclass(frozen=True)
class StoreAdmission:
    """The doctor admitted the join on a seat: store it for resumption."""

    seat: str
    join: str


@dataclass(frozen=True)
class KeepAdmission:
    """This connection is admitted: keep its seat's stored admission fresh."""


@dataclass(frozen=True)
class EndAdmission:
    """This connection is no longer admitted: stop refreshing and delete the stored one."""


Action = (
    Send | SendText | Deliver | Broadcast | Close | StoreAdmission | KeepAdmission | EndAdmission
)


# --- Participants -------------------------------------------------------------------------


@dataclass
class Member:
    """A connection as a room view knows it."""

    id: str  # public, opaque, per connection
    channel: str  # channel-layer name (never shown to clients)
    role: str
    seat: str
    name: str
    since: float  # wall-clock connect time: the newest connection of a seat wins
    join: str = ""  # the join id of its cookie: what an admission is bound to
    admitted: bool = False  # the doctor counts as admitted until it says bye
    said_bye: bool = False
    seen: float = 0.0  # monotonic time of its last event (set by the room's caller)
    order: int = 0  # when it was admitted, as far as this view knows (for listing)

    @property
    def key(self) -> tuple[float, str]:
        return (self.since, self.channel)

    def entry(self) -> dict:
        return {"id": self.id, "role": self.role, "name": self.name, "admitted": self.admitted}

    def intro(self) -> dict:
        return {
            "id": self.id,
            "role": self.role,
            "seat": self.seat,
            "name": self.name,
            "since": self.since,
            "join": self.join,
            "admitted": self.admitted,
        }


def member_from(event: dict, now: float) -> Member | None:
    """The sender of a `call.hello`/`call.here`/`call.admit` event, or None if malformed."""
    intro = event.get("intro")
    if not isinstance(intro, dict) or not isinstance(event.get("from"), str):
        return None
    try:
        return Member(
            id=str(intro["id"]),
            channel=event["from"],
            role=str(intro["role"]),
            seat=str(intro["seat"]),
            name=str(intro.get("name", "")),
            since=float(intro["since"]),
            join=str(intro.get("join", "")),
            admitted=bool(intro.get("admitted")),
            seen=now,
        )
    except (KeyError, TypeError, ValueError):
        return None


# --- The room ---------------------------------------------------------------------------


@dataclass
class Room:
    """One connection's view of its appointment's call.

    `ice(turn)` returns the ICE servers for a message (with TURN credentials or not);
    it is the only outside function the room calls.
    """

    me: Member
    ice: Callable[[bool], list] = lambda turn: []
    codes_version: int = 1
    others: dict[str, Member] = field(default_factory=dict)  # by channel
    expected: set[str] = field(default_factory=set)  # channels whose reply we await
    welcomed: bool = False
    superseded: bool = False
    closing: bool = False
    counter: int = 0

    # --- helpers ------------------------------------------------------------------------

    @property
    def is_doctor(self) -> bool:
        return self.me.role == DOCTOR

    def _next_order(self) -> int:
        self.counter += 1
        return self.counter

    def by_id(self, member_id: str) -> Member | None:
        for other in self.others.values():
            if other.id == member_id:
                return other
        return None

    def of_role(self, role: str) -> Member | None:
        for other in self.others.values():
            if other.role == role:
                return other
        return None

    def _event(self, kind: str, **extra) -> dict:
        return {"type": kind, "from": self.me.channel, **extra}

    def _intro_event(self, kind: str) -> dict:
        return self._event(kind, intro=self.me.intro())

    def _admitted_others(self) -> list[Member]:
        members = [m for m in self.others.values() if m.admitted]
        return sorted(members, key=lambda m: (m.role != DOCTOR, m.order, m.key))

    def _peer_pair(self, other: Member) -> bool:
        """Doctor and patient: the pair that also gets `peer-left` (two-person contract)."""
        return {self.me.role, other.role} == {DOCTOR, PATIENT}

    def _peer(self) -> Member | None:
        return self.of_role(PATIENT if self.is_doctor else DOCTOR)

    # --- connecting -----------------------------------------------------------------------

    def hello(self, expected: set[str]) -> list[Action]:
        """Announce this connection; `expected` are the channels presence knows of."""
        self.expected = {channel for channel in expected if channel != self.me.channel}
        actions: list[Action] = [Broadcast(self._intro_event("call.hello"))]
        if self.me.admitted and not self.is_doctor:
            self.me.order = self._next_order()  # resumed: counts as an admission
            actions.append(KeepAdmission())
        if not self.expected:
            actions += self.welcome()
        return actions

    def welcome(self) -> list[Action]:
        """The first message to the client (after the known peers replied, or the grace)."""
        if self.welcomed or self.closing:
            return []
        self.welcomed = True
        peer = self._peer()
        if self.is_doctor or self.me.admitted:
            listed = sorted(self.others.values(), key=lambda m: m.key)
            if not self.is_doctor:
                listed = self._admitted_others()
        else:
            doctor = self.of_role(DOCTOR)
            listed = [doctor] if doctor else []  # a waiting person learns nothing else
        actions: list[Action] = [
            Send(
                {
                    "type": "welcome",
                    "role": self.me.role,
                    "id": self.me.id,
                    # TURN credentials only for the doctor and, in `admitted`, the others.
                    "ice_servers": self.ice(self.is_doctor),
                    "peer": {"role": peer.role, "name": peer.name} if peer else None,
                    "participants": [m.entry() for m in listed],
                }
            )
        ]
        if self.is_doctor:
            for other in sorted(self.others.values(), key=lambda m: m.key):
                actions.append(self._doctor_state(other))
        elif self.me.admitted:
            actions.append(self._admitted_message())
        else:
            actions.append(Send({"type": "waiting"}))
        return actions

    def _doctor_state(self, other: Member) -> Send:
        if other.admitted:
            return Send({"type": "admitted", "id": other.id})
        return Send(
            {"type": "peer-waiting", "id": other.id, "role": other.role, "name": other.name}
        )

    def _admitted_message(self) -> Send:
        return Send(
            {
                "type": "admitted",
                "id": self.me.id,
                "participants": [m.entry() for m in self._admitted_others()],
                "ice_servers": self.ice(True),
            }
        )

    # --- introductions from the others ------------------------------------------------------

    def on_hello(self, event: dict, now: float) -> list[Action]:
        other = member_from(event, now)
        if other is None or other.channel == self.me.channel or self.closing:
            return []
        if other.seat == self.me.seat:
            if other.key > self.me.key:
                return self._superseded()
            return []  # a late hello of an older connection of my seat
        actions = self._meet(other)
        if actions is None:
            return []
        actions.insert(0, Deliver(other.channel, self._intro_event("call.here")))
        return actions

    def on_here(self, event: dict, now: float) -> list[Action]:
        other = member_from(event, now)
        if other is None or other.channel == self.me.channel or self.closing:
            return []
        if other.seat == self.me.seat:
            return []  # cannot happen: a connection never answers its own seat
        actions = self._meet(other) or []
        self.expected.discard(other.channel)
        if not self.welcomed and not self.expected:
            actions += self.welcome()
        return actions

    def _meet(self, other: Member) -> list[Action] | None:
        """Take a newly introduced connection into the view (None: stale, ignored)."""
        known = self.others.get(other.channel)
        if known is not None:
            known.seen = other.seen
            return []
        actions: list[Action] = []
        for old in list(self.others.values()):
            if old.seat == other.seat:
                if old.key > other.key:
                    return None  # a late message of a connection that was superseded
                actions += self._depart(old)  # superseded by the new one
        if other.admitted:
            other.order = self._next_order()
        self.others[other.channel] = other
        if self.welcomed:
            actions += self._arrival(other)
        return actions

    def _arrival(self, other: Member) -> list[Action]:
        """What this client hears of a connection that arrived after its welcome."""
        if self.is_doctor:
            return [self._doctor_state(other)]
        if not self.me.admitted:
            return []  # waiting people hear nothing of the call
        if other.role == DOCTOR:
            actions: list[Action] = [Send(self._joined_message(other))]
            if self.me.role == PATIENT:
                # The doctor (re)connected while this patient is admitted: as before.
                actions.append(self._admitted_message())
            return actions
        if other.admitted:
            return [Send(self._joined_message(other))]
        return []

    @staticmethod
    def _joined_message(other: Member) -> dict:
        return {
            "type": "participant-joined",
            "id": other.id,
            "role": other.role,
            "name": other.name,
        }

    def _superseded(self) -> list[Action]:
        self.superseded = self.closing = True
        # Ending the stored admission here (after this connection stopped refreshing it)
        # is what makes the newer connection wait, even against a refresh in flight.
        actions: list[Action] = [EndAdmission()] if self.me.admitted else []
        self.me.admitted = False
        return [*actions, Close(protocol.CLOSE_SUPERSEDED)]

    # --- departures ----------------------------------------------------------------------------

    def _depart(self, other: Member) -> list[Action]:
        """The connection closed, was superseded or timed out: forget it, tell the client."""
        self.others.pop(other.channel, None)
        self.expected.discard(other.channel)
        actions: list[Action] = []
        if not self.welcomed:
            return actions
        if self.is_doctor or (self.me.admitted and other.admitted):
            actions.append(Send({"type": "participant-left", "id": other.id}))
        if self._peer_pair(other) and not other.said_bye:
            actions.append(Send({"type": "peer-left"}))
        return actions

    def on_left(self, event: dict) -> list[Action]:
        other = self.others.get(event.get("from"))
        return self._depart(other) if other is not None else []

    def on_ping(self, event: dict, now: float) -> list[Action]:
        other = self.others.get(event.get("from"))
        if other is not None:
            other.seen = now
        return []

    def on_tick(self, now: float, timeout: float) -> list[Action]:
        """Drop connections silent for `timeout` seconds (their process died)."""
        actions: list[Action] = []
        for other in list(self.others.values()):
            if now - other.seen > timeout:
                actions += self._depart(other)
        return actions

    def wants_ping(self) -> bool:
        return bool(self.others) and not self.closing

    def ping_event(self) -> dict:
        return self._event("call.ping")  # no name: introductions carry names, pings not

    def leave(self) -> list[Action]:
        """This connection closes (or is closed by the server): tell the others once."""
        if self.closing and not self.superseded:
            return []
        was_superseded = self.superseded
        self.closing = True
        if was_superseded:
            return []  # the newer connection's hello already told everybody
        return [Broadcast(self._event("call.left"))]

    # --- frames from this connection's client ------------------------------------------------

    def on_frame(self, message: protocol.Message) -> list[Action]:
        """A parsed client frame; raises ProtocolError for a refusal (permission, state,
        target, content — in the contract's order)."""
        if message.type == "admit":
            return self._admit(message.id)
        if message.type == "remove":
            return self._remove(message.id)
        if message.type == "bye":
            return self._bye()
        if message.type in protocol.RELAYED_TYPES:
            return self._relay(message)
        raise ProtocolError(callcodes.UNKNOWN_TYPE)

    def _admit(self, member_id: str | None) -> list[Action]:
        if not self.is_doctor:
            raise ProtocolError(callcodes.FORBIDDEN)
        if member_id is None:
            target = self.of_role(PATIENT)
        else:
            target = self.by_id(member_id)
        if target is None or target.admitted:
            raise ProtocolError(callcodes.NOBODY_WAITING)
        target.admitted, target.said_bye = True, False
        target.order = self._next_order()
        self.me.admitted, self.me.said_bye = True, False
        return [
            # Stored before anybody hears `admitted`: whoever reconnects finds it there.
            StoreAdmission(target.seat, target.join),
            # Who was admitted before, in order: the doctor is the one sequencer of
            # admissions, so the newcomer never mistakes an earlier admission (whose
            # `call.joined` may still be on its way) for a later one and both offer.
            Deliver(
                target.channel,
                {
                    **self._intro_event("call.admit"),
                    "before": [m.channel for m in self._admitted_others() if m is not target],
                },
            ),
            Send({"type": "admitted", "id": target.id}),
        ]

    def _remove(self, member_id: str | None) -> list[Action]:
        if not self.is_doctor:
            raise ProtocolError(callcodes.FORBIDDEN)
        target = self.by_id(member_id) if member_id is not None else None
        if target is None or not target.admitted:
            raise ProtocolError(callcodes.NO_SUCH_PARTICIPANT)
        target.admitted = False
        return [
            Deliver(target.channel, self._event("call.remove")),
            Send({"type": "participant-left", "id": target.id}),
            self._doctor_state(target),
        ]

    def _bye(self) -> list[Action]:
        """A hang-up ends this connection's admission (the doctor's: everybody's)."""
        self.me.admitted, self.me.said_bye = False, True
        actions: list[Action] = [Broadcast(self._event("call.bye"))]
        if self.is_doctor:
            for other in sorted(self.others.values(), key=lambda m: m.key):
                other.admitted = False
                actions.append(self._doctor_state(other))
        else:
            actions.append(EndAdmission())
        return actions

    def _relay(self, message: protocol.Message) -> list[Action]:
        if not self.me.admitted:
            raise ProtocolError(callcodes.NOT_ADMITTED)
        if message.to is None:
            target = self._peer()
            if self.is_doctor and (target is None or not target.admitted):
                raise ProtocolError(callcodes.NOT_ADMITTED)
            protocol.check_content(message)
            if target is None or not target.admitted:
                return []  # the doctor is away: nobody to relay to, nothing to complain about
        else:
            target = self.by_id(message.to)
            if target is None or not target.admitted:
                raise ProtocolError(callcodes.NO_SUCH_PARTICIPANT)
            protocol.check_content(message)
        text = protocol.encode({**message.data, "from": self.me.id})
        return [Deliver(target.channel, self._event("call.relay", text=text))]

    # --- state changes from the others -------------------------------------------------------

    def on_admit(self, event: dict, now: float) -> list[Action]:
        """The doctor admitted this connection."""
        actions: list[Action] = []
        sender = self.others.get(event.get("from"))
        if sender is None:
            # The doctor's admit overtook its introduction (e.g. during our grace).
            sender = member_from(event, now)
            if sender is None or sender.role != DOCTOR:
                return []
            met = self._meet(sender)
            if met is None:
                return []
            actions += met
        if sender.role != DOCTOR or self.closing:
            return actions
        sender.admitted, sender.said_bye, sender.seen = True, False, now
        if self.me.admitted:
            return actions
        for channel in event.get("before", ()):
            earlier = self.others.get(channel)
            if earlier is not None and not earlier.admitted:
                earlier.admitted, earlier.said_bye = True, False
                earlier.order = self._next_order()
        self.me.admitted, self.me.said_bye = True, False
        self.me.order = self._next_order()
        actions += [KeepAdmission(), Broadcast(self._event("call.joined"))]
        if self.welcomed:
            actions.append(self._admitted_message())
        return actions

    def on_joined(self, event: dict) -> list[Action]:
        """Another connection was admitted."""
        other = self.others.get(event.get("from"))
        if other is None or other.admitted:
            return []  # the doctor marked it already when it admitted
        other.admitted, other.said_bye = True, False
        other.order = self._next_order()
        if not self.welcomed:
            return []
        if self.is_doctor:
            return [self._doctor_state(other)]
        if self.me.admitted:
            return [Send(self._joined_message(other))]
        return []

    def on_remove(self, event: dict) -> list[Action]:
        """The doctor sent this connection back to the waiting room."""
        sender = self.others.get(event.get("from"))
        if sender is None or sender.role != DOCTOR or not self.me.admitted:
            return []
        self.me.admitted = False
        return [EndAdmission(), Broadcast(self._event("call.waiting")), Send({"type": "waiting"})]

    def on_waiting(self, event: dict) -> list[Action]:
        """Another connection went back to the waiting room (removed)."""
        other = self.others.get(event.get("from"))
        if other is None or not other.admitted:
            return []
        other.admitted = False
        if self.welcomed and self.me.admitted and not self.is_doctor:
            return [Send({"type": "participant-left", "id": other.id})]
        return []

    def on_bye(self, event: dict) -> list[Action]:
        other = self.others.get(event.get("from"))
        if other is None or other.said_bye:
            return []
        was_admitted, i_was_admitted = other.admitted, self.me.admitted
        other.admitted, other.said_bye = False, True
        actions: list[Action] = []
        if other.role == DOCTOR:
            # The doctor hung up: the call ends for everybody, who wait to be admitted again.
            for member in self.others.values():
                member.admitted = False
            if i_was_admitted:
                self.me.admitted = False
                actions.append(EndAdmission())
        if not self.welcomed:
            return actions
        if self.is_doctor or (i_was_admitted and was_admitted):
            actions.append(Send({"type": "participant-left", "id": other.id}))
        if self._peer_pair(other):
            actions.append(Send({"type": "peer-left"}))
        if self.is_doctor:
            actions.append(self._doctor_state(other))  # still connected: waiting again
        elif other.role == DOCTOR and i_was_admitted:
            actions.append(Send({"type": "waiting"}))
        return actions

    def on_relay(self, event: dict) -> list[Action]:
        """A relayed message for this client: only between admitted participants."""
        sender = self.others.get(event.get("from"))
        if sender is None or not sender.admitted or not self.me.admitted or self.closing:
            return []
        return [SendText(event["text"])]

    def on_reissued(self, version: int) -> list[Action]:
        """The codes were re-issued: a patient's or guest's join made with the old ones ends."""
        if self.is_doctor or version == self.codes_version:
            return []
        self.me.admitted = False  # nothing of this join may resume
        return [*self.leave(), Close(protocol.CLOSE_NO_SESSION)]
