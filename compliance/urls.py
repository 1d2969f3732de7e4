"""The auditor's compliance page, under /admin/ (included before the admin's catch-all)."""

from django.urls import path

from compliance import views

urlpatterns = [
    path("admin/compliance/", views.page, name="compliance-report"),
    path("admin/compliance/report.pdf", views.pdf, name="compliance-report-pdf"),
]
