"""The eleven requirements of Anlage 31b BMV-Ä § 5 Abs. 1 and how RED connect meets them.

Titles and texts are paraphrases (English msgids, German in the catalogue); the PDF is
rendered in German. Which checks prove a requirement is declared in `compliance.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Requirement:
    number: int
    title: Promise
    text: Promise  # paraphrase of the agreement's wording
    measures: Promise  # how the product meets it


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        1,
        _("Doctor registration"),
        _("The doctor must be registered with the video service."),
        _(
            "Only user accounts that hold the doctor role in a practice can be an "
            "appointment's doctor, and a doctor's access code works only for that doctor "
            "while logged in."
        ),
    ),
    Requirement(
        2,
        _("No second access for consultations"),
        _(
            "A second access for practice staff is not required; if it exists, it may only "
            "serve organisational purposes and never be used to hold a consultation."
        ),
        _(
            "Practice staff create and cancel appointments in the administration, but a "
            "doctor's code is refused for any account other than the appointment's doctor."
        ),
    ),
    Requirement(
        3,
        _("Patient access without an account"),
        _(
            "Patients join without an account; the doctor should see their real name. "
            "Access may lead only to the initiating doctor and must be limited in time, to "
            "one month at most."
        ),
        _(
            "The patient enters the name and a 12-character code; each code opens exactly "
            "one appointment and works until 24 hours after it, never longer than 30 days."
        ),
    ),
    Requirement(
        4,
        _("Undisturbed consultation"),
        _(
            "The doctor must be able to hold the consultation undisturbed, for example "
            "without signal tones from other callers."
        ),
        _(
            "Each call room admits one doctor and one patient; the patient waits until the "
            "doctor admits them, and nothing from other appointments reaches the call."
        ),
    ),
    Requirement(
        5,
        _("Peer-to-peer transmission"),
        _(
            "The consultation is transmitted peer-to-peer without a central server; a "
            "central server may only broker the connection."
        ),
        _(
            "Audio and video flow directly between the two browsers over WebRTC; the server "
            "relays only the connection set-up messages. Relay (TURN) servers, where used, "
            "stand in the EU and see only end-to-end encrypted packets."
        ),
    ),
    Requirement(
        6,
        _("End-to-end encryption"),
        _(
            "All content must be end-to-end encrypted during the whole transmission "
            "according to the state of the art, in particular BSI TR-02102."
        ),
        _(
            "Media are encrypted with DTLS-SRTP between the browsers; connection offers "
            "without a DTLS fingerprint or with SDES keys are refused. The web service "
            "itself is reachable only over TLS as recommended by BSI TR-02102-2."
        ),
    ),
    Requirement(
        7,
        _("Adaptive audio and video quality"),
        _(
            "The software must adapt audio and video quality when the connection quality "
            "varies; the participants decide whether to continue at lower quality."
        ),
        _(
            "The call uses WebRTC congestion control without fixed bitrate caps, prefers a "
            "lower frame rate or resolution as set by the client, shows a live quality "
            "indicator and offers a switch to audio only."
        ),
    ),
    Requirement(
        8,
        _("No viewing or storing of content"),
        _("The provider may neither view nor store any content of the consultation."),
        _(
            "No database field can hold call content, the served code contains no "
            "recording function, and relayed connection messages are never written to the "
            "database or the log."
        ),
    ),
    Requirement(
        9,
        _("Servers in the EU, metadata for three months at most"),
        _(
            "Only servers in the EU may be used. All metadata must be deleted after three "
            "months at the latest, used only to run the consultation and never passed on."
        ),
        _(
            "Every STUN/TURN server is declared with its location and must stand in the EU; "
            "appointment records are purged after the configured retention period; logs "
            "hold no client addresses."
        ),
    ),
    Requirement(
        10,
        _("Terms of use in German without login"),
        _("The terms of use must be complete in German and readable online without login."),
        _(
            "Terms of use, privacy notice, FAQ and imprint are public German pages linked "
            "from the join page."
        ),
    ),
    Requirement(
        11,
        _("No advertising"),
        _("Advertising within the video consultation is prohibited."),
        _(
            "The pages load nothing from third parties: no advertising, tracking, fonts or "
            "scripts from other origins, enforced by the Content Security Policy."
        ),
    ),
)

BY_NUMBER = {requirement.number: requirement for requirement in REQUIREMENTS}
