import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from consultations.management.commands._json import emit
from consultations.models import Membership, Practice

PRACTICE_NAME = "Demo-Praxis Dr. Beispiel"
DEMO_USERS = [
    # key, username, role, first name, last name
    ("doctor", "demo-arzt", Membership.Role.DOCTOR, "Anna", "Beispiel"),
    ("staff", "demo-mfa", Membership.Role.STAFF, "Mara", "Muster"),
    ("auditor", "demo-pruefer", Membership.Role.AUDITOR, "Paul", "Prüfer"),
]


def seed() -> dict:
    """Create the demo practice and users if missing; return what was created."""
    password = os.environ.get("DEMO_PASSWORD") or None
    User = get_user_model()
    with transaction.atomic():
        practice, _created = Practice.objects.get_or_create(name=PRACTICE_NAME)
        result = {"practice": {"id": practice.pk, "name": practice.name}}
        for key, username, role, first, last in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            new_password = None
            if user is None:
                new_password = password or secrets.token_urlsafe(12)
                user = User.objects.create_user(
                    username=username,
                    password=new_password,
                    first_name=first,
                    last_name=last,
                    is_staff=True,
                )
            Membership.objects.get_or_create(user=user, practice=practice, defaults={"role": role})
            result[key] = {"username": username, "password": new_password}
    return result


class Command(BaseCommand):
    help = "Create the demo practice with a doctor, a staff member and an auditor (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, json: bool, **options):
        result = seed()
        lines = [f"Practice {result['practice']['id']}: {result['practice']['name']}"]
        for key, *_rest in DEMO_USERS:
            user = result[key]
            shown = user["password"] or "(unchanged)"
            lines.append(f"  {key:8} {user['username']:14} password: {shown}")
        emit(self, result, json, "\n".join(lines))
