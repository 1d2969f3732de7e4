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
    """Username, password and — where needed — the TOTP code, checked in one step."""

    otp_token = OneTimeCodeField(
        required=False,
        help_text=_("The six-digit code from your authenticator app."),
    )
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": THROTTLED,
        "otp_invalid": _("The one-time code is missing or wrong."),
    }

    needs_enrollment = False

    def clean(self):
        keys = twofactor.login_throttle_keys(self.request, self.cleaned_data.get("username"))
        if twofactor.login_blocked(keys):
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            super().clean()  # password, active staff account
            self._check_second_factor()
        except ValidationError:
            twofactor.record_login_failure(keys)
            raise
        twofactor.record_login_success(keys)
        return self.cleaned_data

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
            if next_url:
                target += "?" + urlencode({REDIRECT_FIELD_NAME: next_url})
            return HttpResponseRedirect(target)
        return super().form_valid(form)


class EnrollForm(forms.Form):
    otp_token = OneTimeCodeField(required=True)


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
        """Show the new device's QR code and secret; confirm it with a first code."""
        user = twofactor.enrolling_user(request)
        if user is None:
            return redirect("admin:login")
        keys = twofactor.login_throttle_keys(request, user.get_username())
        device = twofactor.pending_device(user)
        form = EnrollForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if twofactor.login_blocked(keys):
                form.add_error(None, THROTTLED)
            elif twofactor.confirm_enrollment(
                request, user, device, form.cleaned_data["otp_token"]
            ):
                twofactor.record_login_success(keys)
                return HttpResponseRedirect(self._next_url(request))
            else:
                twofactor.record_login_failure(keys)
                form.add_error("otp_token", _("The one-time code is missing or wrong."))
        context = {
            **self.each_context(request),
            "title": _("Set up two-factor authentication"),
            "subtitle": None,
            "form": form,
            "enroll_user": user,
            "qr_data_uri": twofactor.qr_data_uri(device),
            "secret": twofactor.secret_for_display(device),
            "next": request.GET.get(REDIRECT_FIELD_NAME, ""),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/rc_otp_enroll.html", context)

    def _next_url(self, request: HttpRequest) -> str:
        next_url = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME)
        if next_url and url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return next_url
        return reverse("admin:index", current_app=self.name)
