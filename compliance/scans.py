"""Static inspections: rendered HTML, served static files, CSP header, model fields."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db import models

# --- Foreign origins in HTML ----------------------------------------------------------

# Attributes that make a browser load something (links a person may click are not loads).
LOADING_ATTRIBUTES = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "input": ("src",),
    "form": ("action",),
    "link": ("href",),
    "use": ("href", "xlink:href"),
    "image": ("href", "xlink:href"),
}
CSS_URL = re.compile(r"""url\(\s*['"]?\s*([^'")\s]+)""", re.IGNORECASE)
CSS_IMPORT = re.compile(r"""@import\s+['"]([^'"]+)""", re.IGNORECASE)


def own_origins() -> set[tuple[str, str]]:
    """(scheme-less) host:port values that count as this service's own origin."""
    public = urlsplit(settings.PUBLIC_URL)
    return {(public.hostname or "", str(public.port or ""))}


def is_foreign(url: str) -> bool:
    url = url.strip()
    if not url or url.startswith(("#", "data:", "blob:", "mediastream:", "about:")):
        return False
    parts = urlsplit(url)
    if not parts.netloc:  # a path on this origin
        return False
    return (parts.hostname or "", str(parts.port or "")) not in own_origins()


class _ResourceParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loads: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for attribute in LOADING_ATTRIBUTES.get(tag, ()):
            if attribute in values:
                self.loads.extend(_urls_of(attribute, values[attribute]))
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.loads.append(values.get("content", "").partition("url=")[2])
        if "style" in values:
            self.loads.extend(CSS_URL.findall(values["style"]))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.loads.extend(CSS_URL.findall(data) + CSS_IMPORT.findall(data))


def _urls_of(attribute: str, value: str) -> list[str]:
    if attribute == "srcset":
        return [candidate.strip().split(" ")[0] for candidate in value.split(",")]
    return [value]


def foreign_loads(html: str) -> list[str]:
    """URLs from other origins that this HTML makes a browser load."""
    parser = _ResourceParser()
    parser.feed(html)
    return sorted({url for url in parser.loads if is_foreign(url)})


def html_lang(html: str) -> str | None:
    match = re.search(r"<html[^>]*\blang=[\"']?([A-Za-z-]+)", html, re.IGNORECASE)
    return match.group(1).lower() if match else None


def links_in(html: str) -> set[str]:
    return {urlsplit(href).path for href in re.findall(r"""href=["']([^"']+)["']""", html)}


def visible_text_length(html: str) -> int:
    body = re.sub(r"(?is)<(script|style)[^>]*>.*?</\1>", " ", html)
    text = re.sub(r"<[^>]+>", " ", body)
    return len(re.sub(r"\s+", " ", text).strip())


# --- Static files ---------------------------------------------------------------------


@dataclass(frozen=True)
class StaticFile:
    path: str  # as served below STATIC_URL
    absolute: Path
    own: bool  # from the project's own static folder(s), not a third-party app

    def text(self) -> str:
        return self.absolute.read_text("utf-8", errors="replace")


def static_files(suffixes: tuple[str, ...] = (".js", ".mjs", ".css")) -> Iterator[StaticFile]:
    """Every static file the app serves (all finders), once per served path."""
    own_roots = [
        Path(entry[1] if isinstance(entry, tuple) else entry).resolve()
        for entry in settings.STATICFILES_DIRS
    ]
    seen: set[str] = set()
    for finder in finders.get_finders():
        for path, storage in finder.list([]):
            if path in seen or not path.endswith(suffixes):
                continue
            seen.add(path)
            absolute = Path(storage.path(path)).resolve()
            own = any(absolute.is_relative_to(root) for root in own_roots)
            yield StaticFile(path, absolute, own)


# JS/CSS constructs that load from a URL. A URL in a comment or a licence header is not
# a load; for the project's own files every absolute URL outside comments counts.
_JS_LOADS = re.compile(
    r"""(?:\bimport\s*\(?\s*|\bfrom\s+|\bfetch\s*\(\s*|\bimportScripts\s*\(\s*|"""
    r"""\bsendBeacon\s*\(\s*|new\s+(?:WebSocket|EventSource|Worker|SharedWorker)\s*\(\s*|"""
    r"""\.src\s*=\s*|\.href\s*=\s*|\bsetAttribute\s*\(\s*['"](?:src|href)['"]\s*,\s*)"""
    r"""['"`]((?:https?:|wss?:)?//[^'"`\s]+)""",
)
_ABSOLUTE_URL = re.compile(r"""['"`(]((?:https?|wss?):)?//([A-Za-z0-9.-]+\.[A-Za-z]{2,})""")
_COMMENT = re.compile(r"/\*.*?\*/|(?<![:'\"`\\])//[^\n]*", re.DOTALL)
# Namespace identifiers are names, not addresses: nothing is fetched from them.
_NAMESPACES = ("www.w3.org",)


def foreign_references(file: StaticFile) -> list[str]:
    text = file.text()
    found = {url for url in _JS_LOADS.findall(text) if is_foreign(_absolute(url))}
    if file.path.endswith(".css"):
        found |= {u for u in CSS_URL.findall(text) + CSS_IMPORT.findall(text) if is_foreign(u)}
    if file.own:
        without_comments = _COMMENT.sub(" ", text)
        for scheme, host in _ABSOLUTE_URL.findall(without_comments):
            url = f"{scheme or 'https:'}//{host}"
            if host not in _NAMESPACES and is_foreign(url):
                found.add(url)
    return sorted(found)


def _absolute(url: str) -> str:
    return "https:" + url if url.startswith("//") else url


# --- Content Security Policy ----------------------------------------------------------

SAFE_SOURCES = {"'self'", "'none'", "data:", "blob:", "mediastream:"}


def csp_foreign_sources(header: str) -> tuple[dict[str, list[str]], list[str]]:
    """(directives, sources that allow a foreign origin) of a CSP header."""
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    ws_own = {f"{scheme}://{urlsplit(settings.PUBLIC_URL).netloc}" for scheme in ("ws", "wss")}
    foreign = []
    for name, sources in directives.items():
        if name in ("report-uri", "report-to", "sandbox", "upgrade-insecure-requests"):
            continue
        for source in sources:
            lowered = source.lower()
            if lowered in SAFE_SOURCES or lowered.startswith(("'nonce-", "'sha")):
                continue
            if lowered in ("'unsafe-inline'", "'unsafe-eval'", "'strict-dynamic'"):
                continue
            if source in ws_own or (("://" in source) and not is_foreign(source)):
                continue
            foreign.append(f"{name} {source}")
    return directives, foreign


# --- Model fields ---------------------------------------------------------------------

# Every stored field, with the reason it cannot hold call content. A new field anywhere
# fails the check until it is reviewed and listed here.
FIELD_ALLOWLIST: dict[str, set[str]] = {
    # hide_patient_ip: a yes/no setting of the practice (relay-only mode), no content.
    "consultations.practice": {"id", "name", "hide_patient_ip", "created_at"},
    "consultations.membership": {"id", "user", "practice", "role"},
    "consultations.appointment": {
        "id",
        "practice",
        "doctor",
        "scheduled_at",
        "created_at",
        "expires_at",
        "cancelled_at",
        "doctor_code_digest",
        "patient_code_digest",
        "codes_version",  # a counter of re-issues
    },
    # Guest codes: a slot number 0-6 and the code's keyed digest.
    "consultations.guestcode": {"id", "appointment", "slot", "digest"},
    "consultations.apikey": {"id", "practice", "digest", "prefix", "created_at"},
    # Accounts of doctors, staff and auditors (never patients).
    "auth.user": {
        "id",
        "password",
        "last_login",
        "is_superuser",
        "username",
        "first_name",
        "last_name",
        "email",
        "is_staff",
        "is_active",
        "date_joined",
        "groups",
        "user_permissions",
    },
    "auth.group": {"id", "name", "permissions"},
    "auth.permission": {"id", "name", "content_type", "codename"},
    "contenttypes.contenttype": {"id", "app_label", "model"},
    # Admin logins only; the patient's join data lives in a signed cookie.
    "sessions.session": {"session_key", "session_data", "expire_date"},
    # Admin change history of appointments/practices (object names, never call data).
    "admin.logentry": {
        "id",
        "action_time",
        "user",
        "content_type",
        "object_id",
        "object_repr",
        "action_flag",
        "change_message",
    },
    # Second factor of staff logins.
    "otp_totp.totpdevice": {
        "id",
        "user",
        "name",
        "confirmed",
        "throttling_failure_timestamp",
        "throttling_failure_count",
        "created_at",
        "last_used_at",
        "key",
        "step",
        "t0",
        "digits",
        "tolerance",
        "drift",
        "last_t",
    },
}


def unlisted_fields(model_classes: Iterable[type[models.Model]]) -> tuple[int, list[str]]:
    """(number of fields scanned, fields not on the allowlist as `app.model.field`)."""
    scanned, unlisted = 0, []
    for model in model_classes:
        if model._meta.proxy or not model._meta.managed:
            continue
        label = model._meta.label_lower
        allowed = FIELD_ALLOWLIST.get(label, set())
        for field in model._meta.get_fields(include_hidden=False):
            if field.auto_created and not field.concrete:
                continue  # reverse relations hold nothing themselves
            scanned += 1
            if field.name not in allowed:
                unlisted.append(f"{label}.{field.name}")
    return scanned, unlisted
