"""§ 5 Nr. 11: no advertising within the video consultation."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import scans
from compliance.probes import HttpObservations
from compliance.registry import Finding, Requirement, check

REQUIREMENT = Requirement(
    11,
    gettext_lazy("No advertising"),
    gettext_lazy("Advertising within the video consultation is prohibited."),
    gettext_lazy(
        "The pages load nothing from third parties: no advertising, tracking, fonts or "
        "scripts from other origins, enforced by the Content Security Policy."
    ),
    gettext_lazy("Annex 31b as amended on 15 June 2022: § 5 (organisational requirements)"),
)


def _by_path(found: dict[str, list[str]]) -> str:
    """`/a: x, y; /b: z`: the other origins found, per page or file, for evidence."""
    return "; ".join(f"{path}: {', '.join(urls)}" for path, urls in found.items())


@check(
    "pages_load_nothing_foreign",
    gettext_lazy("Rendered public pages and the call page load nothing from another origin (HTTP)"),
)
def pages_load_nothing_foreign(http: HttpObservations) -> Finding:
    rendered = [http.join_page, *http.public_pages.values(), http.call_page]
    not_rendered = [page.path for page in rendered if page.status != 200]
    foreign = {page.path: scans.foreign_loads(page.html) for page in rendered}
    foreign = {path: urls for path, urls in foreign.items() if urls}
    if foreign:
        return Finding.failed(
            _("Pages that load from other origins: %(list)s.") % {"list": _by_path(foreign)}
        )
    if not_rendered:
        return Finding.failed(
            _("These pages could not be rendered for the check: %(pages)s.")
            % {"pages": ", ".join(not_rendered)}
        )
    return Finding.passed(
        _(
            "%(count)d rendered pages (%(pages)s) load scripts, styles, images and frames only "
            "from their own origin."
        )
        % {"count": len(rendered), "pages": ", ".join(page.path for page in rendered)}
    )


@check(
    "static_files_no_foreign_urls",
    gettext_lazy("Served scripts and style sheets reference no other origin"),
    static=True,
)
def static_files_no_foreign_urls() -> Finding:
    files = list(scans.static_files())
    offending = {f.path: refs for f in files if (refs := scans.foreign_references(f))}
    if offending:
        return Finding.failed(
            _("Static files referring to other origins: %(list)s.") % {"list": _by_path(offending)}
        )
    return Finding.passed(
        _("None of the %(count)d served scripts and style sheets loads from another origin.")
        % {"count": len(files)}
    )


@check(
    "csp_forbids_foreign_origins",
    gettext_lazy("The Content Security Policy forbids other origins (HTTP header)"),
)
def csp_forbids_foreign_origins(http: HttpObservations) -> Finding:
    problems = []
    for page in (http.join_page, http.call_page):
        if not page.csp:
            problems.append(f"{page.path}: —")
            continue
        directives, foreign = scans.csp_foreign_sources(page.csp)
        if directives.get("default-src") not in (["'self'"], ["'none'"]):
            problems.append(f"{page.path}: default-src {directives.get('default-src')}")
        problems.extend(f"{page.path}: {source}" for source in foreign)
    if problems:
        return Finding.failed(
            _("The Content Security Policy allows other origins or is missing: %(list)s.")
            % {"list": "; ".join(problems)}
        )
    return Finding.passed(
        _(
            "The join page and the call page send a Content Security Policy with default-src "
            "'self' and no other origin: %(csp)s"
        )
        % {"csp": http.join_page.csp}
    )
