"""The consultation board (contract: `GET /praxis/`, `POST /praxis/ID/start|message`)."""

from __future__ import annotations

import uuid
from itertools import groupby

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from board import access, live
from board import services as board_services
from board.forms import PRESET_NOTICES, NoticeForm
from board.routing import WS_PATH
from board.status import LABELS, NOTES, Status
from consultations import services
from consultations.models import Appointment
from redconnect import callcodes


@never_cache
@require_safe
def board(request: HttpRequest) -> HttpResponse:
    if not access.logged_in(request.user):
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    return _render_board(request)


def _render_board(request: HttpRequest, status: int = 200) -> HttpResponse:
    practices = list(access.board_practices(request.user))
    if not practices:
        raise PermissionDenied  # auditors, superusers without membership
    entries = board_services.entries(request.user)
    today = board_services.start_of_today().date()
    days = [
        (day, day == today, list(rows))
        for day, rows in groupby(
            entries, key=lambda e: timezone.localtime(e.appointment.scheduled_at).date()
        )
    ]
    context = {
        "days": days,
        "practices": practices,
        "several_practices": len(practices) > 1,
        "labels": {status.value: LABELS[status] for status in Status},
        "notes": NOTES,
        "presets": [str(text) for text in PRESET_NOTICES],
        "notice_max": live.NOTICE_MAX_LENGTH,
        "ws_path": WS_PATH,
        "codes": callcodes.table(),  # close codes for board.js, defined once
    }
    return render(request, "board/board.html", context, status=status)


def _appointment(appointment_id: str) -> Appointment:
    try:
        pk = uuid.UUID(str(appointment_id))
    except ValueError:
        raise Http404 from None
    found = Appointment.objects.select_related("doctor", "practice").filter(pk=pk).first()
    if found is None:
        raise Http404
    return found


@never_cache
@require_POST
def start(request: HttpRequest, appointment_id: str) -> HttpResponse:
    """One click for the appointment's doctor: the call page as doctor, no code typed."""
    appointment = _appointment(appointment_id)
    if not access.logged_in(request.user) or not services.doctor_may_join(
        request.user, appointment
    ):
        raise PermissionDenied
    if not appointment.is_valid():
        messages.error(request, _not_valid_message(appointment))
        return redirect("board")
    response = redirect("call")
    board_services.start_call(response, request.user, appointment)
    return response


@never_cache
@require_POST
def message(request: HttpRequest, appointment_id: str) -> HttpResponse:
    """A short text to the appointment's waiting participants: relayed, never stored."""
    appointment = _appointment(appointment_id)
    if not access.logged_in(request.user) or not access.organises(request.user, appointment):
        raise PermissionDenied
    form = NoticeForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("text", []):
            messages.error(request, error)
        return _render_board(request, status=400)
    if not appointment.is_valid():
        messages.error(request, _not_valid_message(appointment))
        return redirect("board")
    if live.send_notice(appointment.pk, form.cleaned_data["text"]):
        messages.success(
            request, _("The message is shown to everyone waiting for this appointment.")
        )
    else:
        messages.error(request, _("The message could not be delivered. Please try again."))
    return redirect(reverse("board") + f"#appt-{appointment.pk}")


def _not_valid_message(appointment: Appointment) -> str:
    if appointment.cancelled_at is not None:
        return _("This appointment has been cancelled.")
    return _("This appointment has expired.")
