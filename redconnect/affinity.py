"""The call page's routing key: every participant of one appointment on one process.

nginx routes `/ws/call/` by `hash $arg_r consistent` (docs/deployment.md, section 4), so
all connections that carry the same `r=` land on the same `manage.py serve` process,
where signaling.layers delivers their messages in memory without touching Redis. A call
whose participants still land on different processes (a process restart, an nginx
reload that changes the ring, a missing key) works through Redis; the key only makes
the cheap path the common one. Why: docs/architecture.md, "Channel layer".

It lives in redconnect (not signaling) because the call page (consultations) renders it
and consultations does not depend on signaling (tests/test_layering.py).

The key is a keyed hash of the appointment id (SECRET_KEY-derived, own salt): the same
for doctor, patient and guests, stable across reconnects, and it reveals nothing about
the appointment. Eight hex digits (32 bits) are plenty to spread appointments over a
few processes and too few to serve as an identifier elsewhere. The server hands it to
the page and otherwise ignores it: the consumer never reads the query string, and
neither the request log nor nginx's log format records query strings.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.utils.crypto import salted_hmac

QUERY_PARAMETER = "r"  # nginx: `hash $arg_r consistent;`
KEY_LENGTH = 8  # hex digits


def routing_key(appointment_id) -> str:
    """The same short, non-reversible key for every participant of the appointment."""
    digest = salted_hmac("redconnect.signaling.affinity", str(appointment_id), algorithm="sha256")
    return digest.hexdigest()[:KEY_LENGTH]


def socket_query(appointment_id) -> str:
    """The query string (without `?`) the call page appends to the `/ws/call/` URL."""
    return urlencode({QUERY_PARAMETER: routing_key(appointment_id)})
