"""The public join form: name, access code, consent."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from consultations.joinsession import MAX_NAME_LENGTH

# One message for unknown, malformed, expired and cancelled codes alike: the form must
# not tell someone guessing codes which of these it was.
INVALID_CODE = _("This access code is invalid or has expired. Please check your entry.")


class JoinForm(forms.Form):
    # Name and consent are required for patients only: a doctor's name comes from the
    # account. The view decides once it knows the code's role (`require_patient_fields`).
    name = forms.CharField(
        label=_("Your full name"),
        max_length=MAX_NAME_LENGTH,
        required=False,
        strip=True,
        help_text=_("The doctor sees this name when you are waiting to be admitted."),
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
    )
    code = forms.CharField(
        label=_("Access code"),
        max_length=40,
        strip=True,
        help_text=_("The twelve characters from your appointment slip, e.g. 7KQ2-M9XD-4TNF."),
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "inputmode": "text",
            }
        ),
    )
    consent = forms.BooleanField(
        label=_(
            "I have read the privacy notice and agree that my name and connection data "
            "are processed for this video consultation."
        ),
        required=False,
    )
    # Relay-only mode: media then always go through the TURN relay, so the practice's
    # browser never learns the patient's address (a practice can make it the default).
    hide_ip = forms.BooleanField(
        label=_("Hide my IP address from the practice"),
        help_text=_(
            "Picture and sound then always go through our relay server in the EU. "
            "The connection may be a little slower."
        ),
        required=False,
    )

    def reject_code(self) -> None:
        self.add_error(None, INVALID_CODE)

    def require_patient_fields(self) -> bool:
        """Patients must give a name (not just blanks) and consent; False if they did not."""
        ok = True
        if not self.cleaned_data.get("name"):
            self.add_error("name", _("Please enter your full name."))
            ok = False
        if not self.cleaned_data.get("consent"):
            self.add_error("consent", _("Please agree to the privacy notice to continue."))
            ok = False
        return ok
