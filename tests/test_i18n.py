"""The German catalogue is complete and valid: an incomplete or broken one fails `make test`.

German is what patients read (KBV § 5 Nr. 10); an English msgid leaking onto a German
page, a fuzzy entry that gettext silently ignores, or a `.po` that msgfmt rejects would
all go unnoticed without these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import translation
from django.utils.translation import gettext, ngettext

ROOT = Path(settings.BASE_DIR)
LOCALE = ROOT / "locale" / "de" / "LC_MESSAGES"
CATALOGUES = ["django.po", "djangojs.po"]
# What a person reads lives in these trees; tests, scripts and docs are not shipped text.
SOURCE_TREES = [
    "redconnect",
    "consultations",
    "signaling",
    "compliance",
    "board",
    "templates",
    "static",
]


def key(entry: polib.POEntry) -> str:
    return f"{entry.msgctxt}\u0004{entry.msgid}" if entry.msgctxt else entry.msgid


@pytest.mark.parametrize("name", CATALOGUES)
def test_catalogue_has_no_untranslated_or_fuzzy_entries(name):
    catalogue = polib.pofile(str(LOCALE / name))
    untranslated = [key(e) for e in catalogue.untranslated_entries()]
    fuzzy = [key(e) for e in catalogue.fuzzy_entries()]
    assert not untranslated, f"{name}: untranslated: {untranslated}"
    assert not fuzzy, f"{name}: fuzzy: {fuzzy}"
    assert not catalogue.metadata_is_fuzzy
    assert catalogue.metadata["Language"] == "de"


@pytest.mark.parametrize("name", CATALOGUES)
def test_catalogue_passes_msgfmt_check(name, tmp_path):
    # --check: header, format strings (python-/javascript-format placeholders), domain.
    result = subprocess.run(
        ["msgfmt", "--check", "-o", str(tmp_path / "out.mo"), str(LOCALE / name)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", CATALOGUES)
def test_translations_keep_the_placeholders(name):
    placeholder = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\w*\}")
    for entry in polib.pofile(str(LOCALE / name)).translated_entries():
        if entry.msgid_plural:
            pairs = [(entry.msgid_plural, text) for text in entry.msgstr_plural.values()]
        else:
            pairs = [(entry.msgid, entry.msgstr)]
        for source, text in pairs:
            expected = sorted(set(placeholder.findall(source)))
            assert sorted(set(placeholder.findall(text))) == expected, key(entry)


def test_catalogue_covers_every_translatable_string_in_the_source(tmp_path):
    """Extract afresh from a copy of the source: every msgid must be in the catalogue.

    Catches a string added to code or a template without updating the catalogue
    (`scripts/i18n.py set`), which would otherwise show English on a German page.
    """
    copy = tmp_path / "src"
    for tree in SOURCE_TREES:
        if (ROOT / tree).exists():
            shutil.copytree(ROOT / tree, copy / tree, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "manage.py", copy / "manage.py")
    (copy / "locale").mkdir()
    env = {**os.environ, "REDCONNECT_VAR_DIR": str(tmp_path / "var")}
    for domain in ("django", "djangojs"):
        subprocess.run(
            [sys.executable, "manage.py", "makemessages", "-l", "de", "-d", domain, "-v0"],
            cwd=copy,
            env=env,
            check=True,
            capture_output=True,
        )
        fresh = polib.pofile(str(copy / "locale/de/LC_MESSAGES" / f"{domain}.po"))
        committed = polib.pofile(str(LOCALE / f"{domain}.po"))
        translated = {key(e) for e in committed.translated_entries()}
        missing = sorted(key(e) for e in fresh if key(e) not in translated)
        assert not missing, f"{domain}.po lacks German for: {missing}"


def test_compiled_catalogue_is_in_use():
    with translation.override("de"):
        assert gettext("Terms of use") == "Nutzungsbedingungen"
        assert ngettext(
            "This installation serves %(files)s file of its own:",
            "This installation serves %(files)s files of its own:",
            2,
        ) == ("Diese Installation liefert %(files)s eigene Dateien aus:")
    with translation.override("en"):
        assert gettext("Terms of use") == "Terms of use"


@pytest.mark.parametrize("name", CATALOGUES)
def test_compiled_catalogue_is_not_older_than_its_source(name):
    po, mo = LOCALE / name, (LOCALE / name).with_suffix(".mo")
    assert mo.exists(), f"{mo.name} missing: run `make messages`"
    assert mo.stat().st_mtime >= po.stat().st_mtime, f"{mo.name} is stale: run `make messages`"


def test_javascript_catalogue_serves_german(client):
    response = client.get("/jsi18n/")
    assert response.status_code == 200
    catalogue = polib.pofile(str(LOCALE / "djangojs.po"))
    entries = [e for e in catalogue.translated_entries() if not e.msgid_plural and not e.msgctxt]
    assert entries, "djangojs.po has no entries"
    served = json.loads(
        re.search(r"const newcatalog = (\{.*?\});\n", response.content.decode(), re.S).group(1)
    )
    for entry in entries:
        assert served.get(entry.msgid) == entry.msgstr, entry.msgid


def test_broken_catalogue_fails_compilemessages(tmp_path, monkeypatch, settings):
    """`make messages` runs compilemessages; a .po that msgfmt rejects must stop it."""
    broken = tmp_path / "locale" / "de" / "LC_MESSAGES"
    broken.mkdir(parents=True)
    (broken / "django.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Hello %(name)s"\nmsgstr "Hallo %(nom)s"\n\nmsgid "unterminated\n',
        encoding="utf-8",
    )
    settings.LOCALE_PATHS = [tmp_path / "locale"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError):
        call_command("compilemessages", verbosity=0)


def test_make_test_compiles_messages_and_does_not_ignore_errors():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^messages:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe and "compilemessages" in recipe.group(1)
    assert "|| true" not in recipe.group(1) and not re.search(r"^\t-", recipe.group(1), re.M)
    assert re.search(r"^test:.*\bmessages\b", makefile, re.MULTILINE)


def test_language_settings():
    assert settings.LANGUAGE_CODE == "de"
    assert [code for code, _name in settings.LANGUAGES] == ["de", "en"]
    assert any(
        "LocaleMiddleware" in name or name == "redconnect.i18n.ChosenLanguageMiddleware"
        for name in settings.MIDDLEWARE
    )
