"""Join and call pages (contract: `GET/POST /`, `GET /call/`).

The join session is a signed cookie (consultations.joinsession), never the server-side
session: nothing a patient types reaches the database or the cache.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from consultations import joinsession, permissions, services
from consultations.forms import JoinForm
from consultations.models import Appointment, Membership
from redconnect import affinity, callcodes, ratelimit

# A doctor who enters their code before logging in lands back on the join page after the
# login; this short-lived signed cookie (appointment id only, no code) lets the join
# complete there without typing the code again.
PENDING_COOKIE = "rc_join_pending"
PENDING_SALT = "redconnect.join-pending"
PENDING_MAX_AGE = 15 * 60


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def join(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _join_post(request)
    pending = _pending_doctor_join(request)
    if pending is not None:
        return pending
    return _render_join(request, JoinForm())


def _join_post(request: HttpRequest) -> HttpResponse:
    form = JoinForm(request.POST)
    form.is_valid()
    if ratelimit.client_blocked("join", request):
        # Checked before the code: a blocked client learns nothing, even from a valid code.
        form.add_error(None, _("Too many failed attempts. Please try again in a few minutes."))
        return _render_join(request, form, status=429)
    match = None
    if "code" in form.cleaned_data:
        match = services.find_by_code(form.cleaned_data["code"])
        if match is None:
            ratelimit.record_client_failure("join", request)
            form.reject_code()
    if match is not None and match.role not in (services.PATIENT, services.GUEST):
        return _join_as_doctor(request, match.appointment)
    if not form.require_patient_fields() or match is None or not form.is_valid():
        return _render_join(request, form)
    response = redirect("call")
    # A guest code joins like the patient code, as a guest on the seat of its code.
    joinsession.issue_join_cookie(
        response,
        appointment=match.appointment,
        role=match.role,
        display_name=form.cleaned_data["name"],
        guest_slot=match.guest_slot,
        hide_ip=form.cleaned_data.get("hide_ip", False),
    )
    return response


def _join_as_doctor(request: HttpRequest, appointment: Appointment) -> HttpResponse:
    """A doctor code opens the call only for its own doctor, logged in (KBV § 5 Nr. 1, 2)."""
    if not _logged_in(request):
        response = redirect_to_login(reverse("join"), settings.LOGIN_URL)
        response.set_signed_cookie(
            PENDING_COOKIE,
            str(appointment.pk),
            salt=PENDING_SALT,
            max_age=PENDING_MAX_AGE,
            secure=settings.PUBLIC_HTTPS,
            httponly=True,
            samesite="Lax",
        )
        return response
    if not permissions.may_conduct(request.user, appointment):
        form = JoinForm(request.POST)
        form.is_valid()
        form.add_error(None, _("This access code is for the appointment's doctor only."))
        return _render_join(request, form, status=403)
    return _doctor_joined(request, appointment)


def _doctor_joined(request: HttpRequest, appointment: Appointment) -> HttpResponse:
    response = redirect("call")
    joinsession.issue_join_cookie(
        response,
        appointment=appointment,
        role=Membership.Role.DOCTOR,
        display_name=services.display_name_of(request.user),
        user_id=request.user.pk,
    )
    response.delete_cookie(PENDING_COOKIE, samesite="Lax")
    return response


def _pending_doctor_join(request: HttpRequest) -> HttpResponse | None:
    """Finish a doctor's join that was interrupted by the login, if it is theirs."""
    if PENDING_COOKIE not in request.COOKIES or not _logged_in(request):
        return None
    try:
        appointment_id = request.get_signed_cookie(
            PENDING_COOKIE, salt=PENDING_SALT, max_age=PENDING_MAX_AGE
        )
    except (KeyError, signing.BadSignature):
        appointment_id = None
    appointment = services.valid_appointment(appointment_id) if appointment_id else None
    if appointment is not None and permissions.may_conduct(request.user, appointment):
        return _doctor_joined(request, appointment)
    response = _render_join(request, JoinForm())
    response.delete_cookie(PENDING_COOKIE, samesite="Lax")
    return response


def _logged_in(request: HttpRequest) -> bool:
    user = request.user
    if not user.is_authenticated:
        return False
    # With mandatory 2FA a password-only login does not count (django-otp's middleware).
    return not settings.OTP_REQUIRED or user.is_verified()


def _render_join(request: HttpRequest, form: JoinForm, status: int = 200) -> HttpResponse:
    return render(request, "consultations/join.html", {"form": form}, status=status)


@never_cache
@require_safe
def call(request: HttpRequest) -> HttpResponse:
    join_data = joinsession.read_join(request)
    check = joinsession.check_join(join_data, request.user)
    if not check.ok:
        response = redirect("join")
        joinsession.clear_join_cookie(response)
        return response
    context = {
        "role": join_data.role,
        "display_name": join_data.display_name,
        "appointment": check.appointment,
        "ws_path": "/ws/call/",
        # Puts every participant of this appointment on one server process (nginx hashes it).
        "ws_query": affinity.socket_query(check.appointment.pk),
        # Close codes, error codes, message types for the JavaScript (one home, no copy).
        "codes": callcodes.table(),
        # Relay-only ICE for a patient who asked for it, or whose practice's default it is.
        "relay_only": not join_data.is_doctor
        and (join_data.hide_ip or check.appointment.practice.hide_patient_ip),
    }
    return render(request, "consultations/call.html", context)
