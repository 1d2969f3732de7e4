"""Commands, PDF attestation, system checks and the auditor's admin page."""

from __future__ import annotations

import hashlib
import json
from io import StringIO

import pypdf
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from compliance import checks, report, runner
from compliance.requirements import REQUIREMENTS
from consultations.models import Membership

GERMAN_TITLES = [
    "Registrierung des Arztes",
    "Kein Zweitzugang für Sprechstunden",
    "Zugang des Patienten ohne Konto",
    "Ungestörte Durchführung",
    "Peer-to-Peer-Übertragung",
    "Ende-zu-Ende-Verschlüsselung",
    "Adaptive Ton- und Bildqualität",
    "Keine Einsicht und Speicherung von Inhalten",
    "Server in der EU, Metadaten höchstens drei Monate",
    "Nutzungsbedingungen auf Deutsch ohne Anmeldung",
    "Keine Werbung",
]
TOO_LONG_RETENTION = override_settings(METADATA_RETENTION_DAYS=120)


def synthetic_result(status_of=lambda item: "pass") -> dict:
    """A result in the contract's shape without running the probes."""
    requirements = []
    for requirement in REQUIREMENTS:
        items = [
            {
                "id": i.id,
                "label": str(i.label),
                "static": i.static,
                "status": status_of(i),
                "evidence": f"Befund zu {i.id}.",
            }
            for i in checks.CHECKS
            if i.requirement == requirement.number
        ]
        requirements.append(
            {
                "number": requirement.number,
                "title": str(requirement.title),
                "status": runner.requirement_status([i["status"] for i in items]),
                "checks": items,
            }
        )
    return {
        "generated_at": "2026-05-10T12:00:00+00:00",
        "requirements": requirements,
        "overall": runner.overall_status([r["status"] for r in requirements]),
    }


def pdf_text(data: bytes) -> tuple[pypdf.PdfReader, list[str]]:
    reader = pypdf.PdfReader(__import__("io").BytesIO(data))
    return reader, [page.extract_text() for page in reader.pages]


# --- kbv_check ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_kbv_check_json_follows_the_contract():
    out = StringIO()
    call_command("kbv_check", "--json", stdout=out)  # no SystemExit: nothing fails
    result = json.loads(out.getvalue())
    assert set(result) == {"generated_at", "overall", "requirements"}
    assert result["overall"] in {"pass", "warn"}
    assert [r["number"] for r in result["requirements"]] == list(range(1, 12))
    assert [r["title"] for r in result["requirements"]] == GERMAN_TITLES
    for requirement in result["requirements"]:
        assert requirement["status"] in {"pass", "warn", "declared"}
        for item in requirement["checks"]:
            assert {"id", "status", "evidence"} <= set(item)
            assert item["status"] in checks.STATUSES


@pytest.mark.django_db(transaction=True)
@TOO_LONG_RETENTION
def test_kbv_check_exits_1_when_a_requirement_fails():
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("kbv_check", stdout=out)
    assert exit_info.value.code == 1
    table = out.getvalue()
    assert " 9  nicht erfüllt" in table and "METADATA_RETENTION_DAYS ist 120" in table
    assert "NICHT ERFÜLLT" in table


# --- compliance_report ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@TOO_LONG_RETENTION
def test_compliance_report_writes_the_pdf_even_when_checks_fail(tmp_path):
    target = tmp_path / "nachweis.pdf"
    out = StringIO()
    call_command("compliance_report", "--output", str(target), "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["output"] == str(target) and summary["overall"] == "fail"
    reader, pages = pdf_text(target.read_bytes())
    text = "\n".join(pages)
    for title in GERMAN_TITLES:
        assert title in text.replace("\n", " "), title
    assert summary["sha256"] in text.replace("\n", "")
    assert "nicht erfüllt" in text and "METADATA_RETENTION_DAYS ist 120" in text
    for number, page in enumerate(pages, start=1):
        assert f"Seite {number} von {len(pages)}" in page
    attached = reader.attachments[report.EVIDENCE_NAME][0]
    assert hashlib.sha256(attached).hexdigest() == summary["sha256"]
    assert json.loads(attached)["overall"] == "fail"


def test_compliance_report_exits_2_when_it_cannot_write(tmp_path):
    err = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "compliance_report", "--output", str(tmp_path / "missing" / "x.pdf"), stderr=err
        )
    assert exit_info.value.code == 2 and "Cannot write" in err.getvalue()


def test_pdf_is_german_with_cover_declarations_and_hash(settings):
    result = synthetic_result(
        lambda i: "warn" if i.id == "tls_probe" else "declared" if "declaration" in i.id else "pass"
    )
    with override_settings(LANGUAGE_CODE="en"):
        _reader, pages = pdf_text(report.render_pdf(result))
    text = "\n".join(pages)
    cover = pages[0]
    assert "Nachweis der technischen Anforderungen" in cover and "Gesamtergebnis" in cover
    assert "Warnung" in cover and settings.OPERATOR_NAME in cover
    assert "Git-Commit" in cover
    assert "Erklärungen des Betreibers" in text and "HOSTING_COUNTRY" in text
    assert "statische Prüfung" in text  # static checks are labelled as such
    assert runner.evidence_sha256(result) in text.replace("\n", "")
    assert "Unterschrift" in pages[-1]


def test_pdf_renderer_fetches_nothing_from_outside(tmp_path):
    fetcher = report._local_fetcher()
    for url in (
        "https://fonts.example.com/a.woff",
        "http://127.0.0.1/x.css",
        (tmp_path / "x.css").as_uri(),
    ):
        with pytest.raises(ValueError, match="refused"):
            fetcher.fetch(url)
    for url in report.font_urls().values():
        assert fetcher.fetch(url).read(4)
    assert set(report.font_urls()) == {"regular", "bold", "mono"}


def test_evidence_hash_is_over_canonical_json():
    result = synthetic_result()
    reordered = json.loads(json.dumps(result, sort_keys=False))
    assert runner.evidence_sha256(result) == runner.evidence_sha256(reordered)
    changed = synthetic_result(lambda i: "fail" if i.id == "no_recording_code" else "pass")
    assert runner.evidence_sha256(changed) != runner.evidence_sha256(result)


# --- Django system checks -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@TOO_LONG_RETENTION
def test_check_deploy_reports_kbv_failures():
    with pytest.raises(SystemCheckError, match=r"kbv\.E009"):
        call_command("check", "--deploy", "--tag", "kbv", stdout=StringIO(), stderr=StringIO())


# --- Admin page -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["staff", "doctor"])
def test_staff_and_doctors_cannot_open_the_report(client, request, persona):
    client.force_login(request.getfixturevalue(persona))
    assert client.get("/admin/compliance/").status_code == 403
    assert client.get("/admin/compliance/report.pdf").status_code == 403
    assert b"/admin/compliance/" not in client.get("/admin/").content


@pytest.mark.django_db
def test_anonymous_is_sent_to_the_login(client):
    response = client.get("/admin/compliance/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db(transaction=True)
def test_auditor_sees_the_table_and_downloads_the_pdf(client, auditor):
    client.force_login(auditor)
    assert b'href="/admin/compliance/"' in client.get("/admin/").content
    response = client.get("/admin/compliance/")
    assert response.status_code == 200
    html = response.content.decode()
    for title in GERMAN_TITLES:
        assert title in html
    assert "/admin/compliance/report.pdf" in html and "Prüfnachweis (SHA-256)" in html
    response = client.get("/admin/compliance/report.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"]
    _reader, pages = pdf_text(response.content)
    assert "Registrierung des Arztes" in "".join(pages)


def test_an_auditor_membership_or_superuser_is_what_grants_access(db, auditor, staff, superuser):
    from compliance.views import may_audit

    assert may_audit(auditor) and may_audit(superuser) and not may_audit(staff)
    Membership.objects.filter(user=auditor).update(role=Membership.Role.STAFF)
    assert not may_audit(auditor)
