"""Access codes and appointments: issue, verify, expire, cancel, re-issue, purge.

Every edge (admin, API, join view, consumer, commands) calls these functions; none of
them handles codes or digests itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from consultations import permissions, signals
from consultations.models import (
    MAX_GUESTS,
    MAX_VALIDITY,
    ApiKey,
    Appointment,
    GuestCode,
    Membership,
    Practice,
)

# Crockford base32: no I, L, O, U — nothing a patient can misread on a slip.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12  # 12 × 5 bits = 60 bits
CODE_GROUP = 4
VALID_AFTER_SCHEDULED = timedelta(hours=24)
# The latest bookable appointment's codes must still work 24 h after it without passing
# the 30-day cap (MAX_VALIDITY): 29 days ahead at most. The one home of this limit.
MAX_LEAD_TIME = MAX_VALIDITY - VALID_AFTER_SCHEDULED
API_KEY_PREFIX_LENGTH = 8
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = str.maketrans("", "", " -\t\n\r\u00a0\u2010\u2011\u2012\u2013")


class AppointmentError(ValueError):
    """A request for an appointment that the rules refuse; the message is for people."""


def check_lead_time(scheduled_at: datetime, now: datetime | None = None) -> None:
    """AppointmentError (with the one message for it) if booked too far ahead."""
    if scheduled_at - (now or timezone.now()) > MAX_LEAD_TIME:
        raise AppointmentError(
            _("Appointments can be booked at most %(days)d days in advance.")
            % {"days": MAX_LEAD_TIME.days}
        )


@dataclass(frozen=True)
class IssuedAppointment:
    """An appointment together with its clear codes — which exist only in this object."""

    appointment: Appointment
    doctor_code: str
    patient_code: str
    guest_codes: tuple[str, ...] = ()


# --- Codes ----------------------------------------------------------------------------


def generate_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    """`7KQ2M9XD4TNF` → `7KQ2-M9XD-4TNF`."""
    return "-".join(code[i : i + CODE_GROUP] for i in range(0, len(code), CODE_GROUP))


def normalise_code(text: str) -> str | None:
    """What a person typed → the canonical 12 characters, or None if it cannot be a code."""
    if not isinstance(text, str):
        return None
    code = text.upper().translate(_SEPARATORS).translate(_CONFUSABLE)
    if len(code) != CODE_LENGTH or any(char not in ALPHABET for char in code):
        return None
    return code


def keyed_digest(value: str) -> str:
    """HMAC-SHA256 with the server's code key: a stolen database reveals no code or key."""
    key = settings.CODE_HMAC_KEY.encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def code_digest(code: str) -> str:
    normalised = normalise_code(code)
    if normalised is None:
        raise ValueError("not an access code")
    return keyed_digest(normalised)


# --- Validity -------------------------------------------------------------------------


def compute_expiry(scheduled_at: datetime, created_at: datetime) -> datetime:
    """24 h after the appointment, but never more than 30 days after the codes were issued."""
    return min(scheduled_at + VALID_AFTER_SCHEDULED, created_at + MAX_VALIDITY)


# Who may do what lives in consultations.permissions; these names stay for callers.
practices_of = permissions.practices_of
doctor_membership = permissions.doctor_membership


def appointment_practice(doctor, chosen: Practice | None, organised) -> Practice:
    """The practice an organiser books `doctor` into: the chosen one, which must be one
    of the organiser's practices where the doctor works; without a choice the only such
    practice. Ambiguous or impossible cases are refused (never "the first one")."""
    candidates = list(
        organised.filter(
            memberships__user=doctor,
            memberships__role=Membership.Role.DOCTOR,
            memberships__user__is_active=True,
        ).distinct()
    )
    if chosen is not None:
        if chosen not in candidates:
            raise AppointmentError(
                _("%(user)s is not an active doctor of the chosen practice.") % {"user": doctor}
            )
        return chosen
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise AppointmentError(
            _("%(user)s is not an active doctor of this practice.") % {"user": doctor}
        )
    raise AppointmentError(
        _("%(user)s works in several of your practices: please choose the practice.")
        % {"user": doctor}
    )


def doctors_of(practices):
    """Users that may be chosen as an appointment's doctor in these practices."""
    return (
        get_user_model()
        .objects.filter(
            is_active=True,
            memberships__role=Membership.Role.DOCTOR,
            memberships__practice__in=practices,
        )
        .distinct()
        .order_by("last_name", "username")
    )


# --- Issue, re-issue, cancel ------------------------------------------------------------


def _new_code_pair() -> tuple[str, str]:
    doctor_code, patient_code = generate_code(), generate_code()
    while patient_code == doctor_code:
        patient_code = generate_code()
    return doctor_code, patient_code


def create_appointment(
    *,
    doctor,
    scheduled_at: datetime | None = None,
    practice: Practice | None = None,
    now: datetime | None = None,
    guests: int = 0,
) -> IssuedAppointment:
    """Create an appointment with fresh codes (doctor, patient, `guests` guests)."""
    check_guest_count(guests)
    now = now or timezone.now()
    scheduled_at = scheduled_at or now
    if timezone.is_naive(scheduled_at):
        raise AppointmentError(_("The appointment time needs a time zone."))
    membership = doctor_membership(doctor, practice)
    if membership is None:
        raise AppointmentError(
            _("%(user)s is not an active doctor of this practice.") % {"user": doctor}
        )
    check_lead_time(scheduled_at, now)
    for _attempt in range(5):  # a digest collision at 60 bits is practically impossible
        doctor_code, patient_code = _new_code_pair()
        try:
            with transaction.atomic():
                appointment = Appointment.objects.create(
                    practice=membership.practice,
                    doctor=doctor,
                    scheduled_at=scheduled_at,
                    created_at=now,
                    expires_at=compute_expiry(scheduled_at, now),
                    doctor_code_digest=keyed_digest(doctor_code),
                    patient_code_digest=keyed_digest(patient_code),
                )
                guest_codes = _issue_guest_codes(appointment, range(guests))
        except IntegrityError:
            continue
        return IssuedAppointment(
            appointment, format_code(doctor_code), format_code(patient_code), guest_codes
        )
    raise RuntimeError("could not issue unique access codes")


def check_guest_count(guests) -> None:
    if isinstance(guests, bool) or not isinstance(guests, int) or not 0 <= guests <= MAX_GUESTS:
        raise AppointmentError(
            _("The number of guests must be between 0 and %(max)d.") % {"max": MAX_GUESTS}
        )


def _issue_guest_codes(appointment: Appointment, slots) -> tuple[str, ...]:
    """Fresh codes for the guest slots (inside the caller's transaction); clear codes out."""
    taken = {appointment.doctor_code_digest, appointment.patient_code_digest}
    codes = []
    for slot in slots:
        code = generate_code()
        while keyed_digest(code) in taken:
            code = generate_code()
        taken.add(keyed_digest(code))
        GuestCode.objects.update_or_create(
            appointment=appointment, slot=slot, defaults={"digest": keyed_digest(code)}
        )
        codes.append(format_code(code))
    return tuple(codes)


def add_guest_code(appointment: Appointment) -> str:
    """One more guest code for a valid appointment (at most MAX_GUESTS); the clear code."""
    if not appointment.is_valid():
        raise AppointmentError(_("Expired or cancelled appointments get no new codes."))
    for _attempt in range(5):
        try:
            with transaction.atomic():
                locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
                used = set(locked.guest_codes.values_list("slot", flat=True))
                free = [slot for slot in range(MAX_GUESTS) if slot not in used]
                if not free:
                    raise AppointmentError(
                        _("An appointment has at most %(max)d guest codes.") % {"max": MAX_GUESTS}
                    )
                return _issue_guest_codes(locked, free[:1])[0]
        except IntegrityError:
            continue
    raise RuntimeError("could not issue a unique guest code")


def reissue_codes(appointment: Appointment) -> IssuedAppointment:
    """New codes for the same appointment; the old ones stop working at once.

    The validity window stays the one of the first issue, so re-issuing can never extend
    access beyond 30 days.
    """
    if appointment.cancelled_at is not None:
        raise AppointmentError(_("A cancelled appointment cannot get new codes."))
    doctor_code, patient_code = _new_code_pair()
    with transaction.atomic():
        appointment.doctor_code_digest = keyed_digest(doctor_code)
        appointment.patient_code_digest = keyed_digest(patient_code)
        appointment.codes_version = F("codes_version") + 1
        appointment.save(
            update_fields=["doctor_code_digest", "patient_code_digest", "codes_version"]
        )
        appointment.refresh_from_db(fields=["codes_version"])
        slots = list(appointment.guest_codes.values_list("slot", flat=True))
        guest_codes = _issue_guest_codes(appointment, slots)
    # Joins made with the old codes end at once (their live sockets close with 4001).
    _end_old_joins(appointment)
    return IssuedAppointment(
        appointment, format_code(doctor_code), format_code(patient_code), guest_codes
    )


def cancel_appointment(appointment: Appointment, now: datetime | None = None) -> bool:
    """Cancel; the codes stop working at once. Returns False if it was already cancelled."""
    if appointment.cancelled_at is not None:
        return False
    appointment.cancelled_at = now or timezone.now()
    appointment.save(update_fields=["cancelled_at"])
    _close_live_connections(appointment)
    return True


def _end_old_joins(appointment: Appointment) -> None:
    """Announce the new codes; signaling ends the joins made with older ones."""
    signals.codes_reissued.send(
        sender=Appointment, appointment_id=appointment.pk, codes_version=appointment.codes_version
    )


def _close_live_connections(appointment: Appointment) -> None:
    """Announce the cancellation; signaling closes the appointment's live connections."""
    signals.appointment_closed.send(sender=Appointment, appointment_id=appointment.pk)


# --- Verify ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeMatch:
    appointment: Appointment
    role: str  # Membership.Role.DOCTOR, "patient" or "guest"
    guest_slot: int | None = None  # the guest code's slot (its seat) for role "guest"


PATIENT = "patient"
GUEST = "guest"


def find_by_code(code: str, now: datetime | None = None) -> CodeMatch | None:
    """The valid appointment a typed code opens, with the role it opens it for.

    Invalid, unknown, expired and cancelled codes all give None: callers must not tell
    a person which of these it was.
    """
    normalised = normalise_code(code)
    if normalised is None:
        return None
    digest = keyed_digest(normalised)
    appointment = (
        Appointment.objects.valid(now)
        .filter(Q(doctor_code_digest=digest) | Q(patient_code_digest=digest))
        .select_related("doctor", "practice")
        .first()
    )
    if appointment is None:
        guest = (
            GuestCode.objects.filter(digest=digest, appointment__in=Appointment.objects.valid(now))
            .select_related("appointment__doctor", "appointment__practice")
            .first()
        )
        if guest is None:
            return None
        return CodeMatch(guest.appointment, GUEST, guest.slot)
    # Constant-time comparison for the role decision; the lookup itself is by digest.
    is_doctor = hmac.compare_digest(appointment.doctor_code_digest, digest)
    return CodeMatch(appointment, Membership.Role.DOCTOR if is_doctor else PATIENT)


def valid_appointment(appointment_id, now: datetime | None = None) -> Appointment | None:
    """Re-check a join session's appointment: None once cancelled or expired."""
    try:
        pk = uuid.UUID(str(appointment_id))
    except ValueError:
        return None
    return Appointment.objects.valid(now).select_related("doctor").filter(pk=pk).first()


# --- Retention ------------------------------------------------------------------------


def purge_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.METADATA_RETENTION_DAYS)


def purgeable(now: datetime | None = None):
    """Expired or cancelled appointments older than the retention period."""
    cutoff = purge_cutoff(now)
    return Appointment.objects.filter(Q(expires_at__lte=cutoff) | Q(cancelled_at__lte=cutoff))


def admin_log_entries_of(appointments):
    """The admin's history rows (time, user, the appointment's time and doctor in
    `object_repr`) about these appointments."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(Appointment)
    ids = [str(pk) for pk in appointments.values_list("pk", flat=True)]
    return LogEntry.objects.filter(content_type=content_type, object_id__in=ids)


def orphaned_admin_log_entries():
    """History rows about appointments that no longer exist (purged, or deleted before
    the purge looked at the history): a trace without its record."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(Appointment)
    existing = [str(pk) for pk in Appointment.objects.values_list("pk", flat=True)]
    return LogEntry.objects.filter(content_type=content_type).exclude(object_id__in=existing)


def expired_sessions(now: datetime | None = None):
    """Login sessions past their expiry (Django never deletes them by itself)."""
    from django.contrib.sessions.models import Session

    return Session.objects.filter(expire_date__lt=now or timezone.now())


def purge_expired(now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete what is past retention: appointments with everything that refers to them
    (rows with a foreign key go with them; the admin's history refers by id, so it is
    deleted explicitly), and expired login sessions (KBV § 5 Nr. 9)."""
    appointments = purgeable(now)
    history = admin_log_entries_of(appointments)
    sessions = expired_sessions(now)
    counts = {
        "appointments": appointments.count(),
        "admin_log_entries": history.count(),
        "sessions": sessions.count(),
    }
    if dry_run:
        counts["admin_log_entries"] += orphaned_admin_log_entries().count()
        return counts
    with transaction.atomic():
        history.delete()
        appointments.delete()
        counts["admin_log_entries"] += orphaned_admin_log_entries().delete()[0]
        sessions.delete()
    return counts


# --- Practice API keys ----------------------------------------------------------------


def create_api_key(practice: Practice) -> tuple[ApiKey, str]:
    """A new key; the clear key is returned once and never stored."""
    key = "rc_" + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        practice=practice, digest=keyed_digest(key), prefix=key[:API_KEY_PREFIX_LENGTH]
    )
    return api_key, key


def authenticate_api_key(key: str) -> ApiKey | None:
    if not isinstance(key, str) or not key.startswith("rc_") or len(key) > 200:
        return None
    return ApiKey.objects.select_related("practice").filter(digest=keyed_digest(key)).first()


# --- Presentation helpers shared by admin, API and commands ---------------------------


def join_url() -> str:
    return settings.PUBLIC_URL + "/"


def issued_as_json(issued: IssuedAppointment) -> dict:
    appointment = issued.appointment
    return {
        "id": str(appointment.pk),
        "doctor_code": issued.doctor_code,
        "patient_code": issued.patient_code,
        "guest_codes": list(issued.guest_codes),
        "join_url": join_url(),
        "scheduled_at": appointment.scheduled_at.isoformat(),
        "expires_at": appointment.expires_at.isoformat(),
    }


# --- Joining a call -------------------------------------------------------------------


# Only the appointment's own doctor (KBV § 5 Nr. 1, 2): consultations.permissions.
doctor_may_join = permissions.may_conduct


def display_name_of(user) -> str:
    """The name a doctor is shown under in a call: the account's full name or username."""
    return user.get_full_name() or user.get_username()
