"""The auditor's page in the admin: run the checks, show the table, download the PDF.

Only auditors (membership role) and superusers; staff and doctors get 403. The checks
run in a child process (`runner.run_isolated`): their probes override settings
process-wide, which must never happen inside the process that serves live calls.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from compliance import report, runner
from consultations.models import Membership
from redconnect.timefmt import human


def may_audit(user) -> bool:
    if not (user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, role=Membership.Role.AUDITOR).exists()


def _require_auditor(request: HttpRequest) -> None:
    if not may_audit(request.user):
        raise PermissionDenied


def compliance_page(request: HttpRequest) -> HttpResponse:
    _require_auditor(request)
    try:
        result, error = runner.run_isolated(), None
    except (runner.RunError, OSError, TimeoutError) as exc:
        result, error = None, str(exc)
    context = {
        **admin.site.each_context(request),
        "title": _("Compliance report"),
        "result": result,
        "error": error,
        "rows": report.build_context(result)["requirements"] if result else [],
        "overall_label": runner.status_label(result["overall"]) if result else "",
        "sha256": runner.evidence_sha256(result) if result else "",
        "generated_local": human(result["generated_at"]) if result else "",
    }
    response = TemplateResponse(request, "compliance/admin_report.html", context)
    add_never_cache_headers(response)
    return response


def compliance_pdf(request: HttpRequest) -> HttpResponse:
    _require_auditor(request)
    result = runner.run_isolated()
    pdf = report.render_pdf(result)
    response = HttpResponse(pdf, content_type="application/pdf")
    stamp = timezone.localtime().strftime("%Y-%m-%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="kbv-nachweis-{stamp}.pdf"'
    add_never_cache_headers(response)
    return response


page = admin.site.admin_view(compliance_page)
pdf = admin.site.admin_view(compliance_pdf)
