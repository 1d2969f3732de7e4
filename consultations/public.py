"""Public information pages: readable without login (KBV § 5 Nr. 10)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.shortcuts import render
from django.templatetags.static import static

from compliance import declarations, regions
from consultations.templatetags.sri import asset_integrity


@dataclass(frozen=True)
class Asset:
    path: str  # relative to static/, as used by the {% static %} and SRI tags
    url: str
    size: int
    sha256: str
    integrity: str


def served_assets() -> list[Asset]:
    """Every file of our own `static/` directories with the digests the SRI tags use.

    The admin's files are left out: patients never load them. Hidden files (editor
    swap files, .gitkeep) are not served content either.
    """
    assets = []
    for root in map(Path, settings.STATICFILES_DIRS):
        for file in sorted(root.rglob("*")):
            relative = file.relative_to(root).as_posix()
            if not file.is_file() or any(part.startswith(".") for part in relative.split("/")):
                continue
            sha256, integrity = asset_integrity(relative)
            assets.append(Asset(relative, static(relative), file.stat().st_size, sha256, integrity))
    return assets


def _public_settings() -> dict:
    return {
        "operator_name": settings.OPERATOR_NAME,
        "operator_address": settings.OPERATOR_ADDRESS,
        "operator_email": settings.OPERATOR_EMAIL,
        "hosting_provider": settings.HOSTING_PROVIDER,
        "hosting_country": settings.HOSTING_COUNTRY,
        "retention_days": settings.METADATA_RETENTION_DAYS,
        "https": settings.PUBLIC_HTTPS,
        "demo_values": declarations.any_demo_value(),
    }


def _page(template: str, extra=None):
    def view(request):
        context = {
            "settings_public": _public_settings(),
            "hosting_country_name": regions.country_name(settings.HOSTING_COUNTRY),
        }
        if extra:
            context.update(extra())
        return render(request, template, context)

    view.__name__ = template.rsplit("/", 1)[-1].removesuffix(".html")
    return view


terms = _page("pages/terms.html")
privacy = _page("pages/privacy.html")
faq = _page("pages/faq.html")
imprint = _page("pages/imprint.html")
transparency = _page("pages/transparency.html", lambda: {"assets": served_assets()})
