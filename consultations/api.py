"""Practice API (contract: shared/CONTRACT.md, "HTTP"): thin views over `api_services`.

Bearer-key authentication, no cookies, hence exempt from CSRF. Every answer is JSON;
errors are `{"error": message}` in English, for the practice system's developers.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import translation
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.views.decorators.csrf import csrf_exempt

from consultations import api_services
from consultations.api_services import ApiError


def _error(exc: ApiError) -> JsonResponse:
    response = JsonResponse({"error": exc.message}, status=exc.status)
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="redconnect"'
    return response


def _method_not_allowed(allowed: list[str]) -> JsonResponse:
    response = JsonResponse({"error": "Method not allowed."}, status=405)
    response["Allow"] = ", ".join(allowed)
    return response


def _api_view(handlers: dict[str, Callable]) -> Callable:
    """One endpoint: method dispatch, HTTPS and key check, English errors, no caching."""

    @csrf_exempt
    def view(request: HttpRequest, **kwargs) -> HttpResponse:
        handler = handlers.get(request.method)
        if handler is None:
            response = _method_not_allowed(list(handlers))
        else:
            with translation.override("en"):
                try:
                    api_services.require_https(request)
                    api_key = api_services.authenticate(request)
                    response = handler(request, api_key, **kwargs)
                except ApiError as exc:
                    response = _error(exc)
        # Responses carry clear access codes or appointment state: never cache them.
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True)
        return response

    return view


def _create(request, api_key, **kwargs) -> JsonResponse:
    payload = api_services.create_appointment(api_key, api_services.read_body(request))
    return JsonResponse(payload, status=201)


def _read(request, api_key, appointment_id: str) -> JsonResponse:
    appointment = api_services.appointment_of(api_key, appointment_id)
    return JsonResponse(api_services.appointment_as_json(appointment))


def _delete(request, api_key, appointment_id: str) -> HttpResponse:
    api_services.cancel(api_key, appointment_id)
    return HttpResponse(status=204)


def _add_guest(request, api_key, appointment_id: str) -> JsonResponse:
    return JsonResponse(api_services.add_guest(api_key, appointment_id), status=201)


def _reissue(request, api_key, appointment_id: str) -> JsonResponse:
    return JsonResponse(api_services.reissue(api_key, appointment_id))


appointments = _api_view({"POST": _create})
appointment = _api_view({"GET": _read, "DELETE": _delete})
appointment_guests = _api_view({"POST": _add_guest})
appointment_codes = _api_view({"POST": _reissue})
