"""The project's URLs plus `/bench/bare/` (bench/pages.py only, never deployed)."""

from django.http import HttpResponse
from django.urls import path

from redconnect.urls import urlpatterns as project_urlpatterns


def bare(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("bench/bare/", bare), *project_urlpatterns]
