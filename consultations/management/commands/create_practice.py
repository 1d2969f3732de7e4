from django.core.management.base import BaseCommand, CommandError

from consultations.management.commands._json import emit
from consultations.models import Practice


class Command(BaseCommand):
    help = "Create a practice and print its id."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="the practice's name")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, name: str, json: bool, **options):
        name = name.strip()
        if not name:
            raise CommandError("--name must not be empty.")
        practice = Practice.objects.create(name=name)
        emit(
            self,
            {"id": practice.pk, "name": practice.name},
            json,
            f"Practice {practice.pk}: {practice.name}",
        )
