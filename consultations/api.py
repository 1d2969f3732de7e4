"""Practice API (issue 6 fills this in)."""

from django.http import JsonResponse


def appointments(request):
    return JsonResponse({"error": "not implemented"}, status=501)


def appointment(request, appointment_id):
    return JsonResponse({"error": "not implemented"}, status=501)
