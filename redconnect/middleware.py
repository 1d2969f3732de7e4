"""Request log and headers that Django's own middleware does not set."""

from __future__ import annotations

import logging
import sys
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults

from redconnect import ratelimit

request_log = logging.getLogger("redconnect.requests")
logger = logging.getLogger("redconnect")


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


class ForwardedProtoMiddleware:
    """Believe `X-Forwarded-Proto` only from a trusted proxy (TRUSTED_PROXIES).

    Django's SECURE_PROXY_SSL_HEADER believes it from any peer; a client that reaches a
    server process directly could otherwise make a plain-http request count as https
    (no redirect, secure cookies over http). Outermost, before anything reads
    `request.is_secure()`.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not ratelimit.from_trusted_proxy(request):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
        return self.get_response(request)


class PermissionsPolicyMiddleware:
    """Camera and microphone for this origin only; everything else off."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


# --- Database outages -----------------------------------------------------------------

_DATABASE_DOWN = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 30


def database_unavailable(request) -> HttpResponse:
    """The German "please try again" answer (503); JSON for the practice API."""
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {"error": "service temporarily unavailable, please retry"}, status=503
        )
    else:
        response = render(request, "503.html", status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Turn a database outage in a view into the 503 page instead of a server error.

    Only the exception's class is logged: a driver message names the database server
    and could carry query parameters.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, _DATABASE_DOWN):
            logger.warning(
                "database unavailable (%s): %s %s answered 503",
                type(exception).__name__,
                request.method,
                request.path,
            )
            return database_unavailable(request)
        return None


def server_error(request) -> HttpResponse:
    """`handler500`: a database outage outside a view (e.g. saving the session) is a 503
    too; anything else gets the plain German error page, never a traceback."""
    exception = sys.exc_info()[1]
    if isinstance(exception, _DATABASE_DOWN):
        logger.warning("database unavailable (%s) answered 503", type(exception).__name__)
        return database_unavailable(request)
    return defaults.server_error(request)
