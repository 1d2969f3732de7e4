"""§ 5 Nr. 10: complete terms of use in German, readable without login."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import scans
from compliance.declarations import declaration
from compliance.probes import PUBLIC_PAGES, HttpObservations
from compliance.registry import Finding, Requirement, check

MIN_PAGE_TEXT = 400  # characters: an empty placeholder page is not "complete"

REQUIREMENT = Requirement(
    10,
    gettext_lazy("Terms of use in German without login"),
    gettext_lazy("The terms of use must be complete in German and readable online without login."),
    gettext_lazy(
        "Terms of use, privacy notice, FAQ and imprint are public German pages linked "
        "from the join page."
    ),
    gettext_lazy("Annex 31b as amended on 15 June 2022: § 5 (organisational requirements)"),
)


@check(
    "public_pages_german",
    gettext_lazy("Terms, privacy notice, FAQ and imprint answer without login, in German (HTTP)"),
)
def public_pages_german(http: HttpObservations) -> Finding:
    summary, bad, short = [], [], []
    for page in http.public_pages.values():
        lang, length = scans.html_lang(page.html), scans.visible_text_length(page.html)
        summary.append(f"{page.path} ({page.status}, lang={lang}, {length})")
        if page.status != 200 or lang != "de":
            bad.append(page.path)
        elif length < MIN_PAGE_TEXT:
            short.append(page.path)
    if bad:
        return Finding.failed(
            _("Not readable in German without login: %(pages)s. Found: %(summary)s.")
            % {"pages": ", ".join(bad), "summary": "; ".join(summary)}
        )
    if short:
        return Finding.warned(
            _("Pages that look incomplete (under %(min)d characters): %(pages)s.")
            % {"min": MIN_PAGE_TEXT, "pages": ", ".join(short)}
        )
    return Finding.passed(
        _("Answered without login (status, language, characters of text): %(summary)s.")
        % {"summary": "; ".join(summary)}
    )


@check(
    "public_pages_linked",
    gettext_lazy("The join page links to the four public pages (HTTP)"),
)
def public_pages_linked(http: HttpObservations) -> Finding:
    join_page = http.join_page
    links = scans.links_in(join_page.html)
    missing = [reverse(name) for name in PUBLIC_PAGES if reverse(name) not in links]
    if join_page.status != 200 or missing:
        return Finding.failed(
            _("The join page (HTTP %(status)d) does not link to: %(missing)s.")
            % {"status": join_page.status, "missing": ", ".join(missing) or "—"}
        )
    return Finding.passed(
        _("The join page links to %(pages)s.")
        % {"pages": ", ".join(reverse(name) for name in PUBLIC_PAGES)}
    )


@check(
    "operator_declaration",
    gettext_lazy("Declaration: operator named in the imprint (settings)"),
)
def operator_declaration() -> Finding:
    text = _("Operator: %(name)s, %(address)s, %(email)s.") % {
        "name": settings.OPERATOR_NAME,
        "address": settings.OPERATOR_ADDRESS,
        "email": settings.OPERATOR_EMAIL,
    }
    return declaration(["OPERATOR_NAME", "OPERATOR_ADDRESS", "OPERATOR_EMAIL"], text)
