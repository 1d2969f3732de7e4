from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsultationsConfig(AppConfig):
    name = "consultations"
    verbose_name = _("Video consultations")

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from consultations import appointment_cache
        from consultations.models import Appointment

        # Every change of an appointment makes its cached connect state stale.
        for signal in (post_save, post_delete):
            signal.connect(
                appointment_cache.on_appointment_changed,
                sender=Appointment,
                dispatch_uid=f"appointment-cache-{signal is post_save}",
            )
