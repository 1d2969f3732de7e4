from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SignalingConfig(AppConfig):
    name = "signaling"
    verbose_name = _("Signaling")

    def ready(self) -> None:
        # consultations announces cancellations and re-issues with signals instead of
        # importing signaling (the dependency points from signaling to consultations).
        from consultations import signals
        from signaling import presence

        signals.appointment_closed.connect(
            presence.on_appointment_closed, dispatch_uid="signaling.appointment_closed"
        )
        signals.codes_reissued.connect(
            presence.on_codes_reissued, dispatch_uid="signaling.codes_reissued"
        )
