"""ICE servers for the `welcome` message, with time-limited TURN credentials.

TURN entries get coturn REST API credentials (`use-auth-secret`): the username is
`<expiry unix time>:<random>`, the credential base64(HMAC-SHA1(TURN_SECRET, username)).
coturn checks both without any shared state, and a leaked credential stops working at
the expiry. The configured `country` is for the compliance check, not for the browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from django.conf import settings

TURN_SCHEMES = ("turn:", "turns:")
MAX_TTL = 3600  # coturn REST credentials live at most one hour here


def turn_credentials(secret: str, ttl: int, now: float | None = None) -> dict[str, str]:
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{secrets.token_hex(8)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {"username": username, "credential": base64.b64encode(digest).decode("ascii")}


def ice_servers(now: float | None = None) -> list[dict]:
    """The configured servers as RTCIceServer dicts, with fresh TURN credentials each call.

    Without TURN_SECRET the TURN URLs are left out: a browser refuses a TURN server
    without credentials, which would break the whole peer connection.
    """
    ttl = min(settings.TURN_CREDENTIAL_TTL, MAX_TTL)
    servers = []
    for server in settings.ICE_SERVERS:
        urls = list(server["urls"])
        has_turn = any(url.startswith(TURN_SCHEMES) for url in urls)
        if has_turn and not settings.TURN_SECRET:
            urls = [url for url in urls if not url.startswith(TURN_SCHEMES)]
            has_turn = False
        if not urls:
            continue
        entry: dict = {"urls": urls}
        if has_turn:
            entry.update(turn_credentials(settings.TURN_SECRET, ttl, now))
        servers.append(entry)
    return servers
