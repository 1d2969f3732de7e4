"""Public information pages: readable without login (KBV § 5 Nr. 10)."""

from django.conf import settings
from django.shortcuts import render


def _page(template: str):
    def view(request):
        return render(request, template, {"settings_public": _public_settings()})

    view.__name__ = template.rsplit("/", 1)[-1].removesuffix(".html")
    return view


def _public_settings() -> dict:
    return {
        "operator_name": settings.OPERATOR_NAME,
        "operator_address": settings.OPERATOR_ADDRESS,
        "operator_email": settings.OPERATOR_EMAIL,
        "hosting_provider": settings.HOSTING_PROVIDER,
        "hosting_country": settings.HOSTING_COUNTRY,
        "retention_days": settings.METADATA_RETENTION_DAYS,
    }


terms = _page("pages/terms.html")
privacy = _page("pages/privacy.html")
faq = _page("pages/faq.html")
imprint = _page("pages/imprint.html")
transparency = _page("pages/transparency.html")
