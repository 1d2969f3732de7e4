"""Practice API logic: key authentication, request parsing, appointment access.

The views in `consultations/api.py` only dispatch on the HTTP method and turn an
`ApiError` into a JSON response; every rule of the contract lives here.
Messages are for the practice system's developers and are plain English (not
translated); messages from `services` are rendered in English by the views too.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils import timezone

from consultations import services
from consultations.models import MAX_GUESTS, ApiKey, Appointment
from redconnect import throttle

MAX_BODY_BYTES = 4096  # a create request is well under 200 bytes
# Failed key attempts per client (keyed hash of its address) before it is locked out.
KEY_FAILURE_LIMIT = 20
KEY_FAILURE_WINDOW = 600  # seconds
KEY_FAILURE_SCOPE = "api-key"


@dataclass
class ApiError(Exception):
    status: int
    message: str

    def __str__(self) -> str:
        return self.message


# --- Transport --------------------------------------------------------------------------


def require_https(request: HttpRequest) -> None:
    """On an https deployment the API refuses plain http instead of redirecting.

    A redirect would make a misconfigured client silently resend its key (and a POST
    would turn into a GET); a hard error makes the mistake visible at once.
    """
    if settings.PUBLIC_URL.startswith("https://") and not request.is_secure():
        raise ApiError(403, "The API is only available over HTTPS.")


def read_body(request: HttpRequest) -> bytes:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise ApiError(413, "The request body is too large.")
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "The request body is too large.")
    return body


# --- Authentication ---------------------------------------------------------------------


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(request: HttpRequest) -> ApiKey:
    """The API key of the request, or ApiError 401/429.

    A client that keeps presenting wrong keys is locked out for a while (429 for every
    request, valid keys included), so keys cannot be guessed at speed. Clients are told
    apart by a keyed hash of their address; the address itself is never stored.
    """
    client = throttle.client_key(request)
    if throttle.is_blocked(KEY_FAILURE_SCOPE, client, KEY_FAILURE_LIMIT, KEY_FAILURE_WINDOW):
        raise ApiError(429, "Too many failed attempts. Try again later.")
    token = bearer_token(request)
    api_key = services.authenticate_api_key(token) if token else None
    if api_key is None:
        throttle.record_failure(KEY_FAILURE_SCOPE, client, KEY_FAILURE_WINDOW)
        if token is None:
            raise ApiError(401, "Authorization: Bearer API key required.")
        raise ApiError(401, "Unknown API key.")
    return api_key


# --- Create -----------------------------------------------------------------------------


def parse_time(value: object) -> datetime:
    """ISO 8601 → aware datetime; a time without offset is read in Europe/Berlin.

    Same rule as `create_appointment --at`, so that a practice system sending local
    wall-clock times gets what its users see.
    """
    if not isinstance(value, str):
        raise ApiError(400, "scheduled_at must be an ISO 8601 time string.")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ApiError(400, "scheduled_at is not a valid ISO 8601 time.") from None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


def parse_create_request(body: bytes) -> tuple[str, datetime, int]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # decode errors, bad JSON, absurd nesting
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    missing = [field for field in ("doctor", "scheduled_at") if data.get(field) in (None, "")]
    if missing:
        raise ApiError(400, f"Missing field: {', '.join(missing)}.")
    if not isinstance(data["doctor"], str):
        raise ApiError(400, "doctor must be a username string.")
    return data["doctor"], parse_time(data["scheduled_at"]), parse_guests(data)


def parse_guests(data: dict) -> int:
    """The optional number of guest codes: an integer 0–7 (JSON true is no number)."""
    guests = data.get("guests", 0)
    if isinstance(guests, bool) or not isinstance(guests, int) or not 0 <= guests <= MAX_GUESTS:
        raise ApiError(400, f"guests must be an integer from 0 to {MAX_GUESTS}.")
    return guests


def create_appointment(api_key: ApiKey, body: bytes) -> dict:
    """Issue an appointment for a doctor of the key's practice; the codes are in the result."""
    username, scheduled_at, guests = parse_create_request(body)
    doctor = get_user_model().objects.filter(username=username).first()
    if doctor is None or services.doctor_membership(doctor, api_key.practice) is None:
        # The same answer for unknown users and other practices' doctors: the API
        # reveals nothing about accounts outside the key's practice.
        raise ApiError(400, f"{username} is not an active doctor of this practice.")
    try:
        issued = services.create_appointment(
            doctor=doctor, scheduled_at=scheduled_at, practice=api_key.practice, guests=guests
        )
    except services.AppointmentError as exc:
        raise ApiError(400, str(exc)) from None
    return services.issued_as_json(issued)


# --- Read and cancel --------------------------------------------------------------------


def appointment_of(api_key: ApiKey, appointment_id: str) -> Appointment:
    """The key's practice's appointment; 404 for malformed, unknown and foreign ids alike."""
    try:
        pk = uuid.UUID(appointment_id)
    except (ValueError, AttributeError):
        raise ApiError(404, "No such appointment.") from None
    appointment = Appointment.objects.filter(pk=pk, practice=api_key.practice).first()
    if appointment is None:
        raise ApiError(404, "No such appointment.")
    return appointment


def appointment_as_json(appointment: Appointment) -> dict:
    """State without codes: the clear codes exist only in the create response."""
    return {
        "id": str(appointment.pk),
        "scheduled_at": appointment.scheduled_at.isoformat(),
        "expires_at": appointment.expires_at.isoformat(),
        "status": appointment.status().value,
    }


def cancel(api_key: ApiKey, appointment_id: str) -> None:
    """Cancel (idempotent): codes stop working and live connections are closed (4001)."""
    services.cancel_appointment(appointment_of(api_key, appointment_id))


# --- Guests and re-issue ------------------------------------------------------------------


def add_guest(api_key: ApiKey, appointment_id: str) -> dict:
    """One more guest code (400 once the appointment has seven, or is no longer valid)."""
    appointment = appointment_of(api_key, appointment_id)
    try:
        return {"guest_code": services.add_guest_code(appointment)}
    except services.AppointmentError as exc:
        raise ApiError(400, str(exc)) from None


def reissue(api_key: ApiKey, appointment_id: str) -> dict:
    """New codes for every seat; joins made with the old codes end at once (4001)."""
    appointment = appointment_of(api_key, appointment_id)
    if not appointment.is_valid():
        raise ApiError(400, "Expired or cancelled appointments get no new codes.")
    issued = services.reissue_codes(appointment)
    return {
        "doctor_code": issued.doctor_code,
        "patient_code": issued.patient_code,
        "guest_codes": list(issued.guest_codes),
    }
