from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from redconnect.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("compliance.urls")),
    path("", include("consultations.urls")),
]
