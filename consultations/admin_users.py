"""The user admin with one extra action for superusers: issue 2FA enrolment links.

A new admin user's first authenticator needs a one-time enrolment code besides the
password (redconnect.twofactor); the superuser hands the link over, e.g. in person.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.utils.translation import gettext_lazy as _

from redconnect import twofactor

User = get_user_model()


class EnrollingUserAdmin(UserAdmin):
    actions = [*(UserAdmin.actions or []), "issue_enrollment_links"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("issue_enrollment_links", None)
        return actions

    @admin.action(description=_("Issue a link to set up two-factor authentication (24 h)"))
    def issue_enrollment_links(self, request, queryset):
        if not request.user.is_superuser:
            return None
        links = []
        for user in queryset.filter(is_active=True, is_staff=True):
            code, expires_at = twofactor.issue_enrollment_code(user)
            links.append(
                {"user": user, "link": twofactor.enrollment_link(code), "expires_at": expires_at}
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Enrolment links"),
            "links": links,
        }
        response = TemplateResponse(request, "admin/rc_enrollment_links.html", context)
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True)
        return response


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, EnrollingUserAdmin)
