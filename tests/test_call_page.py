"""The call page and its client code: markers, CSP-safe loading, translations.

The browser behaviour itself is proven in tests/e2e/test_call.py with real Chromium;
these checks are static and fast, and run on both database profiles.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polib
import pytest
from django.conf import settings

from redconnect import callcodes

ROOT = Path(settings.BASE_DIR)
JS_DIR = ROOT / "static" / "js"
CALL_MODULES = [
    "call.js",
    "signaling.js",
    "peer.js",
    "quality.js",
    "chat.js",
    "ui.js",
    "devices.js",
    "safety.js",
    "mesh.js",
    "bandwidth.js",
    "tiles.js",
]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def call_page(client, issued, name: str = "Paula Patientin") -> str:
    response = client.post("/", {"code": issued.patient_code, "name": name, "consent": "on"})
    assert response.status_code == 302
    response = client.get("/call/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def doctor_issued_call(client, doctor, issued) -> str:
    """The call page as the appointment's logged-in doctor sees it."""
    client.force_login(doctor)
    response = client.post("/", {"code": issued.doctor_code, "name": "", "consent": ""})
    assert response.status_code == 302
    response = client.get("/call/")
    assert response.status_code == 200
    return response.content.decode()


def client_code() -> str:
    return "\n".join((JS_DIR / module).read_text() for module in CALL_MODULES)


def test_call_page_carries_the_markers_the_compliance_check_reads(client, issued):
    html = call_page(client, issued)
    assert re.search(r'<button[^>]*data-action="audio-only"', html)
    assert 'data-role="quality"' in html
    assert 'data-role="safety-code"' in html
    assert 'data-ws-path="/ws/call/"' in html
    assert 'data-participant="patient"' in html


def test_call_page_loads_catalogue_then_module_with_integrity_and_nothing_inline(client, issued):
    html = call_page(client, issued)
    scripts = re.findall(r"<script[^>]*>", html)
    # The protocol table is data (JSON, never executed), not inline script.
    assert scripts[0] == '<script id="rc-codes" type="application/json">'
    assert scripts[1] == '<script src="/jsi18n/">'
    assert re.fullmatch(
        r'<script type="module" src="/static/js/call\.js" integrity="sha384-[^"]+">', scripts[2]
    )
    assert len(scripts) == 3
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers


def test_call_page_hands_the_javascript_exactly_the_python_code_table(client, issued):
    html = call_page(client, issued)
    found = re.search(r'<script id="rc-codes" type="application/json">(.*?)</script>', html, re.S)
    assert found is not None
    assert json.loads(found.group(1)) == callcodes.table()


def test_patient_name_is_escaped_on_the_call_page(client, issued):
    html = call_page(client, issued, name="<b>Paula</b>")
    assert "&lt;b&gt;Paula&lt;/b&gt;" in html
    assert "<b>Paula</b>" not in html


def test_client_adapts_quality_and_records_nothing():
    code = client_code()
    assert "degradationPreference" in code and "getStats" in code
    assert "MediaRecorder" not in code
    # Chat is a negotiated data channel (peer-to-peer), not a server message type.
    assert 'createDataChannel("chat", { negotiated: true, id: 0 })' in code


def test_client_talks_to_its_own_origin_only():
    for path in [*JS_DIR.glob("*.js"), ROOT / "static" / "css" / "call.css"]:
        assert not re.search(r"(https?|wss?)://", path.read_text()), path.name


def test_every_module_import_resolves():
    for module in CALL_MODULES:
        for target in re.findall(r'from "\./([\w.]+)"', (JS_DIR / module).read_text()):
            assert (JS_DIR / target).is_file(), f"{module} imports missing {target}"


def test_every_client_string_has_a_german_translation():
    catalogue = polib.pofile(str(ROOT / "locale" / "de" / "LC_MESSAGES" / "djangojs.po"))
    translated = {
        entry.msgid for entry in catalogue.translated_entries() if "fuzzy" not in entry.flags
    }
    msgids = set(re.findall(r'\bgettext\(\s*"((?:[^"\\]|\\.)*)"', client_code()))
    assert msgids, "no gettext calls found"
    assert sorted(msgids - translated) == []


def test_every_client_role_label_has_a_german_translation():
    catalogue = polib.pofile(str(ROOT / "locale" / "de" / "LC_MESSAGES" / "djangojs.po"))
    translated = {
        (entry.msgctxt, entry.msgid): entry.msgstr
        for entry in catalogue.translated_entries()
        if "fuzzy" not in entry.flags
    }
    labels = re.findall(r'pgettext\(\s*"([^"]+)",\s*"([^"]+)"\)', client_code())
    assert len(labels) == 3
    assert {translated.get(label) for label in labels} == {
        "Ärztin/Arzt",
        "Patientin/Patient",
        "Begleitperson",
    }


def test_only_the_mesh_budget_module_limits_a_bitrate():
    """Two-person calls stay uncapped (KBV § 5 Nr. 7): caps live in bandwidth.js alone."""
    capped = [
        path.name
        for path in JS_DIR.glob("*.js")
        if re.search(r"\bmaxBitrate\b|b=AS:|b=TIAS:|\bmaxFramerate\b", path.read_text())
    ]
    assert capped == ["bandwidth.js"]


def test_call_page_has_tile_and_waiting_templates_for_the_doctor(client, doctor_issued_call):
    html = doctor_issued_call
    assert '<template data-role="tile-template">' in html
    assert '<template data-role="waiting-template">' in html
    assert 'data-action="remove"' in html and "Zurück ins Wartezimmer" in html


def test_patient_page_has_no_doctor_controls(client, issued):
    html = call_page(client, issued)
    assert '<template data-role="tile-template">' in html
    assert 'data-action="remove"' not in html
    assert 'data-role="waiting-template"' not in html


@pytest.mark.parametrize("path", ["/faq/", "/nutzungsbedingungen/"])
def test_faq_and_terms_say_who_may_join_and_that_the_doctor_lets_everyone_in(client, path):
    html = client.get(path).content.decode()
    for phrase in [
        "Begleitperson",
        "Dolmetscher",
        "Gruppensitzung",
        "höchstens neun Personen",
        "eigenen Gastcode",
        "lässt alle herein",
        "einzeln eintreten",
        "ins Wartezimmer zurückschicken",
    ]:
        assert phrase in html, phrase


def test_faq_in_english_says_the_same(client):
    client.post("/i18n/setlang/", {"language": "en", "next": "/faq/"})
    html = client.get("/faq/").content.decode()
    assert "at most nine people" in html and "lets everyone in" in html
