"""§ 5 Nr. 4: the doctor holds the consultation undisturbed."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance.probes import CALL_SIGNALING, ConnectPhase, GuestWaitingPhase, SupersedePhase
from compliance.registry import Finding, Requirement, check
from redconnect import callcodes

REQUIREMENT = Requirement(
    4,
    gettext_lazy("Undisturbed consultation"),
    gettext_lazy(
        "The doctor must be able to hold the consultation undisturbed, for example "
        "without signal tones from other callers."
    ),
    gettext_lazy(
        "Each call room admits its doctor, its patient and the guests of its own guest "
        "codes, each seat once; everyone waits until the doctor admits them and hears "
        "nothing of the call while waiting, and nothing from other appointments reaches it."
    ),
    gettext_lazy(
        "Annex 31b as amended on 15 June 2022: technical requirements of the video service "
        "(§ 5, partly moved to §§ 2/2a since 2021; exact place to be checked against the "
        "current text)"
    ),
)


@check(
    "admission_by_doctor",
    gettext_lazy("The patient waits until the doctor admits them (real consumer)"),
)
def admission_by_doctor(connect: ConnectPhase) -> Finding:
    early = connect.offer_before_admit
    early_code = early.get("code") if early else None
    relayed = [m for m in connect.doctor_got_before_admit if m.get("type") == "offer"]
    waiting = connect.patient_waiting
    if waiting is None or early_code != callcodes.NOT_ADMITTED or relayed or not connect.admitted:
        return Finding.failed(
            _(
                "Admission is not enforced: waiting=%(waiting)s, offer before admission → "
                "%(early)s, relayed=%(relayed)d, admitted=%(admitted)s."
            )
            % {
                "waiting": waiting is not None,
                "early": early_code,
                "relayed": len(relayed),
                "admitted": connect.admitted,
            }
        )
    return Finding.passed(
        _(
            "The patient was told to wait; an offer before admission was refused "
            '("not-admitted") and not relayed; after "admit" both sides were admitted.'
        )
    )


@check(
    "one_doctor_one_patient",
    gettext_lazy("At most one doctor and one patient per appointment (real consumer)"),
)
def one_doctor_one_patient(supersede: SupersedePhase) -> Finding:
    close_code = supersede.first_patient_close
    if close_code != callcodes.CLOSE_SUPERSEDED or supersede.second_patient_welcome is None:
        return Finding.failed(
            _(
                "A second patient connection did not replace the first (first connection: "
                "close code %(code)s)."
            )
            % {"code": close_code}
        )
    return Finding.passed(
        _(
            "A second patient connection replaced the first, which was closed with "
            "%(code)s: never more than one doctor and one patient in a call."
        )
        % {"code": callcodes.CLOSE_SUPERSEDED}
    )


@check(
    "no_events_from_other_calls",
    gettext_lazy("Nothing from other appointments reaches a call (real consumer)"),
)
def no_events_from_other_calls(supersede: SupersedePhase) -> Finding:
    foreign = [kind for kind in supersede.doctor_b_received if kind != "welcome"]
    if foreign:
        return Finding.failed(
            _(
                "The doctor of another appointment received %(count)d messages of this call: "
                "%(types)s."
            )
            % {"count": len(foreign), "types": ", ".join(foreign)}
        )
    return Finding.passed(
        _(
            "While a call of appointment A ran, the doctor connected to appointment B "
            "received nothing but their own welcome message."
        )
    )


@check(
    "waiting_people_hear_nothing",
    gettext_lazy(
        "Waiting patients and guests receive no signaling of the call (real consumer, "
        "doctor, patient and two guests)"
    ),
)
def waiting_people_hear_nothing(waiting: GuestWaitingPhase) -> Finding:
    heard = {
        _("the waiting patient"): waiting.patient_waiting_received,
        _("the waiting guest"): waiting.guest_waiting_received,
        _("the guest sent back to the waiting room"): waiting.removed_received,
    }
    leaks = {who: sorted(set(types) & CALL_SIGNALING) for who, types in heard.items()}
    leaks = {who: types for who, types in leaks.items() if types}
    if leaks or not waiting.removed_told_waiting or not waiting.admitted_talked:
        return Finding.failed(
            _(
                "Waiting people heard the call: %(leaks)s (sent back told to wait: "
                "%(told)s, admitted people connected: %(talked)s)."
            )
            % {
                "leaks": "; ".join(f"{who}: {', '.join(t)}" for who, t in leaks.items()) or "—",
                "told": waiting.removed_told_waiting,
                "talked": waiting.admitted_talked,
            }
        )
    return Finding.passed(
        _(
            "While doctor, a guest and later the patient exchanged offer, answer and "
            "candidate, the waiting patient, the waiting guest and a guest sent back to "
            "the waiting room received no offer, answer, candidate, participant-joined or "
            "participant-left."
        )
    )
