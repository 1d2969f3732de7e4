import json as jsonlib
import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from compliance import report, runner


class Command(BaseCommand):
    help = "Write the KBV § 5 attestation PDF (exit 0 even when checks fail; 2 if unwritable)."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, type=Path, help="path of the PDF")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, output: Path, json: bool, **options):
        folder = output.parent if str(output.parent) else Path(".")
        if not folder.is_dir() or not os.access(folder, os.W_OK) or output.is_dir():
            # Before the checks run: a wrong path should not cost a whole check run.
            self.stderr.write(f"Cannot write {output}: no writable folder {folder}.")
            sys.exit(2)
        result = runner.run_checks()
        pdf = report.render_pdf(result)
        try:
            output.write_bytes(pdf)
        except OSError as exc:
            self.stderr.write(f"Cannot write {output}: {exc.strerror or exc}")
            sys.exit(2)
        payload = {
            "output": str(output),
            "overall": result["overall"],
            "sha256": runner.evidence_sha256(result),
            "failed": runner.failed_requirements(result),
        }
        if json:
            self.stdout.write(jsonlib.dumps(payload, ensure_ascii=False))
        else:
            self.stdout.write(
                f"Wrote {output} ({len(pdf) // 1024} KiB): overall {result['overall']}, "
                f"evidence SHA-256 {payload['sha256']}"
            )
