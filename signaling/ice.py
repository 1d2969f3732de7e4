"""ICE servers for the `welcome` message, with time-limited TURN credentials.

TURN entries get coturn REST API credentials (`use-auth-secret`): the username is
`<expiry unix time>:<id>`, the credential base64(HMAC-SHA1(TURN_SECRET, username)).
coturn checks both without any shared state, and a leaked credential stops working at
the expiry (at most one hour ahead). The id is derived from the appointment with a keyed
hash (it reveals nothing about it), so that coturn's `user-quota` counts per appointment
and reconnecting cannot exhaust the quota. Only admitted participants and the doctor get
TURN entries (`turn=False` leaves them out: STUN only). The configured `country` is for
the compliance check, not for the browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from django.conf import settings
from django.utils.crypto import salted_hmac

TURN_SCHEMES = ("turn:", "turns:")
MAX_TTL = 3600  # coturn REST credentials live at most one hour here


def turn_user_id(appointment_id) -> str:
    """A stable, non-reversible id per appointment (keyed with SECRET_KEY)."""
    return salted_hmac("redconnect.turn-user", str(appointment_id), algorithm="sha256").hexdigest()[
        :16
    ]


def turn_credentials(
    secret: str, ttl: int, now: float | None = None, user_id: str | None = None
) -> dict[str, str]:
    expiry = int(now if now is not None else time.time()) + min(ttl, MAX_TTL)
    username = f"{expiry}:{user_id or secrets.token_hex(8)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {"username": username, "credential": base64.b64encode(digest).decode("ascii")}


def ice_servers(now: float | None = None, *, appointment_id=None, turn: bool = True) -> list[dict]:
    """The configured servers as RTCIceServer dicts, with fresh TURN credentials each call.

    Without TURN_SECRET (or with `turn=False`) the TURN URLs are left out: a browser
    refuses a TURN server without credentials, which would break the whole connection.
    """
    ttl = min(settings.TURN_CREDENTIAL_TTL, MAX_TTL)
    user_id = turn_user_id(appointment_id) if appointment_id is not None else None
    servers = []
    for server in settings.ICE_SERVERS:
        urls = list(server["urls"])
        has_turn = any(url.startswith(TURN_SCHEMES) for url in urls)
        if has_turn and (not settings.TURN_SECRET or not turn):
            urls = [url for url in urls if not url.startswith(TURN_SCHEMES)]
            has_turn = False
        if not urls:
            continue
        entry: dict = {"urls": urls}
        if has_turn:
            entry.update(turn_credentials(settings.TURN_SECRET, ttl, now, user_id))
        servers.append(entry)
    return servers
