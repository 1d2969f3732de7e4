"""Public information pages: readable without login (KBV § 5 Nr. 10)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.shortcuts import render
from django.templatetags.static import static
from django.utils.translation import gettext_lazy as _

from consultations.templatetags.sri import asset_integrity

# Countries a hosting provider may declare: the EU/EEA (anything else fails the
# compliance check anyway and is shown as its ISO code).
COUNTRY_NAMES = {
    "AT": _("Austria"), "BE": _("Belgium"), "BG": _("Bulgaria"), "HR": _("Croatia"),
    "CY": _("Cyprus"), "CZ": _("Czechia"), "DK": _("Denmark"), "EE": _("Estonia"),
    "FI": _("Finland"), "FR": _("France"), "DE": _("Germany"), "GR": _("Greece"),
    "HU": _("Hungary"), "IE": _("Ireland"), "IT": _("Italy"), "LV": _("Latvia"),
    "LT": _("Lithuania"), "LU": _("Luxembourg"), "MT": _("Malta"), "NL": _("Netherlands"),
    "PL": _("Poland"), "PT": _("Portugal"), "RO": _("Romania"), "SK": _("Slovakia"),
    "SI": _("Slovenia"), "ES": _("Spain"), "SE": _("Sweden"), "IS": _("Iceland"),
    "LI": _("Liechtenstein"), "NO": _("Norway"),
}  # fmt: skip


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
    demo = settings.DEMO_DECLARATIONS
    return {
        "operator_name": settings.OPERATOR_NAME,
        "operator_address": settings.OPERATOR_ADDRESS,
        "operator_email": settings.OPERATOR_EMAIL,
        "hosting_provider": settings.HOSTING_PROVIDER,
        "hosting_country": settings.HOSTING_COUNTRY,
        "retention_days": settings.METADATA_RETENTION_DAYS,
        "https": settings.PUBLIC_HTTPS,
        # The country's demo value (DE) is a plausible real one; the others are not.
        "demo_values": any(
            getattr(settings, name) == value
            for name, value in demo.items()
            if name != "HOSTING_COUNTRY"
        ),
    }


def _page(template: str, extra=None):
    def view(request):
        context = {
            "settings_public": _public_settings(),
            "hosting_country_name": COUNTRY_NAMES.get(
                settings.HOSTING_COUNTRY, settings.HOSTING_COUNTRY
            ),
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
