"""What software cannot prove: proofs the operator holds and duties of the practice.

Listed in the attestation as a checklist to be ticked and signed; none of it is ever
rated by a check (`declared` is for settings that state a fact, not for these).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Obligation:
    title: Promise
    detail: Promise


OPERATOR_PROOFS = (
    Obligation(
        _("IT security certificate"),
        _(
            "Certificate of a certification body accredited under ISO/IEC 17065 that the "
            "video service meets the IT security requirements of Annex 31b (§ 2); "
            "certification body, number and validity:"
        ),
    ),
    Obligation(
        _("Data protection certificate"),
        _(
            "Certificate under Art. 42 GDPR for providing the video service (§ 2a); "
            "certification body, number and validity:"
        ),
    ),
    Obligation(
        _("Declaration filed"),
        _(
            "The declaration (Bescheinigung) under § 5 para. 2 has been filed with the KBV "
            "and the GKV-Spitzenverband; date of filing:"
        ),
    ),
)

PRACTICE_DUTIES = (
    Obligation(
        _("Patient consent"),
        _(
            "Before the video consultation the patient consents to the processing by the "
            "video service (Art. 9 para. 2 lit. a with Art. 7 GDPR); the consent is "
            "documented."
        ),
    ),
    Obligation(
        _("Closed room"),
        _("The consultation is held in a closed room that keeps it private."),
    ),
    Obligation(
        _("Everyone introduced"),
        _("Everyone present on either side is introduced at the start of the consultation."),
    ),
    Obligation(
        _("No recording"),
        _(
            "Nobody records the consultation, neither sound nor picture — not the practice "
            "and not the patient, who is told so."
        ),
    ),
)
