"""Public information pages (KBV § 5 Nr. 10): German, complete, readable without login."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from consultations.public import served_assets

STATIC = Path(settings.BASE_DIR) / "static"
PAGES = ["terms", "privacy", "faq", "imprint", "transparency"]
FOOTER = ["terms", "privacy", "faq", "imprint", "transparency"]
PUBLIC_PATHS = {
    "terms": "/nutzungsbedingungen/",
    "privacy": "/datenschutz/",
    "faq": "/faq/",
    "imprint": "/impressum/",
    "transparency": "/transparenz/",
}


class _Text(HTMLParser):
    """Visible text of a page, one chunk per text node (scripts and styles skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in {"script", "style", "title"}

    def handle_endtag(self, tag):
        self._skip -= tag in {"script", "style", "title"}

    def handle_data(self, data):
        text = " ".join(data.split())
        if text and not self._skip:
            self.chunks.append(text)


def text_chunks(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return parser.chunks


def visible_text(html: str) -> str:
    return " ".join(text_chunks(html))


def get(client: Client, path: str, language: str | None = None) -> str:
    if language:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(path)
    assert response.status_code == 200, path
    return response.content.decode()


@pytest.fixture
def anonymous() -> Client:
    return Client()


@pytest.mark.parametrize("name", PAGES)
def test_public_page_is_german_without_login(anonymous, name):
    html = get(anonymous, reverse(name))
    assert '<html lang="de">' in html
    assert "Nutzungsbedingungen" in html and "Datenschutz" in html


@pytest.mark.parametrize("name", PAGES)
def test_public_page_links_every_information_page_in_its_footer(anonymous, name):
    html = get(anonymous, reverse(name))
    footer = html[html.index('<footer class="site-footer">') :]
    for target in FOOTER:
        assert f'href="{reverse(target)}"' in footer, target


def test_public_urls_are_the_contract_urls():
    for name, path in PUBLIC_PATHS.items():
        assert reverse(name) == path


def test_join_and_call_pages_carry_the_footer_links(anonymous):
    # The join page is where patients arrive; the call page extends the same base.
    html = get(anonymous, reverse("join"))
    assert '<html lang="de">' in html
    for target in FOOTER:
        assert f'href="{reverse(target)}"' in html, target


@pytest.mark.parametrize("name", [*PAGES, "join"])
def test_every_public_page_has_the_language_switch(anonymous, name):
    html = get(anonymous, reverse(name))
    assert f'action="{reverse("set_language")}"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'value="de"' in html and 'value="en"' in html


def test_language_switch_changes_the_language_and_returns_to_the_page(anonymous):
    response = anonymous.post(reverse("set_language"), {"language": "en", "next": "/datenschutz/"})
    assert response.status_code == 302 and response["Location"] == "/datenschutz/"
    html = anonymous.get("/datenschutz/").content.decode()
    assert '<html lang="en">' in html and "Privacy notice for the video consultation" in html


def test_browser_language_does_not_override_german_default(anonymous):
    html = anonymous.get("/faq/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="de">' in html and "Häufige Fragen" in html


def test_terms_cover_everything_the_agreement_asks_for(anonymous, settings):
    settings.OPERATOR_NAME = "Beispiel Betriebs GmbH"
    text = visible_text(get(anonymous, "/nutzungsbedingungen/"))
    for phrase in [
        "Beispiel Betriebs GmbH",  # parties: the operator …
        "Ihre Arztpraxis",  # … and the practice
        "§ 630a BGB",
        "Peer-to-Peer",
        "Ende-zu-Ende-verschlüsselt",
        "aktuellen Webbrowser",  # prerequisites
        "Kamera, ein Mikrofon",
        "1 Mbit/s",
        "Zugangscode aus 12 Zeichen",  # how to join
        "24 Stunden nach Ihrem Termin",
        "30 Tage",
        "geschlossenen Raum",  # participant duties
        "Keine Aufzeichnung",
        "echten Vor- und Nachnamen",
        "Verfügbarkeit",
        "Haftung",
        "Datenschutzhinweise",
        "Änderungen dieser Bedingungen",
        "Kontakt",
        "112",
    ]:
        assert phrase in text, phrase


def test_privacy_notice_names_roles_data_bases_rights_and_authority(anonymous, settings):
    settings.OPERATOR_NAME = "Beispiel Betriebs GmbH"
    settings.OPERATOR_EMAIL = "privacy@betrieb.example"
    text = visible_text(get(anonymous, "/datenschutz/"))
    for phrase in [
        "Verantwortlicher",
        "Ihre Arztpraxis",
        "Auftragsverarbeiter",
        "Art. 28 DSGVO",
        "Beispiel Betriebs GmbH",
        "privacy@betrieb.example",
        "IP-Adressen werden nicht gespeichert",
        "Ihr Name",
        "Peer-to-Peer",
        "DTLS-SRTP",
        "Ende-zu-Ende-verschlüsselt",
        "Die Sprechstunde wird nicht aufgezeichnet",
        "drei Monate",
        "Art. 6 Abs. 1 lit. b DSGVO",
        "Art. 9 Abs. 2",
        "Art. 15 DSGVO",
        "Art. 77 DSGVO",
        "Aufsichtsbehörde",
        "Bundeslandes",
    ]:
        assert phrase in text, phrase


@pytest.mark.parametrize(("days", "expected"), [(1, "1 Tag nach"), (14, "14 Tage nach")])
def test_privacy_notice_and_faq_state_the_configured_retention(anonymous, settings, days, expected):
    settings.METADATA_RETENTION_DAYS = days
    assert expected in visible_text(get(anonymous, "/datenschutz/"))
    assert expected in visible_text(get(anonymous, "/faq/"))


def test_https_sentence_only_when_the_public_url_is_https(anonymous, settings):
    settings.PUBLIC_HTTPS = False
    assert "(HTTPS)" not in get(anonymous, "/datenschutz/")
    settings.PUBLIC_HTTPS = True
    assert "(HTTPS)" in get(anonymous, "/datenschutz/")


def test_faq_answers_at_least_twelve_questions(anonymous):
    html = get(anonymous, "/faq/")
    questions = re.findall(r'<h2 id="q-[a-z-]+">([^<]+)</h2>', html)
    assert len(questions) >= 12
    assert all(question.endswith(("?", ".")) for question in questions)
    text = visible_text(html)
    for topic in [
        "Browser",
        "kein Bild",
        "testen",
        "aufgezeichnet",
        "sehen und hören",
        "Namen eingeben",
        "Code verloren",
        "nur mit Ton",
        "Sicherheitscode",
        "gelöscht",
        "kostet",
        "anrufen",
    ]:
        assert topic in text, topic


def test_imprint_shows_the_operator_settings(anonymous, settings):
    settings.OPERATOR_NAME = "Beispiel Betriebs GmbH"
    settings.OPERATOR_ADDRESS = "Hauptstraße 5, 10115 Berlin"
    settings.OPERATOR_EMAIL = "kontakt@betrieb.example"
    settings.HOSTING_PROVIDER = "Rechenzentrum Nord AG"
    settings.HOSTING_COUNTRY = "AT"
    html = get(anonymous, "/impressum/")
    text = visible_text(html)
    for value in [
        "Beispiel Betriebs GmbH",
        "Hauptstraße 5, 10115 Berlin",
        "kontakt@betrieb.example",
        "Rechenzentrum Nord AG",
        "Österreich",
        "§ 5 DDG",
    ]:
        assert value in text, value
    assert 'href="mailto:kontakt@betrieb.example"' in html
    assert "Beispielwerte" not in text


def test_imprint_warns_while_demo_values_are_configured(anonymous):
    assert "Beispielwerte" in visible_text(get(anonymous, "/impressum/"))


def test_transparency_lists_every_static_file_with_its_digests(anonymous):
    html = get(anonymous, "/transparenz/")
    files = sorted(
        p.relative_to(STATIC).as_posix()
        for p in STATIC.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(STATIC).parts)
    )
    assert files, "static/ is empty"
    for relative in files:
        data = (STATIC / relative).read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        assert f'<code class="hash" data-sha256="{relative}">{sha256}</code>' in html, relative
        listed = re.search(rf'data-integrity="{re.escape(relative)}">(sha384-[^<]+)<', html)
        assert listed, relative
        expected = "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()
        assert listed.group(1) == expected, relative


def test_integrity_attributes_in_pages_match_the_transparency_list(anonymous):
    listed = {asset.url: asset.integrity for asset in served_assets()}
    pages = [get(anonymous, reverse(name)) for name in [*PAGES, "join"]]
    used = {
        match.group(1): match.group(2)
        for html in pages
        for match in re.finditer(r'(?:src|href)="([^"]+)" integrity="([^"]+)"', html)
    }
    assert "/static/css/site.css" in used
    for url, integrity in used.items():
        assert listed.get(url) == integrity, url


def test_admin_files_are_not_listed_as_ours():
    assert all(not asset.path.startswith("admin/") for asset in served_assets())


@pytest.mark.parametrize("name", [*PAGES, "join"])
def test_german_page_contains_no_english_source_sentence(anonymous, name):
    english = _sentences(text_chunks(get(Client(), reverse(name), "en")))
    german = visible_text(get(anonymous, reverse(name)))
    # Configured values (operator name, address, …) are data, the same in both languages.
    data = [str(getattr(settings, name)) for name in settings.DEMO_DECLARATIONS]
    leaked = [
        sentence
        for sentence in english
        if sentence in german and not any(sentence in value for value in data)
    ]
    assert not leaked, leaked


def _sentences(chunks: list[str]) -> list[str]:
    """English sentences long enough to be prose (not names, hashes or file paths)."""
    parts = [part for chunk in chunks for part in re.split(r"(?<=[.:;?!])\s+", chunk)]
    return [part for part in parts if len(part) >= 25 and len(part.split()) >= 4]


@pytest.mark.parametrize("name", [*PAGES, "join"])
def test_english_page_is_english(anonymous, name):
    html = get(anonymous, reverse(name), "en")
    assert '<html lang="en">' in html
    text = visible_text(html)
    assert "Terms of use" in text and "Nutzungsbedingungen" not in text


def test_join_page_works_with_the_english_ui(anonymous, issued):
    anonymous.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = anonymous.get("/").content.decode()
    assert '<html lang="en">' in page and 'name="consent"' in page
    wrong = anonymous.post("/", {"name": "Erika Muster", "code": "0000-0000-0000", "consent": "on"})
    assert wrong.status_code == 200 and '<html lang="en">' in wrong.content.decode()
    joined = anonymous.post(
        "/", {"name": "Erika Muster", "code": issued.patient_code, "consent": "on"}
    )
    assert joined.status_code == 302 and joined["Location"].endswith("/call/")
    call = anonymous.get("/call/")
    assert call.status_code == 200 and '<html lang="en">' in call.content.decode()


def test_pages_load_no_foreign_origin(anonymous):
    for name in [*PAGES, "join"]:
        html = get(anonymous, reverse(name))
        assert not re.search(r'(?:src|href)="(?:https?:)?//', html), name


def test_call_page_carries_the_footer_links(anonymous, issued):
    joined = anonymous.post(
        "/", {"name": "Erika Muster", "code": issued.patient_code, "consent": "on"}
    )
    assert joined.status_code == 302
    html = get(anonymous, "/call/")
    assert '<html lang="de">' in html
    footer = html[html.index('<footer class="site-footer">') :]
    for target in FOOTER:
        assert f'href="{reverse(target)}"' in footer, target
