"""The auditor's page in the admin: the last check run, a button to run again, the PDF.

Only auditors (membership role) and superusers; staff and doctors get 403. A GET never
runs anything: it shows the last result from the cache with its time. Running is a POST
(CSRF-protected by the admin), one at a time across all server processes
(`runner.run_lock`), in a child process (`runner.run_isolated`): the probes override
settings process-wide, which must never happen inside the process that serves calls.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from compliance import registry, report, runner
from consultations import permissions
from redconnect.timefmt import human

# Auditors and superusers (consultations.permissions); the name stays for callers.
may_audit = permissions.may_audit


def _require_auditor(request: HttpRequest) -> None:
    if not may_audit(request.user):
        raise PermissionDenied


def _finished_at(record: dict | None) -> datetime | None:
    if not record or not record.get("finished_at"):
        return None
    return timezone.localtime(datetime.fromisoformat(record["finished_at"]))


@require_http_methods(["GET", "POST"])
def compliance_page(request: HttpRequest) -> HttpResponse:
    _require_auditor(request)
    if request.method == "POST":
        return _run(request)
    record = runner.last_run()
    result = record.get("result") if record else None
    context = {
        **admin.site.each_context(request),
        "title": _("Compliance report"),
        "result": result,
        "error": record.get("error") if record else None,
        "finished_at": _finished_at(record),
        "running": runner.is_running(),
        "requirement_count": len(registry.requirements()),
        "rows": report.build_context(result)["requirements"] if result else [],
        "overall_label": runner.status_label(result["overall"]) if result else "",
        "sha256": runner.evidence_sha256(result) if result else "",
        "generated_local": human(result["generated_at"]) if result else "",
    }
    response = TemplateResponse(request, "compliance/admin_report.html", context)
    add_never_cache_headers(response)
    return response


def _run(request: HttpRequest) -> HttpResponse:
    try:
        record = runner.run_and_store()
    except runner.AlreadyRunning:
        messages.warning(
            request, _("A check run is already in progress. Reload the page in a minute.")
        )
    else:
        if record.get("error"):
            messages.error(
                request, _("The checks could not be run: %(error)s") % {"error": record["error"]}
            )
        else:
            messages.success(request, _("The checks were run."))
    return redirect("compliance-report")


@require_GET
def compliance_pdf(request: HttpRequest) -> HttpResponse:
    """The attestation of the last run (nothing is run here)."""
    _require_auditor(request)
    record = runner.last_run()
    if not record or not record.get("result"):
        raise Http404(_("No check run yet."))
    pdf = report.render_pdf(record["result"], generated_at=_finished_at(record))
    response = HttpResponse(pdf, content_type="application/pdf")
    stamp = _finished_at(record).strftime("%Y-%m-%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="kbv-nachweis-{stamp}.pdf"'
    add_never_cache_headers(response)
    return response


page = admin.site.admin_view(compliance_page)
pdf = admin.site.admin_view(compliance_pdf)
