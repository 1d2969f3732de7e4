"""Admin for practice staff and doctors: appointments scoped to their own practices.

Permissions come from practice memberships, not from Django's model permissions:
staff and doctors organise appointments of their practices, auditors see none, and
only superusers manage practices, memberships and API keys.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from consultations import permissions, services
from consultations.models import MAX_GUESTS, ApiKey, Appointment, Membership, Practice

ORGANISER_ROLES = permissions.ORGANISER_ROLES


def organised_practices(request):
    return permissions.organised_practices(request.user)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Practice)
class PracticeAdmin(admin.ModelAdmin):
    list_display = ["name", "hide_patient_ip", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def has_module_permission(self, request):
        return request.user.is_superuser


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "practice", "created_at"]
    list_select_related = ["practice"]
    readonly_fields = ["prefix", "created_at"]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_add_permission(self, request):
        # Keys are created with `manage.py create_api_key`, which shows the key once.
        return False


class AppointmentForm(forms.ModelForm):
    # Declared here so that the admin keeps the browser's date-time picker, which needs
    # no JavaScript of ours and works on phones.
    scheduled_at = forms.DateTimeField(
        label=_("scheduled for"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    guests = forms.IntegerField(
        label=_("Number of guests"),
        min_value=0,
        max_value=MAX_GUESTS,
        initial=0,
        required=False,
        help_text=_(
            "Support persons, carers or interpreters joining with their own code "
            "(at most %(max)d; at most nine people in one call)."
        )
        % {"max": MAX_GUESTS},
    )

    # The practice the appointment belongs to, chosen explicitly: a doctor may work in
    # several practices, and only the creating practice may later see or cancel it.
    # Required only where the doctor works in more than one of the organiser's practices.
    practice = forms.ModelChoiceField(
        label=_("practice"),
        queryset=Practice.objects.none(),
        required=False,
        help_text=_("Needed if the doctor works in more than one of your practices."),
    )

    # Not a model field: used for one invitation e-mail and stored nowhere (board.invitations).
    invite_email = forms.EmailField(
        label=_("Patient's e-mail address (optional)"),
        required=False,
        help_text=_(
            "We send one invitation with the link and a calendar entry. The address is not stored."
        ),
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    guest_emails = forms.CharField(
        label=_("Guests' e-mail addresses (optional)"),
        required=False,
        help_text=_(
            "One address per line, in the order of the guest codes; each guest gets one "
            "invitation with their own code. The addresses are not stored."
        ),
        widget=forms.Textarea(attrs={"autocomplete": "off", "rows": 3}),
    )

    class Meta:
        model = Appointment
        fields = ["doctor", "scheduled_at"]

    def __init__(self, *args, practices=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.practices = practices if practices is not None else Practice.objects.none()
        if "doctor" in self.fields:  # absent on the read-only detail page
            self.fields["doctor"].queryset = services.doctors_of(practices)
        if "practice" in self.fields:
            self.fields["practice"].queryset = self.practices
            if len(self.practices) == 1:
                self.fields["practice"].initial = self.practices[0]
        # `_state.adding`, not `pk`: the UUID primary key is set before the first save.
        if not self.is_bound and self.instance._state.adding:
            self.initial.setdefault(
                "scheduled_at", timezone.localtime().replace(second=0, microsecond=0)
            )

    def clean(self):
        cleaned = super().clean()
        doctor = cleaned.get("doctor")
        if doctor is not None and "practice" in self.fields:
            try:
                cleaned["practice"] = services.appointment_practice(
                    doctor, cleaned.get("practice"), self.practices
                )
            except services.AppointmentError as error:
                self.add_error("practice", str(error))
        addresses, guests = cleaned.get("guest_emails") or [], cleaned.get("guests") or 0
        if len(addresses) > guests:
            self.add_error(
                "guest_emails",
                _("More addresses than guests: %(addresses)d addresses for %(guests)d guests.")
                % {"addresses": len(addresses), "guests": guests},
            )
        return cleaned

    def clean_scheduled_at(self):
        scheduled_at = self.cleaned_data["scheduled_at"]
        try:
            services.check_lead_time(scheduled_at)
        except services.AppointmentError as error:
            raise forms.ValidationError(str(error)) from None
        return scheduled_at

    def clean_guests(self):
        return self.cleaned_data.get("guests") or 0

    def clean_guest_emails(self) -> list[str]:
        lines = (self.cleaned_data.get("guest_emails") or "").replace(",", "\n").splitlines()
        addresses = [line.strip() for line in lines if line.strip()]
        field = forms.EmailField()
        for address in addresses:
            field.clean(address)  # the German "valid e-mail address" error, as for the patient
        return addresses


@admin.register(Appointment)
class AppointmentAdmin(admin.ModelAdmin):
    form = AppointmentForm
    list_display = ["scheduled_at", "doctor", "practice", "status_badge", "expires_at"]
    list_select_related = ["doctor", "practice"]
    list_filter = [("practice", admin.RelatedOnlyFieldListFilter)]
    date_hierarchy = "scheduled_at"
    actions = ["cancel_selected", "reissue_codes", "add_guest_code"]
    codes_template = "admin/consultations/appointment/codes.html"
    guest_code_template = "admin/consultations/appointment/add_guest_code.html"

    # --- scope ------------------------------------------------------------------------

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(practice__in=organised_practices(request))

    def _organises(self, request, obj=None) -> bool:
        return permissions.may_organise(request.user, obj.practice_id if obj else None)

    def has_module_permission(self, request):
        return self._organises(request)

    def has_view_permission(self, request, obj=None):
        return self._organises(request, obj)

    def has_add_permission(self, request):
        return self._organises(request)

    def has_change_permission(self, request, obj=None):
        # Appointments are never edited: times and codes change only through actions.
        return False

    def has_delete_permission(self, request, obj=None):
        # Deletion is the purge job's; staff cancel instead.
        return False

    def get_fields(self, request, obj=None):
        # The number of guests is asked when creating; guest codes are added by an action.
        if obj is None:
            # The invitations belong to creation only; the detail page has nothing to show.
            return ["doctor", "scheduled_at", "guests", "practice", "invite_email", "guest_emails"]
        return ["doctor", "scheduled_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        practices = organised_practices(request)

        class ScopedForm(form):
            def __init__(self, *args, **inner):
                super().__init__(*args, practices=practices, **inner)

        return ScopedForm

    # --- list -------------------------------------------------------------------------

    @admin.display(description=_("status"))
    def status_badge(self, obj: Appointment):
        status = obj.status()
        return format_html('<span class="rc-status rc-status-{}">{}</span>', status, status.label)

    # --- creation: codes shown exactly once -------------------------------------------

    def save_model(self, request, obj, form, change):
        issued = services.create_appointment(
            doctor=form.cleaned_data["doctor"],
            scheduled_at=form.cleaned_data["scheduled_at"],
            practice=form.cleaned_data["practice"],
            guests=form.cleaned_data.get("guests") or 0,
        )
        obj.pk = issued.appointment.pk  # the admin's history entry names the real record
        form.instance = issued.appointment
        request._issued_codes = [issued]  # rendered in response_add, never stored
        self._send_invitations(
            request,
            issued,
            form.cleaned_data.get("invite_email"),
            form.cleaned_data.get("guest_emails") or [],
        )

    def _send_invitations(self, request, issued, address, guest_addresses) -> None:
        """One e-mail per address given: the patient's code, then guest code 1, 2, …"""
        from board.invitations import send_invitation  # the board app owns invitations

        wanted = [(address, issued.patient_code, services.PATIENT)] if address else []
        wanted += [
            (guest_address, code, services.GUEST)
            for guest_address, code in zip(guest_addresses, issued.guest_codes, strict=False)
        ]
        if not wanted:
            return
        sent = sum(
            send_invitation(issued.appointment, code=code, role=role, address=to)
            for to, code, role in wanted
        )
        if sent == len(wanted):
            message = (
                _("The invitation e-mail has been sent.")
                if sent == 1
                else _("All %(count)d invitation e-mails have been sent.") % {"count": sent}
            )
            self.message_user(request, message, messages.SUCCESS)
        elif len(wanted) == 1:
            self.message_user(
                request,
                _("The invitation e-mail could not be sent. Please pass the code on another way."),
                messages.ERROR,
            )
        else:
            failed = len(wanted) - sent
            self.message_user(
                request,
                ngettext(
                    "%(failed)d of %(total)d invitation e-mails could not be sent. Please pass "
                    "that code on another way.",
                    "%(failed)d of %(total)d invitation e-mails could not be sent. Please pass "
                    "those codes on another way.",
                    failed,
                )
                % {"failed": failed, "total": len(wanted)},
                messages.ERROR,
            )

    def save_related(self, request, form, formsets, change):
        pass  # nothing related to save; the appointment was created by the service

    def response_add(self, request, obj, post_url_continue=None):
        return self.render_codes(request, request._issued_codes)

    def render_codes(self, request, issued_list):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Access codes"),
            "issued_list": issued_list,
            "join_url": services.join_url(),
        }
        response = TemplateResponse(request, self.codes_template, context)
        # The clear codes must not linger in any cache.
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True)
        return response

    # --- actions ----------------------------------------------------------------------

    @admin.action(description=_("Cancel selected appointments"))
    def cancel_selected(self, request, queryset):
        cancelled = sum(services.cancel_appointment(appointment) for appointment in queryset)
        self.message_user(
            request,
            ngettext(
                "%(count)d appointment cancelled; its codes no longer work.",
                "%(count)d appointments cancelled; their codes no longer work.",
                cancelled,
            )
            % {"count": cancelled},
            messages.SUCCESS,
        )

    @admin.action(description=_("Issue new codes (old codes stop working)"))
    def reissue_codes(self, request, queryset):
        issued_list, refused = [], 0
        for appointment in queryset.select_related("doctor", "practice"):
            if appointment.is_valid():
                issued_list.append(services.reissue_codes(appointment))
            else:
                refused += 1
        if refused:
            self.message_user(
                request,
                _("Expired or cancelled appointments get no new codes."),
                messages.WARNING,
            )
        if not issued_list:
            return None
        return self.render_codes(request, issued_list)

    @admin.action(description=_("Add a guest code"))
    def add_guest_code(self, request, queryset):
        """One more guest code per selected appointment, shown once with its own slip.

        A confirmation page comes first: with one appointment selected it also asks for
        the guest's e-mail address (optional), so the new code can go out as an invitation
        like the codes issued with the appointment.
        """
        form = GuestInviteForm(request.POST if "confirm" in request.POST else None)
        if not form.is_bound or not form.is_valid():
            return self._confirm_guest_code(request, queryset, form)
        address = form.cleaned_data["email"] if queryset.count() == 1 else ""
        issued_list, refused = [], 0
        for appointment in queryset.select_related("doctor", "practice"):
            try:
                code = services.add_guest_code(appointment)
            except services.AppointmentError:
                refused += 1
                continue
            issued = services.IssuedAppointment(appointment, "", "", (code,))
            issued_list.append(issued)
            if address:
                self._send_invitations(request, issued, None, [address])
        if refused:
            self.message_user(
                request,
                _(
                    "Expired or cancelled appointments and appointments with %(max)d guests "
                    "get no further guest code."
                )
                % {"max": MAX_GUESTS},
                messages.WARNING,
            )
        if not issued_list:
            return None
        return self.render_codes(request, issued_list)

    def _confirm_guest_code(self, request, queryset, form):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Add a guest code"),
            "appointments": list(queryset.select_related("doctor")),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, self.guest_code_template, context)


class GuestInviteForm(forms.Form):
    """The confirmation of "Add a guest code": the guest's address, for one e-mail only."""

    email = forms.EmailField(
        label=_("Guest's e-mail address (optional)"),
        required=False,
        help_text=_(
            "We send one invitation with the link, the new guest code and a calendar entry. "
            "The address is not stored."
        ),
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )


# The user admin with the superuser's "issue enrolment link" action.
from consultations import admin_users  # noqa: E402, F401
