"""The `/ws/call/` protocol's close codes, error codes and message types: their one home.

Contract: shared/CONTRACT.md "WebSocket /ws/call/". Used by consultations (join checks
answer with a close code), signaling (protocol, room, consumer), compliance (its checks
expect these codes) and the call page's JavaScript, which gets `table()` through
`json_script` ("rc-codes") instead of typing the numbers again. It lives in the project
package because consultations must not import signaling (signaling depends on it).
"""

from __future__ import annotations

# Close codes. 4001, 4003 and 4009 are final for the client (reconnecting cannot help).
CLOSE_NO_SESSION = 4001  # no valid join session: expired, cancelled, codes re-issued
CLOSE_NOT_ALLOWED = 4003  # a session, but this user may not take part
CLOSE_SUPERSEDED = 4009  # a newer connection of the same seat replaced this one
CLOSE_RATE_LIMIT = 4029  # too many frames in the flood window
CLOSE_TRY_AGAIN = 4503  # the channel layer (Redis) is down: reconnect soon

CLOSE_CODES = {
    "NO_SESSION": CLOSE_NO_SESSION,
    "NOT_ALLOWED": CLOSE_NOT_ALLOWED,
    "SUPERSEDED": CLOSE_SUPERSEDED,
    "RATE_LIMIT": CLOSE_RATE_LIMIT,
    "TRY_AGAIN": CLOSE_TRY_AGAIN,
}
FINAL_CLOSE_CODES = (CLOSE_NO_SESSION, CLOSE_NOT_ALLOWED, CLOSE_SUPERSEDED)

# Error codes of a refused frame ({"type": "error", "code": …}); their texts are in
# signaling.protocol.ERROR_MESSAGES.
BAD_MESSAGE = "bad-message"
UNKNOWN_TYPE = "unknown-type"
TOO_LARGE = "too-large"
NOT_ADMITTED = "not-admitted"
FORBIDDEN = "forbidden"
NOBODY_WAITING = "nobody-waiting"
NO_SUCH_PARTICIPANT = "no-such-participant"
INSECURE_SDP = "insecure-sdp"

ERROR_CODES = (
    BAD_MESSAGE,
    UNKNOWN_TYPE,
    TOO_LARGE,
    NOT_ADMITTED,
    FORBIDDEN,
    NOBODY_WAITING,
    NO_SUCH_PARTICIPANT,
    INSECURE_SDP,
)

# Message types a client may send; the relayed ones are the only ones ever forwarded.
CLIENT_TYPES = ("admit", "remove", "offer", "answer", "candidate", "bye")
RELAYED_TYPES = ("offer", "answer", "candidate")
# Message types the server sends (relayed client types besides).
SERVER_TYPES = (
    "welcome",
    "waiting",
    "peer-waiting",
    "admitted",
    "participant-joined",
    "participant-left",
    "peer-left",
    "notice",  # a practice's message to the waiting room (the board)
    "error",
)


def _names(values) -> dict[str, str]:
    """{"PEER_LEFT": "peer-left", …}: the JavaScript looks values up by these names."""
    return {value.upper().replace("-", "_"): value for value in values}


def table() -> dict:
    """Everything above as one JSON-ready value, handed to the call page's JavaScript."""
    return {
        "close": dict(CLOSE_CODES),
        "final": list(FINAL_CLOSE_CODES),
        "error": _names(ERROR_CODES),
        "type": _names(dict.fromkeys(CLIENT_TYPES + SERVER_TYPES)),
    }
