"""The join session: who may open the call page and the call WebSocket.

It lives only in a separate signed cookie (`settings.JOIN_COOKIE_NAME`, default `rc_join`),
never in the server-side session store: the patient's typed name must not be stored on
the server (DESIGN "Data"), while admin logins keep the database session store.

The cookie holds the appointment id, the role, the display name, a random join id (which
lets a dropped connection of the same join resume an admission, while a new join must be
admitted again), for a guest the slot of its code (its seat), for patients and guests the
appointment's codes version it was made with (a re-issue ends it), and, for a doctor, the
user id the session is bound to. It is a browser-session cookie (no expiry: closing the
browser ends it, so the next user of a shared computer is not let in). It is signed
(not encrypted) with SECRET_KEY: the browser can read the name it typed itself, nobody
can forge or alter the cookie. It proves only that a valid code was entered; every
request and every WebSocket connect re-checks the appointment (`check_join`).

Reuse:
    issue_join_cookie(response, appointment=…, role=…, display_name=…, user_id=…)
    issue_doctor_join_cookie(response, appointment=…, user=…)
    read_join(request) or read_join(cookie_value) → JoinData | None
    check_join(join_data, user) → JoinCheck (appointment, close_code 4001/4003 or None)
    clear_join_cookie(response)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

from consultations import appointment_cache, permissions, services
from consultations.models import MAX_GUESTS, MAX_VALIDITY, Appointment, Membership
from consultations.services import GUEST, PATIENT
from redconnect import callcodes

SALT = "redconnect.join"
ROLES = (Membership.Role.DOCTOR.value, PATIENT, GUEST)
MAX_NAME_LENGTH = 80


@dataclass(frozen=True)
class JoinData:
    """What a join session says: appointment, role, display name (doctor: bound user)."""

    appointment_id: str
    role: str  # "doctor", "patient" or "guest"
    display_name: str
    user_id: int | None = None
    join_id: str = ""  # random per join; empty for cookies that carry none
    guest_slot: int | None = None  # the guest code's slot, for role "guest"
    codes_version: int = 1  # the appointment's codes version at the join (not for doctors)
    hide_ip: bool = False  # the patient asked for relay-only mode on the join page

    @property
    def is_doctor(self) -> bool:
        return self.role == Membership.Role.DOCTOR

    @property
    def seat(self) -> str:
        """What a connection of this join occupies in the call: one per code."""
        if self.role == GUEST:
            return f"guest-{self.guest_slot}"
        return self.role


def sign_join(data: JoinData) -> str:
    """The signed cookie value for a join session (timestamped, compressed)."""
    payload = {"a": data.appointment_id, "r": data.role, "n": data.display_name}
    if data.join_id:
        payload["j"] = data.join_id
    if data.user_id is not None:
        payload["u"] = data.user_id
    if data.guest_slot is not None:
        payload["g"] = data.guest_slot
    if not data.is_doctor:
        payload["v"] = data.codes_version
    if data.hide_ip:
        payload["h"] = 1
    return signing.dumps(payload, salt=SALT, compress=True)


def unsign_join(value: str | None) -> JoinData | None:
    """The join data of a cookie value, or None if it is missing, forged or malformed."""
    if not value or not isinstance(value, str) or len(value) > 4096:
        return None
    try:
        # Never older than an appointment's longest validity; the appointment re-check
        # at every use is what really ends a session.
        payload = signing.loads(value, salt=SALT, max_age=MAX_VALIDITY)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(payload, dict):
        return None
    appointment_id, role, name = payload.get("a"), payload.get("r"), payload.get("n")
    user_id, join_id = payload.get("u"), payload.get("j", "")
    if not isinstance(appointment_id, str) or role not in ROLES or not isinstance(name, str):
        return None
    if role == Membership.Role.DOCTOR and not isinstance(user_id, int):
        return None
    if not isinstance(join_id, str):
        return None
    slot, version = payload.get("g"), payload.get("v", 1)
    if role == GUEST:
        if not _small_int(slot) or slot >= MAX_GUESTS:
            return None
    else:
        slot = None
    if not _small_int(version):
        return None
    doctor_id = user_id if role == Membership.Role.DOCTOR else None
    return JoinData(
        appointment_id, role, name, doctor_id, join_id, slot, version, payload.get("h") == 1
    )


def _small_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_join(source: HttpRequest | str | None) -> JoinData | None:
    """Join data from a request's cookie or from a raw cookie value (e.g. a WebSocket scope)."""
    if isinstance(source, HttpRequest):
        source = source.COOKIES.get(settings.JOIN_COOKIE_NAME)
    return unsign_join(source)


def issue_join_cookie(
    response: HttpResponse,
    *,
    appointment: Appointment,
    role: str,
    display_name: str,
    user_id: int | None = None,
    guest_slot: int | None = None,
    hide_ip: bool = False,
) -> JoinData:
    """Set the join cookie on the response: a browser-session cookie (no max-age)."""
    data = JoinData(
        str(appointment.pk),
        role,
        display_name[:MAX_NAME_LENGTH],
        user_id,
        join_id=secrets.token_urlsafe(12),
        guest_slot=guest_slot if role == GUEST else None,
        codes_version=appointment.codes_version,
        hide_ip=hide_ip,
    )
    if role != Membership.Role.DOCTOR:
        appointment_cache.remember(appointment)  # the call page's WebSocket connect follows
    response.set_cookie(
        settings.JOIN_COOKIE_NAME,
        sign_join(data),
        path="/",
        secure=settings.PUBLIC_HTTPS,
        httponly=True,
        samesite="Lax",
    )
    return data


def issue_doctor_join_cookie(response: HttpResponse, *, appointment: Appointment, user) -> JoinData:
    """The doctor's join (doctor code or the board's one-click start), bound to the login."""
    return issue_join_cookie(
        response,
        appointment=appointment,
        role=Membership.Role.DOCTOR,
        display_name=services.display_name_of(user),
        user_id=user.pk,
    )


def clear_join_cookie(response: HttpResponse) -> None:
    response.delete_cookie(settings.JOIN_COOKIE_NAME, path="/", samesite="Lax")


@dataclass(frozen=True)
class JoinCheck:
    """The outcome of re-checking a join session; `close_code` as in the contract."""

    appointment: Appointment | appointment_cache.AppointmentState | None
    close_code: int | None  # None: allowed; 4001: no valid session; 4003: not allowed

    @property
    def ok(self) -> bool:
        return self.close_code is None


NO_SESSION = callcodes.CLOSE_NO_SESSION
NOT_ALLOWED = callcodes.CLOSE_NOT_ALLOWED


def check_join(join: JoinData | None, user) -> JoinCheck:
    """Re-check a join session (every request and every connect; needs the database).

    The appointment must still be valid; a doctor's session is bound to the user that
    joined, who must still be logged in and still be the appointment's doctor; a patient's
    or guest's join must have been made with the appointment's current codes (a re-issue
    ends it like a cancellation).
    """
    if join is None:
        return JoinCheck(None, NO_SESSION)
    appointment = services.valid_appointment(join.appointment_id)
    if appointment is None:
        return JoinCheck(None, NO_SESSION)
    if join.is_doctor:
        same_user = user is not None and user.is_authenticated and user.pk == join.user_id
        if not same_user or not permissions.may_conduct(user, appointment):
            return JoinCheck(appointment, NOT_ALLOWED)
    elif join.codes_version != appointment.codes_version:
        return JoinCheck(None, NO_SESSION)
    return JoinCheck(appointment, None)


def check_connect(join: JoinData | None, user) -> JoinCheck:
    """`check_join` for a WebSocket connect: a patient's or guest's appointment comes
    from the cache (`consultations.appointment_cache`, as safe as the database read);
    its `appointment` is then an `AppointmentState` (pk, practice_id, expires_at,
    codes_version). The doctor's connect is checked in the database, login and all."""
    if join is None or join.is_doctor:
        return check_join(join, user)
    state = appointment_cache.state_of(join.appointment_id)
    if state is None or not state.valid() or join.codes_version != state.codes_version:
        return JoinCheck(None, NO_SESSION)
    return JoinCheck(state, None)
