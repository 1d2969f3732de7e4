from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from consultations.management.commands._json import emit
from redconnect import twofactor


class Command(BaseCommand):
    help = (
        "Issue a one-time enrolment code (and link) with which an admin user sets up the "
        "first authenticator app; valid for 24 hours, printed once."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="the admin user who enrols")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, username: str, json: bool, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not (user.is_active and user.is_staff):
            raise CommandError(f"{username!r} is no active admin user.")
        code, expires_at = twofactor.issue_enrollment_code(user)
        link = twofactor.enrollment_link(code)
        emit(
            self,
            {
                "username": user.get_username(),
                "code": code,
                "link": link,
                "expires_at": expires_at.isoformat(),
            },
            json,
            f"Enrolment link for {user.get_username()} (valid until {expires_at:%Y-%m-%d %H:%M} "
            f"UTC, one use):\n{link}",
        )
