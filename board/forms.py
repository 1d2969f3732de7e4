from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from board.live import NOTICE_MAX_LENGTH

# Offered as one-click buttons on the board; free text is possible as well.
PRESET_NOTICES = (
    _("The consultation will begin in about 5 minutes."),
    _("The consultation will begin in about 10 minutes."),
    _("The consultation will begin in about 20 minutes."),
    _("Thank you for your patience: the doctor will be with you shortly."),
)


class NoticeForm(forms.Form):
    text = forms.CharField(
        label=_("Message to the waiting room"),
        max_length=NOTICE_MAX_LENGTH,
        strip=True,
        error_messages={
            "required": _("Please enter a message."),
            "max_length": _("The message may have at most %(limit_value)d characters."),
        },
    )
