"""The `/ws/call/` message protocol: parsing, validation and the server's messages.

Pure functions without I/O, so that the consumer stays thin and every rule is testable
on its own. Contract: shared/CONTRACT.md "WebSocket /ws/call/". Checks apply in the
contract's order: size, JSON and shape, permission and state (in the consumer, which
knows the state), content.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

from redconnect import callcodes

MAX_FRAME_BYTES = 64 * 1024  # UTF-8 bytes of one text frame
FLOOD_LIMIT = 100  # frames per connection …
FLOOD_WINDOW = 10.0  # … within this many seconds, refused frames included

# The close codes (defined in redconnect.callcodes), under the names the consumer, the
# room and the tests use.
CLOSE_NO_SESSION = callcodes.CLOSE_NO_SESSION
CLOSE_NOT_ALLOWED = callcodes.CLOSE_NOT_ALLOWED
CLOSE_SUPERSEDED = callcodes.CLOSE_SUPERSEDED
CLOSE_RATE_LIMIT = callcodes.CLOSE_RATE_LIMIT
CLOSE_TRY_AGAIN = callcodes.CLOSE_TRY_AGAIN

CLIENT_TYPES = frozenset(callcodes.CLIENT_TYPES)
RELAYED_TYPES = frozenset(callcodes.RELAYED_TYPES)  # the only ones ever relayed
# RTCIceCandidateInit: the only fields relayed, with their allowed JSON types.
CANDIDATE_FIELDS: dict[str, tuple[type, ...]] = {
    "candidate": (str,),
    "sdpMid": (str, type(None)),
    "sdpMLineIndex": (int, type(None)),
    "usernameFragment": (str, type(None)),
}

# One `a=fingerprint:` line (RFC 8122): hash function and hex value on the same line.
# `[ \t]` rather than `\s`: `\s` would match the line break and let a value-less line
# borrow the next line as its value.
_FINGERPRINT_LINE = re.compile(r"a=fingerprint:", re.IGNORECASE)
_FINGERPRINT = re.compile(
    r"a=fingerprint:[ \t]*([A-Za-z0-9-]+)[ \t]+([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*)[ \t]*",
    re.IGNORECASE,
)
_CRYPTO = re.compile(r"a=crypto:", re.IGNORECASE)
_LINE_END = re.compile(r"[\r\n]")

ERROR_MESSAGES = {
    callcodes.BAD_MESSAGE: _("The message could not be understood."),
    callcodes.UNKNOWN_TYPE: _("This kind of message is not supported."),
    callcodes.TOO_LARGE: _("The message is too large."),
    callcodes.NOT_ADMITTED: _("The doctor has not admitted the patient yet."),
    callcodes.FORBIDDEN: _("This action is not allowed for your role."),
    callcodes.NOBODY_WAITING: _("Nobody is waiting to be admitted."),
    callcodes.NO_SUCH_PARTICIPANT: _("This participant is not in the call."),
    callcodes.INSECURE_SDP: _("The connection offer lacks the required encryption."),
}


class ProtocolError(Exception):
    """A refused frame; `code` is one of the contract's error codes."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Message:
    """A client message that passed the size and shape checks; `data` is what may be relayed.

    `to` is the addressed participant id of a relayed message (None: the default peer);
    `id` the participant an `admit` or `remove` is about (None for `admit`: the patient).
    """

    type: str
    data: dict[str, Any]
    to: str | None = None
    id: str | None = None


def check_size(text: str) -> None:
    # Every character is at least one UTF-8 byte and at most four: encode only if needed.
    if len(text) > MAX_FRAME_BYTES or (
        len(text) * 4 > MAX_FRAME_BYTES and len(text.encode("utf-8")) > MAX_FRAME_BYTES
    ):
        raise ProtocolError(callcodes.TOO_LARGE)


def parse(text: str) -> Message:
    """Size, JSON and shape checks of one text frame (contract order)."""
    check_size(text)
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(callcodes.BAD_MESSAGE) from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ProtocolError(callcodes.BAD_MESSAGE)
    kind = frame["type"]
    if kind not in CLIENT_TYPES:
        raise ProtocolError(callcodes.UNKNOWN_TYPE)
    if kind in RELAYED_TYPES:
        to = _optional_id(frame, "to")
        if kind == "candidate":
            return Message(kind, {"type": kind, "candidate": _candidate_of(frame)}, to=to)
        return Message(kind, {"type": kind, "sdp": _sdp_of(frame)}, to=to)
    if kind == "remove":
        if "id" not in frame:
            raise ProtocolError(callcodes.BAD_MESSAGE)
        return Message(kind, {"type": kind}, id=_optional_id(frame, "id"))
    if kind == "admit":
        return Message(kind, {"type": kind}, id=_optional_id(frame, "id"))
    return Message(kind, {"type": kind})


def _optional_id(frame: dict, field: str) -> str | None:
    """A participant id field: absent, or a string (anything else is a bad message)."""
    if field not in frame:
        return None
    value = frame[field]
    if not isinstance(value, str) or len(value) > 64:
        raise ProtocolError(callcodes.BAD_MESSAGE)
    return value


def _sdp_of(frame: dict) -> str:
    sdp = frame.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise ProtocolError(callcodes.BAD_MESSAGE)
    return sdp


def _candidate_of(frame: dict) -> dict | None:
    """The candidate with only the RTCIceCandidateInit fields; None ends the candidates."""
    if "candidate" not in frame:
        raise ProtocolError(callcodes.BAD_MESSAGE)
    candidate = frame["candidate"]
    if candidate is None:
        return None
    if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
        raise ProtocolError(callcodes.BAD_MESSAGE)
    relayed = {}
    for field, types in CANDIDATE_FIELDS.items():
        if field in candidate:
            value = candidate[field]
            # bool is an int in Python, but not an sdpMLineIndex.
            if not isinstance(value, types) or isinstance(value, bool):
                raise ProtocolError(callcodes.BAD_MESSAGE)
            relayed[field] = value
    return relayed


def check_content(message: Message) -> None:
    """DTLS-SRTP only (KBV § 5 Nr. 6): a DTLS fingerprint, and no SDES key in the SDP."""
    if message.type in ("offer", "answer"):
        sdp = message.data["sdp"]
        if _CRYPTO.search(sdp) or not _fingerprints_consistent(sdp):
            raise ProtocolError(callcodes.INSECURE_SDP)


def _fingerprints_consistent(sdp: str) -> bool:
    """At least one well-formed fingerprint, every fingerprint line well-formed, and one
    value per hash function: two different sha-256 values in one SDP would let a
    tampering relay show the genuine one to a naive reader while DTLS uses the other.
    Lines for different hash functions (aiortc sends sha-256, sha-384, sha-512) are fine.
    """
    values: dict[str, str] = {}
    for line in _fingerprint_lines(sdp):
        match = _FINGERPRINT.fullmatch(line)
        if match is None:
            return False
        function, value = match.group(1).lower(), match.group(2).upper()
        if values.setdefault(function, value) != value:
            return False
    return bool(values)


def _fingerprint_lines(sdp: str):
    """The lines (split at CRLF, LF or CR) that start with `a=fingerprint:`.

    Why not split the SDP into lines: an offer has dozens of lines and one to three
    fingerprints; finding the fingerprints and cutting out their lines is a third of the
    work (the checks were most of an offer's relay cost).
    """
    for hit in _FINGERPRINT_LINE.finditer(sdp):
        start = hit.start()
        if start and sdp[start - 1] not in "\r\n":
            continue  # inside a line, not at its start
        end = _LINE_END.search(sdp, start)
        yield sdp[start : end.start() if end else len(sdp)]


def encode(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def error(code: str) -> str:
    return encode({"type": "error", "code": code, "message": str(ERROR_MESSAGES[code])})
