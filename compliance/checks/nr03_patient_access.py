"""§ 5 Nr. 3: patients without account, real name visible, one doctor, one month."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import F
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import kbv
from compliance.probes import PATIENT_NAME, ConnectPhase, GuestAccessPhase, HttpObservations
from compliance.registry import Finding, Requirement, check
from consultations.models import MAX_VALIDITY, Appointment

REQUIREMENT = Requirement(
    3,
    gettext_lazy("Patient access without an account"),
    gettext_lazy(
        "Patients join without an account; the doctor should see their real name. "
        "Access may lead only to the initiating doctor and must be limited in time, to "
        "one month at most."
    ),
    gettext_lazy(
        "The patient, and each guest the doctor invites (support person, interpreter), "
        "enters the name and a 12-character code; each code opens exactly one appointment "
        "with its doctor and works until 24 hours after it, never longer than 30 days."
    ),
    gettext_lazy(
        "Annex 31b as amended on 15 June 2022: § 5 (organisational requirements); since "
        "2019/2020 also for care staff and support persons"
    ),
)


@check(
    "anonymous_join",
    gettext_lazy(
        "A patient joins with name and code, without an account (join page and call page)"
    ),
)
def anonymous_join(http: HttpObservations) -> Finding:
    outcome, call_page = http.patient_join, http.call_page
    if not outcome.joined or call_page.status != 200:
        return Finding.failed(
            _(
                "A patient with a valid code could not join without an account (join: "
                "%(result)s, call page: HTTP %(call)d)."
            )
            % {"result": outcome.describe(), "call": call_page.status}
        )
    return Finding.passed(
        _(
            "A patient without an account joined with name and code (%(result)s); the call "
            "page answered HTTP %(call)d."
        )
        % {"result": outcome.describe(), "call": call_page.status}
    )


@check(
    "real_name_visible",
    gettext_lazy("The doctor sees the patient's typed name (real consumer)"),
)
def real_name_visible(connect: ConnectPhase) -> Finding:
    waiting = connect.doctor_peer_waiting
    if waiting and waiting.get("name") == PATIENT_NAME:
        return Finding.passed(
            _('The doctor was told that "%(name)s" is waiting (the name the probe patient typed).')
            % {"name": PATIENT_NAME}
        )
    return Finding.failed(_("The doctor was not shown the waiting patient's name."))


@check(
    "validity_at_most_30_days",
    gettext_lazy("No appointment's codes are valid longer than 30 days (database)"),
)
def validity_at_most_30_days() -> Finding:
    too_long = Appointment.objects.filter(expires_at__gt=F("created_at") + kbv.MAX_ACCESS)
    bad, total = too_long.count(), Appointment.objects.count()
    if bad or MAX_VALIDITY > kbv.MAX_ACCESS:
        return Finding.failed(
            _("%(bad)d of %(total)d appointments have codes valid for more than 30 days.")
            % {"bad": bad, "total": total}
        )
    longest = max(
        (a.expires_at - a.created_at for a in Appointment.objects.only("expires_at", "created_at")),
        default=timedelta(0),
    )
    return Finding.passed(
        _(
            "All %(total)d appointments are valid for 30 days at most (longest: %(days).1f "
            "days); a database constraint refuses longer validity."
        )
        % {"total": total, "days": longest.total_seconds() / 86400}
    )


@check(
    "code_opens_only_its_appointment",
    gettext_lazy(
        "A code leads only to the doctor of its own appointment (join page and real consumer)"
    ),
)
def code_opens_only_its_appointment(http: HttpObservations, connect: ConnectPhase) -> Finding:
    other_doctor = http.doctor_code_other_doctor
    if other_doctor.joined:
        return Finding.failed(
            _("Another doctor opened appointment A's call with its doctor code (%(result)s).")
            % {"result": other_doctor.describe()}
        )
    welcome = connect.doctor_b_welcome
    saw = [m for m in connect.doctor_b_first if m.get("type") == "peer-waiting"]
    if welcome is None or welcome.get("peer") or saw:
        return Finding.failed(
            _("The doctor of appointment B saw the patient who joined with appointment A's code.")
        )
    return Finding.passed(
        _(
            "Appointment A's doctor code is refused for the doctor of appointment B "
            "(%(result)s), and B's doctor does not see A's waiting patient."
        )
        % {"result": other_doctor.describe()}
    )


@check(
    "guest_codes_open_only_their_appointment",
    gettext_lazy(
        "Patient and guest codes open only their own appointment, and a guest reaches only "
        "the initiating doctor (database and real consumer)"
    ),
)
def guest_codes_open_only_their_appointment(access: GuestAccessPhase) -> Finding:
    wrong = sorted(label for label, own in access.codes_to_own.items() if not own)
    if wrong:
        return Finding.failed(
            _("These codes opened another appointment than their own: %(codes)s.")
            % {"codes": ", ".join(wrong)}
        )
    guests_seen = access.doctor_a_waiting_roles.count("guest")
    if guests_seen != 2 or access.doctor_b_received:
        return Finding.failed(
            _(
                "Appointment A's guests did not reach only A's doctor: A's doctor was told "
                "of %(seen)d of 2 waiting guests, B's doctor received %(foreign)d messages."
            )
            % {"seen": guests_seen, "foreign": len(access.doctor_b_received)}
        )
    return Finding.passed(
        _(
            "All %(count)d patient and guest codes of two appointments open only their own "
            "appointment; both guests of appointment A were announced to A's doctor only, "
            "B's doctor received nothing."
        )
        % {"count": len(access.codes_to_own)}
    )
