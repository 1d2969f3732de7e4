"""URLconf for the security-header tests: the real routes plus views that fail on purpose."""

from django.core.exceptions import PermissionDenied
from django.urls import path

from redconnect import urls as root


def fail(request):
    raise RuntimeError("a bug in a view")


def forbid(request):
    raise PermissionDenied


urlpatterns = [
    path("test-error/500/", fail),
    path("test-error/403/", forbid),
    *root.urlpatterns,
]
handler500 = getattr(root, "handler500", "django.views.defaults.server_error")
