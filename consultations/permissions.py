"""Who may do what: the one answer for admin, views, API, consumer and compliance.

Abilities come from practice memberships, never from Django's model permissions:

- **organise** (create, list, cancel, re-issue appointments of a practice): the
  practice's doctors and staff with an admin account; superusers for every practice.
- **conduct** (open a call as its doctor): only the appointment's own doctor, still an
  active doctor of its practice (KBV § 5 Nr. 1, 2) — never staff, auditors, other
  doctors or superusers.
- **audit** (the compliance page and PDF): auditors and superusers with an admin account.
- **be booked** (be an appointment's doctor in a practice): an active doctor member; the
  practice API books only doctors of its key's practice.

Only superusers manage practices, memberships, API keys and users (`may_administer`).
"""

from __future__ import annotations

from consultations.models import Membership, Practice

ORGANISER_ROLES = (Membership.Role.DOCTOR, Membership.Role.STAFF)


def is_admin_user(user) -> bool:
    """An account that may log in to the admin at all."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def may_administer(user) -> bool:
    """Practices, memberships, API keys, users: superusers only."""
    return is_admin_user(user) and user.is_superuser


def practices_of(user, *roles: str):
    """The practices where the user holds one of the roles (all practices for superusers)."""
    if user.is_superuser:
        return Practice.objects.all()
    memberships = Membership.objects.filter(user=user, user__is_active=True)
    if roles:
        memberships = memberships.filter(role__in=roles)
    return Practice.objects.filter(id__in=memberships.values("practice_id"))


def organised_practices(user):
    return practices_of(user, *ORGANISER_ROLES)


def may_organise(user, practice_id=None) -> bool:
    """Organise appointments at all (practice_id None) or of this practice."""
    if not is_admin_user(user):
        return False
    if user.is_superuser:
        return True
    practices = organised_practices(user)
    if practice_id is None:
        return practices.exists()
    return practices.filter(pk=practice_id).exists()


def doctor_membership(user, practice: Practice | None = None) -> Membership | None:
    memberships = Membership.objects.filter(
        user=user, user__is_active=True, role=Membership.Role.DOCTOR
    ).select_related("practice")
    if practice is not None:
        memberships = memberships.filter(practice=practice)
    return memberships.first()


def may_be_booked(doctor, practice: Practice) -> bool:
    return doctor is not None and doctor_membership(doctor, practice) is not None


def may_conduct(user, appointment) -> bool:
    """Only the appointment's own doctor, still an active doctor of its practice."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.pk != appointment.doctor_id:
        return False
    return Membership.objects.filter(
        user=user, role=Membership.Role.DOCTOR, practice_id=appointment.practice_id
    ).exists()


def may_audit(user) -> bool:
    if not is_admin_user(user):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, role=Membership.Role.AUDITOR).exists()
