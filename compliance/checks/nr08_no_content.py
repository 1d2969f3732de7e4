"""§ 5 Nr. 8: the provider neither views nor stores any content."""

from __future__ import annotations

import re

from django.apps import apps
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import scans
from compliance.probes import ConnectPhase, RelayPhase
from compliance.registry import Finding, Requirement, check

REQUIREMENT = Requirement(
    8,
    gettext_lazy("No viewing or storing of content"),
    gettext_lazy("The provider may neither view nor store any content of the consultation."),
    gettext_lazy(
        "No database field can hold call content, the served code contains no "
        "recording function, and relayed connection messages are never written to the "
        "database or the log."
    ),
    gettext_lazy(
        "Annex 31b as amended on 15 June 2022: § 2a (data protection); proven by the "
        "data protection certificate under Art. 42 GDPR"
    ),
)


@check(
    "no_content_fields",
    gettext_lazy(
        "No database field can hold call content (scan of all models against an allowlist)"
    ),
)
def no_content_fields() -> Finding:
    scanned, unlisted = scans.unlisted_fields(apps.get_models())
    if unlisted:
        return Finding.failed(
            _(
                "%(count)d fields are not on the reviewed allowlist and might hold content: "
                "%(fields)s."
            )
            % {"count": len(unlisted), "fields": ", ".join(unlisted)}
        )
    return Finding.passed(
        _(
            "All %(scanned)d fields of %(models)d models are on the reviewed allowlist; none "
            "can hold names of patients or call content."
        )
        % {"scanned": scanned, "models": len(apps.get_models())}
    )


@check(
    "no_recording_code",
    gettext_lazy("No served script can record (MediaRecorder)"),
    static=True,
)
def no_recording_code() -> Finding:
    scripts = list(scans.static_files((".js", ".mjs")))
    recording = sorted(f.path for f in scripts if re.search(r"MediaRecorder", f.text()))
    if recording:
        return Finding.failed(
            _("Served scripts that use MediaRecorder: %(files)s.") % {"files": ", ".join(recording)}
        )
    return Finding.passed(
        _("None of the %(count)d served scripts uses MediaRecorder.") % {"count": len(scripts)}
    )


@check(
    "relay_writes_nothing",
    gettext_lazy(
        "Relaying a call's messages writes nothing to "
        "the database (queries counted on the real consumer)"
    ),
)
def relay_writes_nothing(connect: ConnectPhase, relay: RelayPhase) -> Finding:
    if relay.writes:
        return Finding.failed(
            _("Relaying offer, answer and candidate caused %(writes)d database writes.")
            % {"writes": relay.writes}
        )
    if not connect.connect_queries:
        return Finding.warned(
            _(
                "No database queries were seen at all, not even when connecting: the count "
                "cannot be trusted."
            )
        )
    if relay.reads:
        return Finding.warned(
            _("Relaying wrote nothing, but caused %(reads)d database reads.")
            % {"reads": relay.reads}
        )
    return Finding.passed(
        _(
            "Relaying offer, answer and candidate caused 0 database queries (connecting "
            "caused %(connect)d, so the counter sees the consumer)."
        )
        % {"connect": connect.connect_queries}
    )
