"""Request log and headers that Django's own middleware does not set."""

from __future__ import annotations

import logging
import time

from django.conf import settings

request_log = logging.getLogger("redconnect.requests")


class RequestLogMiddleware:
    """Log method, path (without query string), status and duration — nothing else.

    Replaces daphne's access log, which records the client address.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        request_log.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response


class PermissionsPolicyMiddleware:
    """Camera and microphone for this origin only; everything else off."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
