"""The admin site with a TOTP second factor (policy: `redconnect.twofactor`).

Installed as Django's default site through `redconnect.apps.RedConnectAdminConfig`, so every
`@admin.register` and `admin.site` keeps working unchanged.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from redconnect import twofactor

THROTTLED = _("Too many failed login attempts. Please wait a few minutes and try again.")
# One message for a wrong password and a wrong or missing one-time code (no oracle).
LOGIN_FAILED = _(
    "The username, password or one-time code is not correct. Note that all fields may be "
    "case-sensitive."
)


class OneTimeCodeField(forms.CharField):
    def __init__(self, **kwargs):
        super().__init__(
            label=_("One-time code"),
            max_length=16,
            widget=forms.TextInput(
                attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}
            ),
            **kwargs,
        )


class TwoFactorLoginForm(AdminAuthenticationForm):
    """Username, password and — where needed — the TOTP code, checked in one step.

    A wrong password and a wrong one-time code give the same error: the page must not
    tell whoever guesses that the password was right. Both count as failures for the
    (account, client) lock-out (redconnect.twofactor, django-axes).
    """

    otp_token = OneTimeCodeField(
        required=False,
        help_text=_("The six-digit code from your authenticator app."),
    )
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": THROTTLED,
        "invalid_login": LOGIN_FAILED,
        "otp_invalid": LOGIN_FAILED,
    }

    needs_enrollment = False

    def clean(self):
        username = self.cleaned_data.get("username")
        self._raise_throttled_if_locked(username)
        try:
            super().clean()  # password (axes counts a failure), active staff account
        except ValidationError:
            self._raise_throttled_if_locked(username)
            raise
        try:
            self._check_second_factor()
        except ValidationError:
            twofactor.record_login_failure(self.request, username)
            self._raise_throttled_if_locked(username)
            raise
        return self.cleaned_data

    def _raise_throttled_if_locked(self, username) -> None:
        if twofactor.login_locked(self.request, username):
            self.request.axes_locked_out = True  # AxesMiddleware answers 429
            raise ValidationError(self.error_messages["throttled"], code="throttled")

    def get_invalid_login_error(self):
        return ValidationError(self.error_messages["invalid_login"], code="invalid_login")

    def _check_second_factor(self) -> None:
        user = self.get_user()
        if user is None:  # username or password missing: the field errors say so
            return
        device = twofactor.confirmed_device(user)
        if device is None:
            self.needs_enrollment = twofactor.otp_required()
            return
        if not twofactor.verify(device, self.cleaned_data.get("otp_token")):
            raise ValidationError(self.error_messages["otp_invalid"], code="otp_invalid")
        user.otp_device = device  # django-otp marks the session verified on login


class TwoFactorLoginView(LoginView):
    def form_valid(self, form):
        if form.needs_enrollment:
            twofactor.start_enrollment(self.request, form.get_user())
            target = reverse("admin:otp_enroll")
            next_url = self.get_redirect_url()
            if next_url.startswith(target + "?"):
                target = next_url  # back to the enrolment link that sent us here
            elif next_url:
                target += "?" + urlencode({REDIRECT_FIELD_NAME: next_url})
            return HttpResponseRedirect(target)
        return super().form_valid(form)


class EnrollForm(forms.Form):
    otp_token = OneTimeCodeField(required=True)


ENROLLMENT_CODE_INVALID = _(
    "The enrolment code is invalid, used or expired. Ask an administrator for a new one."
)


class EnrollmentCodeForm(forms.Form):
    enrollment_code = forms.CharField(
        label=_("Enrolment code"),
        max_length=400,
        widget=forms.TextInput(attrs={"autocomplete": "off", "size": 40}),
        help_text=_("The code or link you received from your administrator."),
    )

    def clean_enrollment_code(self):
        # A pasted link works as well as the bare code.
        value = self.cleaned_data["enrollment_code"].strip()
        if "code=" in value:
            from urllib.parse import parse_qs, urlsplit

            value = (parse_qs(urlsplit(value).query).get("code") or [""])[0]
        return value


class RedConnectAdminSite(AdminSite):
    site_header = _("RED connect administration")
    site_title = _("RED connect")
    index_title = _("Practice administration")
    login_form = TwoFactorLoginForm
    login_template = "admin/rc_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and twofactor.second_factor_satisfied(request.user)

    def get_urls(self):
        return [
            path("2fa/enroll/", self.enroll_view, name="otp_enroll"),
            *super().get_urls(),
        ]

    @method_decorator(never_cache)
    @method_decorator(csrf_protect)
    @method_decorator(login_not_required)
    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        """Django's admin login, with the two-factor form and the enrollment redirect."""
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        if (
            request.method == "GET"
            and request.user.is_authenticated
            and twofactor.otp_required()
            and twofactor.enrolling_user(request)
        ):
            # Logged in before 2FA became mandatory: enroll now instead of a dead end.
            return HttpResponseRedirect(reverse("admin:otp_enroll", current_app=self.name))
        context = {
            **self.each_context(request),
            "title": _("Log in"),
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
            "otp_required": twofactor.otp_required(),
        }
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=self.name)
        context.update(extra_context or {})
        request.current_app = self.name
        return TwoFactorLoginView.as_view(
            extra_context=context,
            authentication_form=self.login_form,
            template_name=self.login_template,
        )(request)

    @method_decorator(never_cache)
    @method_decorator(csrf_protect)
    @method_decorator(login_not_required)
    def enroll_view(self, request: HttpRequest) -> HttpResponse:
        """Step 1: the superuser's enrolment code (from the link or typed). Step 2: the new
        device's QR code and secret, confirmed with a first code from the app."""
        user = twofactor.enrolling_user(request)
        if user is None:
            if request.GET.get("code"):
                # The link was opened first: log in with the password, then come back.
                login = reverse("admin:login", current_app=self.name)
                return HttpResponseRedirect(
                    f"{login}?{urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})}"
                )
            return redirect("admin:login")
        if not twofactor.enrollment_authorised(request, user):
            return self._enrollment_code_step(request, user)
        device = twofactor.pending_device(user)
        form = EnrollForm(request.POST or None)
        username = user.get_username()
        if request.method == "POST" and form.is_valid():
            if twofactor.login_locked(request, username):
                form.add_error(None, THROTTLED)
            elif twofactor.confirm_enrollment(
                request, user, device, form.cleaned_data["otp_token"]
            ):
                return HttpResponseRedirect(self._next_url(request))
            else:
                twofactor.record_login_failure(request, username)
                form.add_error("otp_token", _("The one-time code is missing or wrong."))
        context = {
            **self._enroll_context(request, user),
            "form": form,
            "qr_data_uri": twofactor.qr_data_uri(device),
            "secret": twofactor.secret_for_display(device),
        }
        return TemplateResponse(request, "admin/rc_otp_enroll.html", context)

    def _enrollment_code_step(self, request: HttpRequest, user) -> HttpResponse:
        form = EnrollmentCodeForm(request.POST or None)
        code = request.GET.get("code") if request.method == "GET" else None
        if form.is_valid():
            code = form.cleaned_data["enrollment_code"]
        error = None
        if code:
            username = user.get_username()
            if twofactor.login_locked(request, username):
                error = THROTTLED
            elif twofactor.accept_enrollment_code(request, user, code):
                # Reload without the code in the address bar (and browser history).
                target = reverse("admin:otp_enroll", current_app=self.name)
                next_url = request.GET.get(REDIRECT_FIELD_NAME)
                if next_url:
                    target += "?" + urlencode({REDIRECT_FIELD_NAME: next_url})
                return HttpResponseRedirect(target)
            else:
                twofactor.record_login_failure(request, username)
                error = ENROLLMENT_CODE_INVALID
        context = {
            **self._enroll_context(request, user),
            "code_form": EnrollmentCodeForm() if error else form,
            "code_error": error,
        }
        return TemplateResponse(request, "admin/rc_otp_enroll.html", context)

    def _enroll_context(self, request: HttpRequest, user) -> dict:
        request.current_app = self.name
        return {
            **self.each_context(request),
            "title": _("Set up two-factor authentication"),
            "subtitle": None,
            "enroll_user": user,
            "next": request.GET.get(REDIRECT_FIELD_NAME, ""),
        }

    def _next_url(self, request: HttpRequest) -> str:
        next_url = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME)
        if next_url and url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return next_url
        return reverse("admin:index", current_app=self.name)
