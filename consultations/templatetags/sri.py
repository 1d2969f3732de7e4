"""Static asset tags with Subresource Integrity, so users can verify the served code.

`{% sri_script "js/call.js" module=True %}` and `{% sri_stylesheet "css/site.css" %}`
emit the tag with an `integrity` attribute computed from the file that is served.
The transparency page lists the same values (`asset_integrity`).
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import lru_cache

from django import template
from django.conf import settings
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.utils.html import format_html

register = template.Library()


@lru_cache(maxsize=256)
def _digests(path: str, mtime_key: float) -> tuple[str, str]:
    with open(finders.find(path), "rb") as handle:
        data = handle.read()
    return (
        hashlib.sha256(data).hexdigest(),
        "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode(),
    )


def asset_integrity(path: str) -> tuple[str, str]:
    """(SHA-256 hex, SRI `sha384-…` value) of a static file as it is served now."""
    found = finders.find(path)
    if not found:
        raise FileNotFoundError(f"static file not found: {path}")
    # In development the file may change; in production the mtime never does.
    return _digests(path, os.stat(found).st_mtime if settings.DEBUG else 0.0)


@register.simple_tag
def sri_script(path: str, module: bool = False) -> str:
    _sha256, integrity = asset_integrity(path)
    if module:
        return format_html(
            '<script type="module" src="{}" integrity="{}"></script>', static(path), integrity
        )
    return format_html('<script src="{}" integrity="{}" defer></script>', static(path), integrity)


@register.simple_tag
def sri_stylesheet(path: str) -> str:
    _sha256, integrity = asset_integrity(path)
    return format_html('<link rel="stylesheet" href="{}" integrity="{}">', static(path), integrity)
