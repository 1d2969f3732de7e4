"""§ 5 Nr. 2: staff access, where it exists, serves organisation only, never a call."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance.probes import BoardStartObservations, HttpObservations
from compliance.registry import Finding, Requirement, check
from compliance.verdicts import refusal_finding
from consultations.models import Appointment, Membership

REQUIREMENT = Requirement(
    2,
    gettext_lazy("No second access for consultations"),
    gettext_lazy(
        "A second access for practice staff is not required; if it exists, it may only "
        "serve organisational purposes and never be used to hold a consultation."
    ),
    gettext_lazy(
        "Practice staff create and cancel appointments in the administration, but a "
        "doctor's code is refused for any account other than the appointment's doctor."
    ),
    gettext_lazy("Annex 31b as amended on 15 June 2022: § 5 (organisational requirements)"),
)


@check(
    "staff_cannot_join",
    gettext_lazy(
        "A staff login with a doctor's code is refused (join page via the real URL configuration)"
    ),
)
def staff_cannot_join(http: HttpObservations) -> Finding:
    outcome = http.doctor_code_staff
    return refusal_finding(
        outcome,
        refused_right=outcome.status == 403,
        opened=_("A practice staff login with the doctor's code opened the call (%(result)s)."),
        refused_wrong=_(
            "A practice staff login with the doctor's code was refused, but not with 403 "
            "(%(result)s)."
        ),
        refused=_("A practice staff login with the doctor's code is refused (%(result)s)."),
    )


@check(
    "staff_cannot_start_from_board",
    gettext_lazy("A staff login cannot start a call from the board (real URL configuration)"),
)
def staff_cannot_start_from_board(board: BoardStartObservations) -> Finding:
    result = board.staff
    return refusal_finding(
        result,
        refused_right=result.status == 403,
        opened=_("A practice staff login started the call from the board (%(result)s)."),
        refused_wrong=_("The board's start was refused for staff, but not with 403 (%(result)s)."),
        refused=_("A practice staff login cannot start a call from the board (%(result)s)."),
    )


@check(
    "staff_never_doctor",
    gettext_lazy("No practice staff account is the doctor of an appointment (database)"),
)
def staff_never_doctor() -> Finding:
    staff_only = Membership.objects.filter(
        user=OuterRef("doctor"), practice=OuterRef("practice")
    ).exclude(role=Membership.Role.DOCTOR)
    bad = Appointment.objects.filter(Exists(staff_only)).count()
    staff = Membership.objects.filter(role=Membership.Role.STAFF).count()
    if bad:
        return Finding.failed(
            _(
                "%(bad)d appointments have a doctor who holds only a staff or auditor role in "
                "the practice."
            )
            % {"bad": bad}
        )
    return Finding.passed(
        _(
            "None of the %(staff)d staff memberships is the doctor of any of the %(total)d "
            "appointments."
        )
        % {"staff": staff, "total": Appointment.objects.count()}
    )
