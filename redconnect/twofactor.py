"""Second factor (TOTP, django-otp) for admin logins: policy, enrollment, lock-out.

Policy: with `OTP_REQUIRED` (an https `PUBLIC_URL`) every admin login needs a TOTP code;
a user without a device must enroll one before reaching the admin. On the embedded
http default the second factor is optional — but a user who has a confirmed device
always needs it.

The first device needs a one-time enrolment code from a superuser besides the password
(see "Enrollment codes"). Enrollment after the password check does *not* log the user
in: the session only remembers, for a few minutes, whose enrollment is pending. So no
session exists that passed the password but not the second factor (a doctor's session
also opens calls).
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import datetime, timedelta
from urllib.parse import urlencode

import segno
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth.signals import user_login_failed
from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from consultations import permissions

PENDING_SESSION_KEY = "rc_otp_enroll"
PENDING_MAX_AGE = 600  # seconds to scan the QR code and confirm
DEVICE_NAME = "Authenticator"
_BACKEND = "django.contrib.auth.backends.ModelBackend"


def otp_required() -> bool:
    return bool(getattr(settings, "OTP_REQUIRED", False))


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).first()


def second_factor_satisfied(user) -> bool:
    """Whether an authenticated user's session may use the admin."""
    if getattr(user, "is_verified", None) and user.is_verified():
        return True
    return not otp_required() and not user_has_device(user, confirmed=True)


def verify(device: TOTPDevice, token: str | None) -> bool:
    """A six-digit code of the device; django-otp refuses reuse and backs off on failures."""
    token = (token or "").replace(" ", "")
    if not (token.isdigit() and len(token) == device.digits):
        return False
    return device.verify_token(token)


# --- Lock-out (django-axes) -------------------------------------------------------------
# Failed logins are counted per (account, client) by django-axes (settings AXES_*): after
# AXES_FAILURE_LIMIT failures the client gets no login for that account for
# AXES_COOLOFF_TIME, even with the right password; other clients are unaffected. Clients
# are the rate limiter's keyed pseudonyms (redconnect.ratelimit.axes_client), never
# addresses. A wrong one-time code counts like a wrong password.


def axes_username(request: HttpRequest, credentials: dict | None) -> str | None:
    """`AXES_USERNAME_CALLABLE`: the account as typed, case-insensitive."""
    username = (credentials or {}).get("username")
    if username is None and request is not None:
        username = request.POST.get("username")
    return username.strip().lower() if isinstance(username, str) else None


def login_locked(request: HttpRequest, username: str | None) -> bool:
    from axes.handlers.proxy import AxesProxyHandler

    return AxesProxyHandler.is_locked(request, {"username": username or ""})


def record_login_failure(request: HttpRequest, username: str | None) -> None:
    """A failure axes did not see through `authenticate()` (a wrong one-time code)."""
    user_login_failed.send(
        sender=__name__, credentials={"username": username or ""}, request=request
    )


def lockout_response(request, original_response=None, credentials=None):
    """`AXES_LOCKOUT_CALLABLE`: the login page with its German error, as 429."""
    from django.http import HttpResponse

    if original_response is None:
        return HttpResponse(status=429)
    original_response.status_code = 429
    return original_response


# --- Enrollment codes ---------------------------------------------------------------------
# The first device needs more than the password: a one-time enrolment code that a
# superuser issues (`manage.py issue_enrollment`, or the action in the user admin), valid
# for ENROLLMENT_MAX_AGE. The code is a signed token, so nothing is stored for it: it
# names the user and a digest of the account's state (password hash, confirmed devices),
# and a completed enrolment changes that state. Its nonce is also remembered as used in
# the cache until the code would have expired anyway. The QR code and secret are shown
# only after the code has been accepted, so a password alone never reveals a secret.

ENROLLMENT_MAX_AGE = 24 * 3600
ENROLLMENT_SALT = "redconnect.twofactor.enrollment"
AUTHORISED_SESSION_KEY = "rc_otp_enroll_ok"


def _account_state(user) -> str:
    devices = TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("pk")
    raw = f"{user.pk}|{user.password}|{','.join(str(d.pk) for d in devices)}"
    return salted_hmac(ENROLLMENT_SALT, raw).hexdigest()[:32]


def issue_enrollment_code(user) -> tuple[str, datetime]:
    """A new enrolment code for `user` and the time it expires."""
    payload = {"u": user.pk, "s": _account_state(user), "n": secrets.token_urlsafe(9)}
    code = signing.dumps(payload, salt=ENROLLMENT_SALT, compress=True)
    return code, timezone.now() + timedelta(seconds=ENROLLMENT_MAX_AGE)


def enrollment_link(code: str) -> str:
    return f"{settings.PUBLIC_URL}{reverse('admin:otp_enroll')}?{urlencode({'code': code})}"


def _used_key(nonce: str) -> str:
    return "rc:otp-enroll-used:" + salted_hmac(ENROLLMENT_SALT, nonce).hexdigest()[:32]


def check_enrollment_code(user, code: str) -> str | None:
    """The code's nonce if it is a valid, unused code for this user, else None."""
    try:
        payload = signing.loads(
            (code or "").strip(), salt=ENROLLMENT_SALT, max_age=ENROLLMENT_MAX_AGE
        )
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("u") != user.pk:
        return None
    if not hmac.compare_digest(str(payload.get("s")), _account_state(user)):
        return None
    nonce = str(payload.get("n"))
    if cache.get(_used_key(nonce)):
        return None
    return nonce


def accept_enrollment_code(request: HttpRequest, user, code: str) -> bool:
    """Let this session enrol `user` (for PENDING_MAX_AGE) if the code is valid.

    Unconfirmed devices from earlier attempts are dropped, so the secret shown next is
    new and was never shown to anyone before the code was presented.
    """
    nonce = check_enrollment_code(user, code)
    if nonce is None:
        return False
    TOTPDevice.objects.devices_for_user(user, confirmed=False).delete()
    request.session[AUTHORISED_SESSION_KEY] = {"user": user.pk, "n": nonce, "at": time.time()}
    return True


def enrollment_authorised(request: HttpRequest, user) -> bool:
    granted = request.session.get(AUTHORISED_SESSION_KEY)
    return (
        isinstance(granted, dict)
        and granted.get("user") == user.pk
        and time.time() - granted.get("at", 0) <= PENDING_MAX_AGE
        and not cache.get(_used_key(str(granted.get("n"))))
    )


def _spend_enrollment_code(request: HttpRequest) -> None:
    granted = request.session.pop(AUTHORISED_SESSION_KEY, None) or {}
    cache.set(_used_key(str(granted.get("n"))), True, timeout=ENROLLMENT_MAX_AGE)


# --- Enrollment -------------------------------------------------------------------------


def start_enrollment(request: HttpRequest, user) -> None:
    """Remember, without logging in, that this session passed the password check."""
    request.session.cycle_key()
    request.session[PENDING_SESSION_KEY] = {"user": user.pk, "at": time.time()}


def enrolling_user(request: HttpRequest):
    """The user who may enroll a device in this session, or None.

    Either the pending user of a password check (within PENDING_MAX_AGE), or a
    logged-in admin user without a confirmed device (voluntary enrollment on http).
    """
    user = request.user
    if user.is_authenticated:
        if permissions.is_admin_user(user) and not user_has_device(user, confirmed=True):
            return user
        return None
    pending = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_MAX_AGE:
        return None
    user = get_user_model().objects.filter(pk=pending.get("user")).first()
    if user is None or not (user.is_active and user.is_staff):  # not yet authenticated
        return None
    if user_has_device(user, confirmed=True):
        return None  # enrolled meanwhile: log in with the code instead
    return user


def pending_device(user) -> TOTPDevice:
    """The unconfirmed device being enrolled; the same one until it is confirmed."""
    device = TOTPDevice.objects.devices_for_user(user, confirmed=False).order_by("pk").last()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


def confirm_enrollment(request: HttpRequest, user, device: TOTPDevice, token: str) -> bool:
    """Confirm the device with a code from it; then the session is logged in and verified."""
    if not verify(device, token):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    # Other unconfirmed attempts (e.g. from an abandoned earlier enrollment) are void.
    TOTPDevice.objects.devices_for_user(user, confirmed=False).delete()
    _spend_enrollment_code(request)
    request.session.pop(PENDING_SESSION_KEY, None)
    if request.user.is_authenticated:
        otp_login(request, device)
    else:
        user.otp_device = device  # django-otp marks the session verified on login
        auth_login(request, user, backend=_BACKEND)
    return True


def secret_for_display(device: TOTPDevice) -> str:
    """The base32 secret in groups of four, for typing into an app by hand."""
    from base64 import b32encode

    secret = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// URI as an SVG QR code in a data: URI (CSP allows img-src data:)."""
    return segno.make(device.config_url, error="m").svg_data_uri(scale=5, border=2)
