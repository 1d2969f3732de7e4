from datetime import datetime

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from consultations import services
from consultations.management.commands._json import emit
from consultations.models import MAX_GUESTS
from redconnect.timefmt import human


def parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--at is not an ISO 8601 time: {value!r}") from None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)  # read in the service's time zone
    return moment


class Command(BaseCommand):
    help = "Create an appointment for a doctor and print its access codes once."

    def add_arguments(self, parser):
        parser.add_argument("--doctor", required=True, help="username of a doctor member")
        parser.add_argument("--at", help="ISO 8601 time (default: now)")
        parser.add_argument(
            "--guests",
            type=int,
            default=0,
            help=f"number of guest codes, 0–{MAX_GUESTS} (support person, interpreter, …)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, doctor: str, at: str | None, json: bool, guests: int, **options):
        if not 0 <= guests <= MAX_GUESTS:
            raise CommandError(f"--guests must be between 0 and {MAX_GUESTS}, not {guests}.")
        user = get_user_model().objects.filter(username=doctor).first()
        if user is None:
            raise CommandError(f"Unknown user: {doctor!r}")
        try:
            issued = services.create_appointment(
                doctor=user, scheduled_at=parse_time(at) if at else None, guests=guests
            )
        except services.AppointmentError as exc:
            raise CommandError(str(exc)) from None
        payload = services.issued_as_json(issued)
        emit(
            self,
            payload,
            json,
            "\n".join(
                [
                    f"Appointment {payload['id']} at {human(issued.appointment.scheduled_at)}",
                    f"  doctor code:  {payload['doctor_code']}",
                    f"  patient code: {payload['patient_code']}",
                    *(
                        f"  guest code {number}: {code}"
                        for number, code in enumerate(payload["guest_codes"], start=1)
                    ),
                    f"  join at:      {payload['join_url']}",
                    f"  valid until:  {human(issued.appointment.expires_at)}",
                ]
            ),
        )
