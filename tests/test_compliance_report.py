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

from compliance import registry, report, runner
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
    for requirement in registry.requirements():
        items = [
            {
                "id": i.id,
                "label": str(i.label),
                "static": i.static,
                "status": status_of(i),
                "evidence": f"Befund zu {i.id}.",
            }
            for i in requirement.checks
        ]
        requirements.append(
            {
                "number": requirement.number,
                "title": str(requirement.title),
                "current_reference": str(requirement.current_reference),
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
        assert requirement["current_reference"].startswith("Anlage 31b i. d. F. vom 15.06.2022")
        for item in requirement["checks"]:
            assert {"id", "status", "evidence"} <= set(item)
            assert item["status"] in runner.STATUSES
    references = {r["number"]: r["current_reference"] for r in result["requirements"]}
    assert "§ 2 (IT-Sicherheit)" in references[6] and "§ 2a (Datenschutz" in references[9]
    assert "§ 5" in references[1] and "§ 5" in references[10]


@pytest.mark.django_db(transaction=True)
@TOO_LONG_RETENTION
def test_kbv_check_exits_1_when_a_requirement_fails():
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("kbv_check", stdout=out)
    assert exit_info.value.code == 1
    table = out.getvalue()
    assert " 9  nicht erfüllt" in table and "METADATA_RETENTION_DAYS ist 120" in table
    assert "Anlage 31b i. d. F. vom 15.06.2022: § 2a (Datenschutz" in table
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
    flat = text.replace("\n", " ")
    assert (
        "In der aktuellen Fassung: Anlage 31b i. d. F. vom 15.06.2022: § 2 (IT-Sicherheit)" in flat
    )
    assert "§ 2a (Datenschutz" in flat


def test_pdf_lists_what_software_cannot_prove_as_a_checklist_to_sign():
    _reader, pages = pdf_text(report.render_pdf(synthetic_result()))
    (page,) = [p for p in pages if "Was Software nicht nachweisen kann" in p]
    flat = page.replace("\n", " ")
    for item in (
        "IT-Sicherheitszertifikat",
        "ISO/IEC 17065",
        "Datenschutzzertifikat",
        "Art. 42 DSGVO",
        "Bescheinigung nach § 5 Abs. 2",
        "Einwilligung",
        "Art. 9 Abs. 2 lit. a i. V. m. Art. 7 DSGVO",
        "geschlossenen Raum",
        "Alle Anwesenden auf beiden Seiten werden zu Beginn",
        "Keine Aufzeichnung",
        "Unterschrift des Betreibers",
        "Unterschrift der Praxis",
    ):
        assert item in flat, item


TWELFTH = """
from compliance.registry import Finding, Requirement, check

REQUIREMENT = Requirement(
    12,
    "Probeweise zwölfte Anforderung",
    "Nur für den Test.",
    "Ein Modul, eine Prüfung.",
    "Anlage 31b, § 99 (Test)",
)


@check("twelfth_requirement_probe", "Die zwölfte Prüfung läuft mit")
def twelfth_requirement_probe() -> Finding:
    return Finding.warned("Zwölfte Anforderung gefunden und geprüft.")
"""


@pytest.mark.django_db(transaction=True)
def test_a_twelfth_requirement_is_one_module(tmp_path, monkeypatch):
    """Adding a requirement: one module on sys.path, nothing else changes."""
    (tmp_path / "kbv_nr12_probe_requirement.py").write_text(TWELFTH)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = StringIO()
    call_command("kbv_check", "--json", stdout=out)
    result = json.loads(out.getvalue())
    twelfth = result["requirements"][-1]
    assert [r["number"] for r in result["requirements"]] == list(range(1, 13))
    assert twelfth["title"] == "Probeweise zwölfte Anforderung"
    assert twelfth["current_reference"] == "Anlage 31b, § 99 (Test)"
    assert twelfth["status"] == "warn" and result["overall"] == "warn"
    assert twelfth["checks"][0]["id"] == "twelfth_requirement_probe"
    _reader, pages = pdf_text(report.render_pdf(result))
    text = "\n".join(pages).replace("\n", " ")
    assert "Nr. 12 – Probeweise zwölfte Anforderung" in text
    assert "Zwölfte Anforderung gefunden und geprüft." in text
    assert "Jede der 12 Anforderungen wurde" in text
    monkeypatch.undo()  # gone from sys.path: gone from the registry
    assert len(registry.requirements()) == 11


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
    assert client.post("/admin/compliance/").status_code == 403
    assert client.get("/admin/compliance/report.pdf").status_code == 403
    assert b"/admin/compliance/" not in client.get("/admin/").content


@pytest.mark.django_db
def test_anonymous_is_sent_to_the_login(client):
    response = client.get("/admin/compliance/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.fixture
def run_counter(monkeypatch) -> list:
    """Counts child-process runs; each call still runs the real `kbv_check`."""
    calls = []
    real = runner.run_isolated

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_isolated", counted)
    return calls


@pytest.fixture
def empty_cache():
    from django.core.cache import cache

    cache.delete_many([runner.LAST_RUN_KEY, runner.LOCK_KEY])
    yield
    cache.delete_many([runner.LAST_RUN_KEY, runner.LOCK_KEY])


@pytest.mark.django_db
def test_opening_the_page_runs_nothing(client, auditor, run_counter, empty_cache):
    client.force_login(auditor)
    html = client.get("/admin/compliance/").content.decode()
    assert "Noch keine Prüfung durchgeführt." in html and "Prüfung jetzt starten" in html
    assert 'method="post"' in html and "csrfmiddlewaretoken" in html
    assert "Die Prüfung testet die 11 Anforderungen" in html  # counted, not written
    assert client.get("/admin/compliance/report.pdf").status_code == 404
    assert run_counter == [] and runner.last_run() is None


@pytest.mark.django_db
def test_running_needs_a_csrf_token(auditor, run_counter, empty_cache):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(auditor)
    assert client.post("/admin/compliance/").status_code == 403
    assert run_counter == []


@pytest.mark.django_db(transaction=True)
def test_auditor_runs_the_checks_and_downloads_the_pdf(client, auditor, run_counter, empty_cache):
    client.force_login(auditor)
    assert b'href="/admin/compliance/"' in client.get("/admin/").content
    response = client.post("/admin/compliance/")
    assert response.status_code == 302 and response["Location"] == "/admin/compliance/"
    assert len(run_counter) == 1
    html = client.get("/admin/compliance/").content.decode()
    for title in GERMAN_TITLES:
        assert title in html
    assert "Letzte Prüfung: " in html and "Die Prüfungen wurden ausgeführt." in html
    assert "/admin/compliance/report.pdf" in html and "Prüfnachweis (SHA-256)" in html
    assert "Anlage 31b i. d. F. vom 15.06.2022" in html
    response = client.get("/admin/compliance/report.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"]
    _reader, pages = pdf_text(response.content)
    assert "Registrierung des Arztes" in "".join(pages)
    assert len(run_counter) == 1  # viewing and downloading ran nothing


@pytest.mark.django_db
def test_a_second_run_is_refused_while_one_is_going_on(client, auditor, run_counter, empty_cache):
    client.force_login(auditor)
    with runner.run_lock():
        response = client.post("/admin/compliance/", follow=True)
        assert "Eine Prüfung läuft bereits." in response.content.decode()
        assert "Eine Prüfung läuft gerade." in client.get("/admin/compliance/").content.decode()
    assert run_counter == [] and runner.last_run() is None
    with runner.run_lock():  # released: it can be taken again
        pass


@pytest.mark.redis
@pytest.mark.django_db
def test_the_run_lock_holds_across_processes(tmp_path, redis_server, client, auditor, run_counter):
    """Another server process holding the lock (a real process on the same Redis)."""
    import subprocess
    import sys

    from redconnect import redisconf
    from tests.support.live import ROOT, embedded_env

    env = embedded_env(tmp_path, REDIS_URL=redis_server.url)
    holder = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c",
         "import sys, time\nfrom compliance import runner\nwith runner.run_lock():\n"
         "    print('held', flush=True)\n    sys.stdin.read()"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with override_settings(CACHES={"default": redisconf.cache_config(redis_server.url)}):
            client.force_login(auditor)
            response = client.post("/admin/compliance/", follow=True)
            assert "Eine Prüfung läuft bereits." in response.content.decode()
            with pytest.raises(runner.AlreadyRunning), runner.run_lock():
                pass
            holder.stdin.close()  # the holder leaves its `with`: the lock is released
            assert holder.wait(30) == 0
            with runner.run_lock():
                pass
    finally:
        if holder.poll() is None:
            holder.kill()
    assert run_counter == []


def test_an_auditor_membership_or_superuser_is_what_grants_access(db, auditor, staff, superuser):
    from compliance.views import may_audit

    assert may_audit(auditor) and may_audit(superuser) and not may_audit(staff)
    Membership.objects.filter(user=auditor).update(role=Membership.Role.STAFF)
    assert not may_audit(auditor)


@pytest.mark.django_db
def test_pdf_says_how_many_people_a_call_holds_and_why(monkeypatch):
    from consultations.models import MAX_GUESTS

    result = synthetic_result()
    flat = " ".join("\n".join(pdf_text(report.render_pdf(result))[1]).split())
    assert f"höchstens {MAX_GUESTS + 2} Personen" in flat
    assert f"bis zu {MAX_GUESTS} Gäste" in flat
    assert "Peer-to-Peer-Mesh ohne Medienserver" in flat and "Gruppenpsychotherapie" in flat
    # the number comes from the model's limit, not from the template
    monkeypatch.setattr(report, "MAX_GUESTS", 3)
    html = " ".join(report.render_html(result).split())
    assert "höchstens 5 Personen" in html and "bis zu 3 Gäste" in html


@pytest.mark.django_db
def test_pdf_links_nr7_to_the_network_evidence():
    html = " ".join(report.render_html(synthetic_result()).split())
    nr7 = html.split("Nr. 7 –", 1)[1].split("Nr. 8 –", 1)[0]
    assert "Nachweis in echten Netzen: docs/evidence-network.md" in nr7
    assert "400 kbit/s" in nr7 and "Prozent Paketverlust" in nr7
    assert "network_lab_evidence" in nr7 and "statische Prüfung" in nr7
