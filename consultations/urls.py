from django.urls import path

from consultations import api, public, views

urlpatterns = [
    path("", views.join, name="join"),
    path("call/", views.call, name="call"),
    path("nutzungsbedingungen/", public.terms, name="terms"),
    path("datenschutz/", public.privacy, name="privacy"),
    path("faq/", public.faq, name="faq"),
    path("impressum/", public.imprint, name="imprint"),
    path("transparenz/", public.transparency, name="transparency"),
    path("api/v1/appointments", api.appointments, name="api-appointments"),
    path("api/v1/appointments/<str:appointment_id>", api.appointment, name="api-appointment"),
    path(
        "api/v1/appointments/<str:appointment_id>/guests",
        api.appointment_guests,
        name="api-appointment-guests",
    ),
    path(
        "api/v1/appointments/<str:appointment_id>/codes",
        api.appointment_codes,
        name="api-appointment-codes",
    ),
]
