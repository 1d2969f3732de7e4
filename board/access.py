"""Who may use the practice's board: doctors and staff, logged in as for the admin.

One home for the board's permission questions, asked by the views and the board's
WebSocket. Membership counts, not superuser status: a waiting patient's name is shown
only to members of that practice.
"""

from __future__ import annotations

from django.conf import settings
from django_otp import DEVICE_ID_SESSION_KEY, user_has_device
from django_otp.models import Device

from consultations.models import Appointment, Membership, Practice
from redconnect import twofactor

ORGANISERS = (Membership.Role.DOCTOR.value, Membership.Role.STAFF.value)


def board_practices(user):
    """The practices where the user is an active doctor or staff member."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Practice.objects.none()
    memberships = Membership.objects.filter(user=user, role__in=ORGANISERS)
    return Practice.objects.filter(id__in=memberships.values("practice_id")).order_by("name")


def logged_in(user) -> bool:
    """Logged in as for /admin/: active staff account, second factor where enforced.

    For HTTP requests (django-otp's middleware has set `is_verified`).
    """
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return False
    return twofactor.second_factor_satisfied(user)


def logged_in_session(user, session) -> bool:
    """The same question for a WebSocket scope (no OTP middleware there)."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return False
    if _session_device_verified(user, session):
        return True
    return not twofactor.otp_required() and not user_has_device(user, confirmed=True)


def _session_device_verified(user, session) -> bool:
    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    if not persistent_id:
        return False
    device = Device.from_persistent_id(persistent_id)
    return device is not None and device.user_id == user.pk and device.confirmed


def organises(user, appointment: Appointment) -> bool:
    """A doctor or staff member of the appointment's practice (may send messages)."""
    return board_practices(user).filter(pk=appointment.practice_id).exists()


def otp_enforced() -> bool:
    return bool(settings.OTP_REQUIRED)
