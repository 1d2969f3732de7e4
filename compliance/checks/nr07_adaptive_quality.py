"""§ 5 Nr. 7: audio and video adapt to the connection; the participants decide."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import scans
from compliance.registry import Finding, Requirement, check

CALL_TEMPLATE = "consultations/call.html"

REQUIREMENT = Requirement(
    7,
    gettext_lazy("Adaptive audio and video quality"),
    gettext_lazy(
        "The software must adapt audio and video quality when the connection quality "
        "varies; the participants decide whether to continue at lower quality."
    ),
    gettext_lazy(
        "The call uses WebRTC congestion control without fixed bitrate caps, prefers a "
        "lower frame rate or resolution as set by the client, shows a live quality "
        "indicator and offers a switch to audio only."
    ),
    gettext_lazy("Annex 31b as amended on 15 June 2022: § 5 (organisational requirements)"),
    further_evidence=gettext_lazy(
        "Real-network evidence: docs/evidence-network.md in the source of this version – "
        "calls in real Chromium through NAT and TURN (coturn), on a link limited to "
        "400 kbit/s with 10 percent packet loss (audio kept, video bitrate and resolution lowered, "
        "audio-only offered) and recovery within 30 seconds after the impairment is lifted."
    ),
)

# The documented result of the real-network tests (tests/network/): what the static checks
# below look for in the code is shown to work there.
NETWORK_EVIDENCE = "docs/evidence-network.md"
NETWORK_FACTS = {
    "NAT": "NAT",
    "TURN": "coturn",
    "400 kbit/s": "400 kbit/s",
    "10 %": "10 %",
    "recovery": "within 30 seconds",
}


def _call_scripts() -> dict[str, str]:
    return {
        file.path: file.text()
        for file in scans.static_files((".js", ".mjs"))
        if file.own and file.path.startswith("js/")
    }


# The one module allowed to limit a send bitrate: the uplink budget of a mesh call, which
# applies only from SHARE_FROM_PARTICIPANTS people on (a two-person call stays uncapped).
MESH_BUDGET_SCRIPT = "js/bandwidth.js"
CAP = re.compile(r"\bmaxBitrate\b|b=AS:|b=TIAS:|\bmaxFramerate\s*:")
SHARE_FROM = re.compile(r"export const SHARE_FROM_PARTICIPANTS = (\d+);")


def _capped(path: str, text: str) -> bool:
    if path != MESH_BUDGET_SCRIPT:
        return bool(CAP.search(text))
    share_from = SHARE_FROM.search(text)
    # only maxBitrate per encoding, and never for a call of two
    bandwidth_lines = re.search(r"b=AS:|b=TIAS:|\bmaxFramerate\s*:", text)
    return bool(bandwidth_lines) or share_from is None or int(share_from.group(1)) < 3


@check(
    "no_bitrate_caps",
    gettext_lazy("The call client sets no fixed bitrate cap (static check of the JavaScript)"),
    static=True,
)
def no_bitrate_caps() -> Finding:
    scripts = _call_scripts()
    if not scripts:
        return Finding.failed(_("No call client scripts found below static/js/."))
    capped = sorted(path for path, text in scripts.items() if _capped(path, text))
    if capped:
        return Finding.failed(
            _("Static check: fixed bitrate caps in %(files)s.") % {"files": ", ".join(capped)}
        )
    return Finding.passed(
        _(
            "Static check: none of the %(count)d call scripts sets a fixed bitrate cap or a "
            "bandwidth line; WebRTC congestion control adapts the rate. Only from three "
            "people on, %(budget)s shares the uplink out between the peers of the mesh."
        )
        % {"count": len(scripts), "budget": MESH_BUDGET_SCRIPT}
    )


@check(
    "degradation_preference",
    gettext_lazy("The call client sets a degradation preference (static check of the JavaScript)"),
    static=True,
)
def degradation_preference() -> Finding:
    found = sorted(p for p, text in _call_scripts().items() if "degradationPreference" in text)
    if not found:
        return Finding.failed(_("Static check: no call script sets degradationPreference."))
    return Finding.passed(
        _("Static check: degradationPreference is set in %(files)s.") % {"files": ", ".join(found)}
    )


@check(
    "quality_controls",
    gettext_lazy(
        "The call page shows a quality indicator and offers "
        "an audio-only switch (static check of template and JavaScript)"
    ),
    static=True,
)
def quality_controls() -> Finding:
    try:
        source = get_template(CALL_TEMPLATE).template.source
    except TemplateDoesNotExist:
        return Finding.failed(_("Static check: the call page template is missing."))
    stats = sorted(p for p, text in _call_scripts().items() if "getStats" in text)
    missing = [
        name
        for name, present in (
            ('data-role="quality"', 'data-role="quality"' in source),
            ('data-action="audio-only"', 'data-action="audio-only"' in source),
            ("getStats()", bool(stats)),
        )
        if not present
    ]
    if missing:
        return Finding.failed(
            _("Static check: the call page lacks %(missing)s.") % {"missing": ", ".join(missing)}
        )
    return Finding.passed(
        _(
            "Static check: the call page has a quality indicator fed by getStats() "
            "(%(files)s) and an audio-only switch; the participants decide whether to go on."
        )
        % {"files": ", ".join(stats)}
    )


def _network_evidence_path() -> Path:
    return Path(settings.BASE_DIR) / NETWORK_EVIDENCE


@check(
    "network_lab_evidence",
    gettext_lazy(
        "Adaptation is documented on a real bad network: NAT, TURN, 400 kbit/s and 10 percent "
        "loss, recovery (static check of the evidence document)"
    ),
    static=True,
)
def network_lab_evidence() -> Finding:
    path = _network_evidence_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return Finding.failed(
            _("Static check: the network evidence %(doc)s is missing.") % {"doc": NETWORK_EVIDENCE}
        )
    flat = " ".join(text.split())
    missing = [name for name, needle in NETWORK_FACTS.items() if needle not in flat]
    if missing:
        return Finding.failed(
            _("Static check: %(doc)s does not document %(missing)s.")
            % {"doc": NETWORK_EVIDENCE, "missing": ", ".join(missing)}
        )
    return Finding.passed(
        _(
            "Static check: %(doc)s documents the real-network tests (tests/network/, "
            "pytest marker network): calls through NAT and via TURN (coturn), a link "
            "limited to 400 kbit/s with 10 %% loss on which audio continues and video "
            "quality goes down, and recovery within 30 seconds."
        )
        % {"doc": NETWORK_EVIDENCE}
    )
