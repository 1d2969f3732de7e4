"""§ 5 Nr. 5: media peer-to-peer; the server only brokers the connection."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import regions
from compliance.probes import MeshPhase, RefusalPhase, RelayPhase
from compliance.registry import Finding, Requirement, Status, check
from redconnect import callcodes

REQUIREMENT = Requirement(
    5,
    gettext_lazy("Peer-to-peer transmission"),
    gettext_lazy(
        "The consultation is transmitted peer-to-peer without a central server; a "
        "central server may only broker the connection."
    ),
    gettext_lazy(
        "Audio and video flow directly between the browsers over WebRTC – with more than "
        "two people as a mesh, one direct connection per pair; the server relays only the "
        "connection set-up messages, and only between admitted participants. Relay (TURN) "
        "servers, where used, stand in the EU and see only end-to-end encrypted packets."
    ),
    gettext_lazy(
        "Annex 31b as amended on 15 June 2022: § 2 (IT security); since 2021 a “should”: "
        "a deviation is allowed with equivalent protection"
    ),
)


@check(
    "relays_signaling_only",
    gettext_lazy("The server relays only connection set-up messages (real consumer)"),
)
def relays_signaling_only(relay: RelayPhase, refusals: RefusalPhase) -> Finding:
    media, record, binary = refusals.media_type, refusals.recording_type, refusals.binary_frame
    leaked = media.leaked + record.leaked
    if binary.leaked or binary.error is None:
        return Finding.failed(
            _("A binary frame was not refused (reply: %(reply)s, relayed: %(leaked)d).")
            % {"reply": binary.error, "leaked": len(binary.leaked)}
        )
    if relay.relayed != ["offer", "answer", "candidate"]:
        return Finding.failed(
            _("The signaling relay did not pass offer, answer and candidate (got: %(types)s).")
            % {"types": ", ".join(relay.relayed) or "—"}
        )
    if leaked or media.error != callcodes.UNKNOWN_TYPE or record.error != callcodes.UNKNOWN_TYPE:
        return Finding.failed(
            _(
                "Message types other than signaling were not refused (media: %(media)s, "
                "record: %(record)s, relayed: %(leaked)d)."
            )
            % {"media": media.error, "record": record.error, "leaked": len(leaked)}
        )
    return Finding.passed(
        _(
            'Relayed were offer, answer and candidate; "media" and "record" messages '
            'were refused as "unknown-type" and a binary frame as "%(binary)s"; none '
            "reached the other side."
        )
        % {"binary": binary.error}
    )


@check(
    "turn_relays_in_eu",
    gettext_lazy(
        "Relay (TURN) servers are declared in the EU and use time-limited credentials (settings)"
    ),
)
def turn_relays_in_eu() -> Finding:
    turn = [entry for entry in regions.ice_entries() if entry.is_turn]
    if not turn:
        return Finding.passed(
            _("No TURN relay is configured: media flow only directly between the browsers.")
        )
    outside = [e.url for e in turn if e.status == Status.FAIL]
    if outside:
        return Finding.failed(
            _("TURN relays not declared in an EU country: %(urls)s.") % {"urls": ", ".join(outside)}
        )
    eea = [f"{e.url} ({e.country})" for e in turn if e.status == Status.WARN]
    if eea:
        return Finding.warned(
            _("ICE servers in the EEA but outside the EU: %(list)s.") % {"list": ", ".join(eea)}
        )
    if not settings.TURN_SECRET:
        return Finding.warned(
            _(
                "%(count)d TURN relays in the EU, but TURN_SECRET is not set: no time-limited "
                "credentials."
            )
            % {"count": len(turn)}
        )
    return Finding.passed(
        _(
            "%(count)d TURN relays, all declared in the EU (%(countries)s), with time-limited "
            "credentials; relayed packets stay end-to-end encrypted (DTLS-SRTP)."
        )
        % {"count": len(turn), "countries": ", ".join(sorted({e.country for e in turn}))}
    )


@check(
    "mesh_relays_only_between_admitted",
    gettext_lazy(
        "A call of more than two is a peer-to-peer mesh: relays go only between admitted "
        "participants (real consumer)"
    ),
)
def mesh_relays_only_between_admitted(mesh: MeshPhase) -> Finding:
    refusals = {
        _("to a waiting guest"): (mesh.to_waiting_guest, callcodes.NO_SUCH_PARTICIPANT),
        _("from the patient to a waiting guest"): (
            mesh.from_patient_to_waiting,
            callcodes.NO_SUCH_PARTICIPANT,
        ),
        _("to another appointment's doctor"): (
            mesh.to_other_appointment,
            callcodes.NO_SUCH_PARTICIPANT,
        ),
        _("from a waiting guest"): (mesh.from_waiting_guest, callcodes.NOT_ADMITTED),
    }
    wrong = [
        f"{what}: {refusal.error or '—'}" + (f" ({len(refusal.leaked)})" if refusal.leaked else "")
        for what, (refusal, code) in refusals.items()
        if refusal.error != code or refusal.leaked
    ]
    missing = sorted(pair for pair, ok in mesh.delivered.items() if not ok)
    if wrong or missing or mesh.misdelivered:
        return Finding.failed(
            _(
                "The mesh is not kept to admitted pairs: refusals %(wrong)s; not relayed "
                "%(missing)s; relayed to someone not addressed %(mis)s."
            )
            % {
                "wrong": "; ".join(wrong) or "—",
                "missing": ", ".join(missing) or "—",
                "mis": ", ".join(mesh.misdelivered) or "—",
            }
        )
    return Finding.passed(
        _(
            "Offer, answer and candidate went pairwise (%(pairs)s), each only to its "
            "addressee and marked with its sender; relays to a waiting guest or to another "
            'appointment were refused with "no-such-participant", a waiting guest\'s offer '
            'with "not-admitted". Every pair connects directly; no media server takes part.'
        )
        % {"pairs": ", ".join(mesh.delivered)}
    )
