"""Create N appointments of the demo doctor (and N logged-in doctor sessions) in one process.

Run by the benchmarks with the deployment's environment: `python bench/_provision.py N`.
Prints JSON: `[{"id", "doctor_code", "patient_code", "ws_query", "group_key",
"doctor_cookies"}]`.

Doctor sessions are created here instead of through `/admin/login/`: a login costs a
PBKDF2 hash (roughly 0.3–0.5 s of server CPU at Django's default iterations), which
would measure the password hasher, not the join or the signaling.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "redconnect.settings")

import django

django.setup()

from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import (  # noqa: E402
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
)
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.db import transaction  # noqa: E402

from consultations.services import create_appointment  # noqa: E402
from redconnect import affinity  # noqa: E402
from signaling import presence  # noqa: E402


def doctor_session(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def group_key(appointment_id) -> str | None:
    """Where the call's channel-layer group lives in Redis (None without Redis): the
    nginx target reads from it on which process each participant landed."""
    layer = get_channel_layer()
    if not hasattr(layer, "_group_key"):
        return None
    return layer._group_key(presence.group_name(appointment_id)).decode()


def main(count: int, sessions: bool) -> list[dict]:
    doctor = get_user_model().objects.get(username="demo-arzt")
    calls = []
    with transaction.atomic():
        for _ in range(count):
            issued = create_appointment(doctor=doctor)
            calls.append(
                {
                    "id": str(issued.appointment.pk),
                    "doctor_code": issued.doctor_code,
                    "patient_code": issued.patient_code,
                    # What the call page appends to /ws/call/ (nginx routes by it).
                    "ws_query": affinity.socket_query(issued.appointment.pk),
                    "group_key": group_key(issued.appointment.pk),
                    "doctor_cookies": (
                        {settings.SESSION_COOKIE_NAME: doctor_session(doctor)} if sessions else {}
                    ),
                }
            )
    return calls


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), "--no-sessions" not in sys.argv)))
