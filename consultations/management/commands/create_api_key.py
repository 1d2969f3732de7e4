from django.core.management.base import BaseCommand, CommandError

from consultations import services
from consultations.management.commands._json import emit
from consultations.models import Practice


class Command(BaseCommand):
    help = "Create an API key for a practice's software and print it once."

    def add_arguments(self, parser):
        parser.add_argument("--practice", required=True, type=int, help="practice id")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, practice: int, json: bool, **options):
        found = Practice.objects.filter(pk=practice).first()
        if found is None:
            raise CommandError(f"Unknown practice id: {practice}")
        api_key, key = services.create_api_key(found)
        emit(
            self,
            {"practice": found.pk, "key": key, "prefix": api_key.prefix},
            json,
            f"API key for {found.name} (shown once, store it now):\n{key}",
        )
