import json
import sys
import textwrap

from django.core.management.base import BaseCommand

from compliance import runner
from redconnect.timefmt import human


class Command(BaseCommand):
    help = "Check the KBV requirements (Anlage 31b) against this installation."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, json: bool, **options):
        result = runner.run_checks()
        if json:
            self.stdout.write(_dumps(result))
        else:
            self.stdout.write(render_table(result))
        if runner.failed_requirements(result):
            sys.exit(1)


def _dumps(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2)


def render_table(result: dict) -> str:
    lines = []
    for requirement in result["requirements"]:
        label = runner.status_label(requirement["status"])
        lines.append(f"{requirement['number']:>2}  {label:<12} {requirement['title']}")
        if requirement.get("current_reference"):
            lines.append(f"{'':17}{requirement['current_reference']}")
        for item in requirement["checks"]:
            lines.append(f"    {runner.status_label(item['status']):<12} {item['id']}")
            lines.extend(
                textwrap.wrap(
                    item["evidence"], width=100, initial_indent=" " * 17, subsequent_indent=" " * 17
                )
            )
    lines.append("")
    overall = runner.status_label(result["overall"]).upper()
    lines.append(f"{overall}  ({human(result['generated_at'])})")
    return "\n".join(lines)
