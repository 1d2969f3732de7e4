"""Second factor (TOTP, django-otp) for admin logins: policy, enrollment, throttling.

Policy: with `OTP_REQUIRED` (an https `PUBLIC_URL`) every admin login needs a TOTP code;
a user without a device must enroll one before reaching the admin. On the embedded
http default the second factor is optional — but a user who has a confirmed device
always needs it.

Enrollment after a password-only check does *not* log the user in: the session only
remembers, for a few minutes, whose enrollment is pending. So no session exists that
passed the password but not the second factor (a doctor's session also opens calls).
"""

from __future__ import annotations

import time

import segno
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from redconnect import throttle

PENDING_SESSION_KEY = "rc_otp_enroll"
PENDING_MAX_AGE = 600  # seconds to scan the QR code and confirm
DEVICE_NAME = "Authenticator"
# Failed logins (password or code) before a lock-out of LOGIN_FAILURE_WINDOW seconds.
LOGIN_FAILURE_LIMIT_USER = 5
LOGIN_FAILURE_LIMIT_CLIENT = 20
LOGIN_FAILURE_WINDOW = 900
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


# --- Throttling -------------------------------------------------------------------------


def login_throttle_keys(request: HttpRequest, username: str) -> dict[str, str]:
    return {
        "login-user": throttle.subject_key(username or "-"),
        "login-client": throttle.client_key(request),
    }


def login_blocked(keys: dict[str, str]) -> bool:
    return throttle.is_blocked(
        "login-user", keys["login-user"], LOGIN_FAILURE_LIMIT_USER, LOGIN_FAILURE_WINDOW
    ) or throttle.is_blocked(
        "login-client", keys["login-client"], LOGIN_FAILURE_LIMIT_CLIENT, LOGIN_FAILURE_WINDOW
    )


def record_login_failure(keys: dict[str, str]) -> None:
    for scope, key in keys.items():
        throttle.record_failure(scope, key, LOGIN_FAILURE_WINDOW)


def record_login_success(keys: dict[str, str]) -> None:
    # Only the account's counter: a client's counter must not be reset by logging in
    # to one account while guessing others.
    throttle.reset("login-user", keys["login-user"])


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
        if user.is_active and user.is_staff and not user_has_device(user, confirmed=True):
            return user
        return None
    pending = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_MAX_AGE:
        return None
    user = get_user_model().objects.filter(pk=pending.get("user")).first()
    if user is None or not (user.is_active and user.is_staff):
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
