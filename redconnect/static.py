"""Static files from the app itself, with the same security headers as every page.

Django's static files handler answers before any middleware runs, so the scripts and
style sheets would go out without `X-Content-Type-Options: nosniff`, CSP, frame
protection or HSTS. The handler below applies the header-setting middleware's
`process_response` to them.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.http import HttpRequest, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware

_HEADER_MIDDLEWARE = (SecurityMiddleware, CSPMiddleware, XFrameOptionsMiddleware)


def _no_view(request: HttpRequest) -> HttpResponseBase:
    raise RuntimeError("only process_response is used")


def add_security_headers(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    # Instantiated per response: cheap, and settings are read as they are now.
    for middleware in _HEADER_MIDDLEWARE:
        response = middleware(_no_view).process_response(request, response)
    response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
    return response


class SecureStaticFilesHandler(ASGIStaticFilesHandler):
    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        response = await super().get_response_async(request)
        return add_security_headers(request, response)
