from django.conf import settings
from django.core.management.base import BaseCommand

from consultations import services
from consultations.management.commands._json import emit


class Command(BaseCommand):
    help = (
        "Delete expired and cancelled appointments past METADATA_RETENTION_DAYS, the admin "
        "history about them, and expired login sessions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, dry_run: bool, json: bool, **options):
        counts = services.purge_expired(dry_run=dry_run)
        payload = {
            "dry_run": dry_run,
            "retention_days": settings.METADATA_RETENTION_DAYS,
            "deleted": counts if not dry_run else {key: 0 for key in counts},
            "would_delete": counts if dry_run else {key: 0 for key in counts},
        }
        verb = "Would delete" if dry_run else "Deleted"
        emit(
            self,
            payload,
            json,
            f"{verb} {counts['appointments']} appointment(s) past "
            f"{settings.METADATA_RETENTION_DAYS} days of retention, "
            f"{counts['admin_log_entries']} admin history entr(y/ies) about purged "
            f"appointments and {counts['sessions']} expired session(s).",
        )
