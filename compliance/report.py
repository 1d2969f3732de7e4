"""The attestation PDF: check results → template → WeasyPrint → bytes.

Rendered in German whatever the caller's language, with local DejaVu fonts; the
fetcher refuses everything that is not one of those font files or a data: URI, so
rendering never reaches the network. The evidence JSON is attached to the PDF, and its
SHA-256 is printed on the cover, so an auditor can tie the document to the raw results.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone, translation

from compliance import obligations, registry, runner
from compliance.declarations import DECLARATION_SETTINGS, demo_declarations
from consultations.models import MAX_GUESTS

FONT_DIRS = (
    Path(__file__).resolve().parent / "fonts",
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
)
FONT_FILES = {
    "regular": "DejaVuSans.ttf",
    "bold": "DejaVuSans-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
}
DECLARATION_CHECKS = ("hosting_declaration", "operator_declaration")
EVIDENCE_NAME = "kbv-pruefnachweis.json"


def font_urls() -> dict[str, str]:
    """file: URLs of the DejaVu fonts (empty entries fall back to fontconfig)."""
    urls = {}
    for key, name in FONT_FILES.items():
        for folder in FONT_DIRS:
            if (folder / name).is_file():
                urls[key] = (folder / name).as_uri()
                break
    return urls


def _local_fetcher():
    from weasyprint import URLFetcher

    allowed = {unquote(urlsplit(url).path) for url in font_urls().values()}

    class LocalOnlyFetcher(URLFetcher):
        """Fetches only the font files and data: URIs; refuses everything else."""

        def fetch(self, url, headers=None):
            parts = urlsplit(url)
            if parts.scheme == "data" or (
                parts.scheme == "file" and unquote(parts.path) in allowed
            ):
                return super().fetch(url, headers)
            raise ValueError(f"refused non-local resource: {url}")

    return LocalOnlyFetcher(fail_on_errors=False, allowed_protocols={"file", "data"})


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603 (fixed git arguments, no user input)
        ["git", *args],  # noqa: S607
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    ).stdout.strip()


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The deployed commit, with "+" when the working tree has local changes."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}+" if dirty else commit


def product_version() -> str:
    import redconnect

    return getattr(redconnect, "__version__", "") or "—"


def _requirement_entry(entry: dict, known: dict[int, registry.Requirement]) -> dict:
    """One requirement of a result, with the registry's texts (a result from an older
    run may name a requirement or check that is gone: it is shown with what it says)."""
    requirement = known.get(entry["number"])
    labels = {c.id: c for c in requirement.checks} if requirement else {}
    checks = [
        {
            **item,
            "label": str(labels[item["id"]].label)
            if item["id"] in labels
            else item.get("label") or item["id"],
            "static": labels[item["id"]].static if item["id"] in labels else item.get("static"),
            "status_label": runner.status_label(item["status"]),
        }
        for item in entry["checks"]
    ]
    return {
        **entry,
        "title": str(requirement.title) if requirement else entry["title"],
        "text": str(requirement.text) if requirement else "",
        "measures": str(requirement.measures) if requirement else "",
        "current_reference": str(requirement.current_reference)
        if requirement
        else entry.get("current_reference", ""),
        "further_evidence": str(requirement.further_evidence) if requirement else "",
        "status_label": runner.status_label(entry["status"]),
        "checks": checks,
    }


def build_context(result: dict, generated_at: datetime | None = None) -> dict:
    known = {requirement.number: requirement for requirement in registry.requirements()}
    requirements = [_requirement_entry(entry, known) for entry in result["requirements"]]
    demo = demo_declarations()
    declarations = [
        check
        for entry in requirements
        for check in entry["checks"]
        if check["id"] in DECLARATION_CHECKS
    ]
    return {
        "result": result,
        "requirements": requirements,
        "requirement_count": len(requirements),
        "declarations": declarations,
        "declared_values": [
            (name, getattr(settings, name), name in demo) for name in DECLARATION_SETTINGS
        ],
        "operator_proofs": obligations.OPERATOR_PROOFS,
        "practice_duties": obligations.PRACTICE_DUTIES,
        "overall_label": runner.status_label(result["overall"]),
        "sha256": runner.evidence_sha256(result),
        "evidence_name": EVIDENCE_NAME,
        "generated_at": timezone.localtime(generated_at or timezone.now()),
        "version": product_version(),
        "commit": git_commit() or "—",
        "operator": settings.OPERATOR_NAME,
        "public_url": settings.PUBLIC_URL,
        "fonts": font_urls(),
        "max_guests": MAX_GUESTS,
        "max_participants": MAX_GUESTS + 2,  # the doctor, the patient and the guests
        "status_labels": {key.value: str(value) for key, value in runner.STATUS_LABELS.items()},
    }


def render_html(result: dict, generated_at: datetime | None = None) -> str:
    with translation.override("de"):
        return render_to_string("compliance/report.html", build_context(result, generated_at))


def render_pdf(result: dict | None = None, generated_at: datetime | None = None) -> bytes:
    """The attestation as PDF bytes (runs the checks first unless a result is given)."""
    from weasyprint import HTML, Attachment

    with translation.override("de"):
        if result is None:
            result = runner.run_checks()
        html = render_html(result, generated_at)
        fetcher = _local_fetcher()
        evidence = Attachment(
            string=runner.canonical_json(result).decode(),
            name=EVIDENCE_NAME,
            description="KBV Anlage 31b § 5 – Prüfnachweis (JSON)",
            url_fetcher=fetcher,
        )
        return HTML(string=html, base_url=str(settings.BASE_DIR), url_fetcher=fetcher).write_pdf(
            attachments=[evidence]
        )
