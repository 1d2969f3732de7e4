from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from redconnect.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Before the admin: its catch-all would otherwise answer /admin/compliance/ with 404.
    path("", include("compliance.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("board.urls")),
    path("", include("consultations.urls")),
]

# A database outage outside a view is a 503 "try again" page too; never a traceback.
handler500 = "redconnect.middleware.server_error"
