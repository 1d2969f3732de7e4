from django.urls import path

from board import views

urlpatterns = [
    path("praxis/", views.board, name="board"),
    path("praxis/<str:appointment_id>/start", views.start, name="board-start"),
    path("praxis/<str:appointment_id>/message", views.message, name="board-message"),
]
