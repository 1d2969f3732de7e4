"""The patient's link: the join page with the code in the URL fragment.

A fragment (`/#code=…`) is never sent to the server by the browser, so the code
appears in no request line, proxy or server log; the join page's script moves it into
the form and removes it from the address bar (static/js/join.js).
"""

from __future__ import annotations

import segno
from django.utils.html import format_html

from consultations import services


def join_link(code: str) -> str:
    return f"{services.join_url()}#code={code}"


def qr_data_uri(code: str) -> str:
    """An SVG QR code of the join link as a data: URI (the CSP allows data: images)."""
    qr = segno.make(join_link(code), error="m")
    return qr.svg_data_uri(scale=4, border=2, dark="#000", light="#fff")


def qr_img(code: str, alt: str) -> str:
    return format_html(
        '<img class="rc-qr" src="{}" alt="{}" width="160" height="160">', qr_data_uri(code), alt
    )
