"""Keep the German catalogues up to date without clobbering each other's work.

    python scripts/i18n.py update              # makemessages for django + djangojs (de)
    python scripts/i18n.py set FILE.json       # update, then fill msgstrs from a JSON map
    python scripts/i18n.py missing             # list untranslated and fuzzy entries

FILE.json maps msgid → German text; for plural entries the value is a list
[singular, plural]; for entries with a context (pgettext) the key is "context\\u0004msgid".
Every call holds a file lock, so several people can run it at the same time.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "locale" / "de" / "LC_MESSAGES"
CATALOGUES = [LOCALE / "django.po", LOCALE / "djangojs.po"]
IGNORE = [".venv", "var", "bench", "tests", "scripts", "docs", "node_modules"]


@contextmanager
def locked():
    LOCALE.mkdir(parents=True, exist_ok=True)
    with open(LOCALE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def makemessages() -> None:
    ignores = [arg for name in IGNORE for arg in ("--ignore", f"{name}/*")]
    base = [sys.executable, "manage.py", "makemessages", "-l", "de", "--no-obsolete", *ignores]
    subprocess.run([*base, "-d", "django"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*base, "-d", "djangojs"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def key_of(entry: polib.POEntry) -> str:
    return f"{entry.msgctxt}\u0004{entry.msgid}" if entry.msgctxt else entry.msgid


def apply(translations: dict) -> int:
    changed = 0
    for path in CATALOGUES:
        if not path.exists():
            continue
        catalogue = polib.pofile(str(path), wrapwidth=100)
        for entry in catalogue:
            value = translations.get(key_of(entry))
            if value is None:
                continue
            if entry.msgid_plural:
                entry.msgstr_plural = {0: value[0], 1: value[1]}
            else:
                entry.msgstr = value
            if "fuzzy" in entry.flags:
                entry.flags.remove("fuzzy")
            entry.previous_msgid = entry.previous_msgid_plural = entry.previous_msgctxt = None
            changed += 1
        catalogue.save()
    return changed


def missing() -> list[str]:
    lines = []
    for path in CATALOGUES:
        if not path.exists():
            continue
        catalogue = polib.pofile(str(path))
        for entry in catalogue.untranslated_entries() + catalogue.fuzzy_entries():
            lines.append(f"{path.name}: {key_of(entry)!r}")
    return lines


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "missing"
    with locked():
        if command in {"update", "set"}:
            makemessages()
        if command == "set":
            translations = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
            print(f"{apply(translations)} entries set")
    if command in {"update", "set", "missing"}:
        gaps = missing()
        print("\n".join(gaps) if gaps else "catalogues complete")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
