"""§ 5 Nr. 1: the doctor is registered with the video service."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance.probes import BoardStartObservations, ConnectPhase, HttpObservations
from compliance.registry import Finding, Requirement, check
from compliance.verdicts import refusal_finding
from consultations.models import Appointment, Membership
from redconnect import callcodes

REQUIREMENT = Requirement(
    1,
    gettext_lazy("Doctor registration"),
    gettext_lazy("The doctor must be registered with the video service."),
    gettext_lazy(
        "Only user accounts that hold the doctor role in a practice can be an "
        "appointment's doctor, and a doctor's access code works only for that doctor "
        "while logged in."
    ),
    gettext_lazy("Annex 31b as amended on 15 June 2022: § 5 (organisational requirements)"),
)


@check(
    "doctor_is_active_member",
    gettext_lazy(
        "Every open appointment's doctor is an active doctor member of its practice (database)"
    ),
)
def doctor_is_active_member() -> Finding:
    member = Membership.objects.filter(
        user=OuterRef("doctor"),
        practice=OuterRef("practice"),
        role=Membership.Role.DOCTOR,
        user__is_active=True,
    )
    open_appointments = Appointment.objects.valid()
    total = open_appointments.count()
    strays = open_appointments.exclude(Exists(member))
    if strays.exists():
        return Finding.failed(
            _(
                "%(bad)d of %(total)d open appointments have a doctor who is not an active "
                "doctor of the practice."
            )
            % {"bad": strays.count(), "total": total}
        )
    return Finding.passed(
        _(
            "All %(total)d open appointments belong to active doctor accounts of their "
            "practice (%(doctors)d active doctor memberships)."
        )
        % {
            "total": total,
            "doctors": Membership.objects.filter(
                role=Membership.Role.DOCTOR, user__is_active=True
            ).count(),
        }
    )


@check(
    "doctor_code_requires_login",
    gettext_lazy(
        "A doctor's code without login opens no call (join page via the real URL configuration)"
    ),
)
def doctor_code_requires_login(http: HttpObservations) -> Finding:
    outcome = http.doctor_code_anonymous
    return refusal_finding(
        outcome,
        refused_right=outcome.to_login,
        opened=_("A doctor's code without login opened the call (%(result)s)."),
        refused_wrong=_(
            "A doctor's code without login was refused, but not with a redirect to the "
            "login page (%(result)s)."
        ),
        refused=_(
            "A doctor's code without login is refused and leads to the login page (%(result)s)."
        ),
    )


@check(
    "own_doctor_joins",
    gettext_lazy(
        "The appointment's own doctor, logged in, joins with the doctor's code "
        "(join page via the real URL configuration)"
    ),
)
def own_doctor_joins(http: HttpObservations) -> Finding:
    outcome = http.doctor_code_own_doctor
    if not outcome.joined:
        return Finding.failed(
            _(
                "The appointment's own doctor, logged in, could not join with the doctor's code "
                "(%(result)s)."
            )
            % {"result": outcome.describe()}
        )
    return Finding.passed(
        _("The appointment's own doctor, logged in, joins with the doctor's code (%(result)s).")
        % {"result": outcome.describe()}
    )


@check(
    "socket_requires_join",
    gettext_lazy(
        "The signaling WebSocket refuses connections without a join session (real consumer)"
    ),
)
def socket_requires_join(connect: ConnectPhase) -> Finding:
    code = connect.no_session_close
    expected = callcodes.CLOSE_NO_SESSION
    if code == expected:
        return Finding.passed(
            _("A WebSocket connection without a join session is closed with %(code)s.")
            % {"code": expected}
        )
    if code is not None:
        return Finding.warned(
            _(
                "A WebSocket connection without a join session is closed, but with code "
                "%(code)s instead of %(expected)s."
            )
            % {"code": code, "expected": expected}
        )
    return Finding.failed(_("A WebSocket connection without a join session stays open."))


@check(
    "board_start_only_own_doctor",
    gettext_lazy(
        "The board's one-click start opens the call only for the appointment's own logged-in "
        "doctor (real URL configuration)"
    ),
)
def board_start_only_own_doctor(board: BoardStartObservations) -> Finding:
    for who, result in (
        (_("without login"), board.anonymous),
        (_("for another doctor"), board.other_doctor),
    ):
        if result.joined:
            return Finding.failed(
                _("The board's start opened the call %(who)s (%(result)s).")
                % {"who": who, "result": result.describe()}
            )
    if not board.own_doctor.joined:
        return Finding.warned(
            _("The board's start did not open the call for the appointment's doctor (%(result)s).")
            % {"result": board.own_doctor.describe()}
        )
    return Finding.passed(
        _(
            "The board's start is refused without login (%(anonymous)s) and for another doctor "
            "(%(other)s); the appointment's doctor gets the call (%(own)s)."
        )
        % {
            "anonymous": board.anonymous.describe(),
            "other": board.other_doctor.describe(),
            "own": board.own_doctor.describe(),
        }
    )
