"""The only data RED connect stores: practices, memberships, appointments, API keys.

No patient data at all — no name, no address, no call content or duration. Appointments
hold keyed digests of their access codes (doctor, patient, up to seven guests), never the
codes themselves.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

MAX_VALIDITY = timedelta(days=30)  # KBV: access limited to one month at most
MAX_GUESTS = 7  # doctor + patient + 7 guests: at most nine people in one call


class Practice(models.Model):
    name = models.CharField(_("name"), max_length=200)
    # Relay-only mode for every patient of the practice (the join page's "hide my IP
    # address" ticked by default): the doctor's browser sees only relay candidates.
    hide_patient_ip = models.BooleanField(
        _("hide patients' IP addresses"),
        default=False,
        help_text=_(
            "Patients' audio and video always go through the TURN relay, so the practice "
            "never sees their IP address. Needs a TURN server (ICE_SERVERS, TURN_SECRET)."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("practice")
        verbose_name_plural = _("practices")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        DOCTOR = "doctor", pgettext_lazy("role", "Doctor")
        STAFF = "staff", pgettext_lazy("role", "Practice staff")
        AUDITOR = "auditor", pgettext_lazy("role", "Auditor")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("user"),
    )
    practice = models.ForeignKey(
        Practice, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("practice")
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "practice"], name="one_role_per_practice")
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.practice} · {self.get_role_display()}"


class AppointmentQuerySet(models.QuerySet):
    def valid(self, now=None):
        """Appointments whose codes work right now."""
        now = now or timezone.now()
        return self.filter(cancelled_at__isnull=True, expires_at__gt=now)


class Appointment(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", pgettext_lazy("appointment status", "scheduled")
        ACTIVE = "active", pgettext_lazy("appointment status", "active")
        EXPIRED = "expired", pgettext_lazy("appointment status", "expired")
        CANCELLED = "cancelled", pgettext_lazy("appointment status", "cancelled")

    # A random id: an appointment's number reveals nothing about the practice's volume.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    practice = models.ForeignKey(
        Practice, on_delete=models.CASCADE, related_name="appointments", verbose_name=_("practice")
    )
    doctor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="appointments",
        verbose_name=_("doctor"),
    )
    scheduled_at = models.DateTimeField(_("scheduled for"))
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires_at = models.DateTimeField(_("codes valid until"), editable=False)
    cancelled_at = models.DateTimeField(_("cancelled"), null=True, blank=True, editable=False)
    doctor_code_digest = models.CharField(max_length=64, unique=True, editable=False)
    patient_code_digest = models.CharField(max_length=64, unique=True, editable=False)
    # Bumped by every re-issue: patient and guest joins carry the version they were made
    # with, so that a join made with an old code stops working at once (issue 11).
    codes_version = models.PositiveIntegerField(default=1, editable=False)

    objects = AppointmentQuerySet.as_manager()

    class Meta:
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")
        ordering = ["-scheduled_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__lte=F("created_at") + MAX_VALIDITY),
                name="validity_at_most_30_days",
            ),
            models.CheckConstraint(
                condition=~Q(doctor_code_digest=F("patient_code_digest")),
                name="two_distinct_codes",
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="appointment_expiry_idx")]

    def __str__(self) -> str:
        local = timezone.localtime(self.scheduled_at)
        return f"{local:%d.%m.%Y %H:%M} · {self.doctor}"

    def status(self, now=None) -> Appointment.Status:
        now = now or timezone.now()
        if self.cancelled_at is not None:
            return self.Status.CANCELLED
        if now >= self.expires_at:
            return self.Status.EXPIRED
        if now >= self.scheduled_at - timedelta(hours=1):
            return self.Status.ACTIVE
        return self.Status.SCHEDULED

    def is_valid(self, now=None) -> bool:
        return self.status(now) in (self.Status.SCHEDULED, self.Status.ACTIVE)


class GuestCode(models.Model):
    """One guest's access code (support person, carer, interpreter, group member).

    A guest code is a seat of its own in the call: `slot` 0–6 names it (seat `guest-N`).
    Only the keyed digest is stored; it expires and dies with its appointment.
    """

    appointment = models.ForeignKey(
        Appointment,
        on_delete=models.CASCADE,
        related_name="guest_codes",
        verbose_name=_("appointment"),
    )
    slot = models.PositiveSmallIntegerField(_("guest number"), editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        verbose_name = _("guest code")
        verbose_name_plural = _("guest codes")
        ordering = ["slot"]
        constraints = [
            models.UniqueConstraint(fields=["appointment", "slot"], name="one_code_per_guest_slot"),
            models.CheckConstraint(condition=Q(slot__lt=MAX_GUESTS), name="at_most_seven_guests"),
        ]

    def __str__(self) -> str:
        return f"{self.appointment} · {self.slot + 1}"


class ApiKey(models.Model):
    practice = models.ForeignKey(
        Practice, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("practice")
    )
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(_("prefix"), max_length=8, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.practice})"
