"""Invitation by e-mail: one German message with date, link, terms and an .ics file.

The address is used for this one send and stored nowhere: not in the database, not in
the session, not in a log line (a failed send logs the exception's type only). Works for
every code that joins a call — the patient's and, where they exist, guest codes: the
caller passes the clear code (which exists only at issue time) and the role.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import timezone, translation

from board import links
from consultations.models import Appointment

logger = logging.getLogger("redconnect")

CALENDAR_DURATION = timedelta(minutes=15)


def send_invitation(appointment: Appointment, *, code: str, role: str, address: str) -> bool:
    """Send the invitation; True if the backend accepted it. Never raises for a bad server."""
    with translation.override("de"):
        context = _context(appointment, code, role)
        subject = render_to_string("board/invitation_subject.txt", context).strip()
        body = render_to_string("board/invitation.txt", context)
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
    message.attach("videosprechstunde.ics", calendar(appointment, context), "text/calendar")
    try:
        return message.send() == 1
    except Exception as exc:
        # SMTP errors may quote the address: log the type only.
        logger.warning("could not send an invitation e-mail (%s)", type(exc).__name__)
        return False


def _context(appointment: Appointment, code: str, role: str) -> dict:
    base = settings.PUBLIC_URL
    return {
        "appointment": appointment,
        "practice": appointment.practice.name,
        "when": timezone.localtime(appointment.scheduled_at),
        "until": timezone.localtime(appointment.expires_at),
        "code": code,
        "role": role,
        "link": links.join_link(code),
        "terms_url": f"{base}/nutzungsbedingungen/",
        "privacy_url": f"{base}/datenschutz/",
        "faq_url": f"{base}/faq/",
    }


def _ics_text(value: str) -> str:
    """RFC 5545 TEXT escaping."""
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """RFC 5545 line folding at 75 octets."""
    data, parts = line.encode(), []
    while len(data) > 75:
        cut = 75 if not parts else 74
        while (data[cut] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            cut -= 1
        parts.append(data[:cut].decode())
        data = data[cut:]
    parts.append(data.decode())
    return "\r\n ".join(parts)


def calendar(appointment: Appointment, context: dict) -> str:
    start = appointment.scheduled_at.astimezone(UTC)
    stamp = timezone.now().astimezone(UTC)
    with translation.override("de"):
        summary = render_to_string("board/invitation_summary.txt", context).strip()
    fmt = "%Y%m%dT%H%M%SZ"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//RED connect//Videosprechstunde//DE",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{appointment.pk}@{settings.PUBLIC_HOST}",
        f"DTSTAMP:{stamp:{fmt}}",
        f"DTSTART:{start:{fmt}}",
        f"DTEND:{start + CALENDAR_DURATION:{fmt}}",
        f"SUMMARY:{_ics_text(summary)}",
        f"DESCRIPTION:{_ics_text(context['link'])}",
        f"URL:{context['link']}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"
