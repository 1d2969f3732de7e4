"""Deliberately non-compliant stand-ins, so every compliance check can be seen failing.

Each piece is what a careless implementation might look like: a join page that lets
anyone in, a relay that sends everything to everyone, a middleware that logs addresses.
The checks must catch each of them.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path

from consultations import services
from consultations.models import Appointment, GuestCode, Practice
from signaling import protocol, room

FOREIGN_SCRIPT = "https://ads.example.com/banner.js"


# --- A join page that opens the call for any code and anyone --------------------------


def naive_join(request):
    if request.method == "POST":
        response = HttpResponseRedirect("/call/")
        response.set_cookie(settings.JOIN_COOKIE_NAME, "anyone")
        return response
    return HttpResponse('<!doctype html><html lang="de"><body><form method="post"></form>')


def naive_board_start(request, appointment_id):
    """The board's one-click start without asking who presses it."""
    return naive_join(request)


def english_page(request):
    return HttpResponse('<!doctype html><html lang="en"><body><p>Terms.</p></body></html>')


def call_with_ads(request):
    return HttpResponse(
        f'<!doctype html><html lang="de"><script src="{FOREIGN_SCRIPT}"></script>'
        '<img srcset="https://tracker.example.net/p.gif 1x"></html>'
    )


urlpatterns = [
    path("admin/", admin.site.urls),
    path("", naive_join, name="join"),
    path("call/", call_with_ads, name="call"),
    path("nutzungsbedingungen/", english_page, name="terms"),
    path("datenschutz/", english_page, name="privacy"),
    path("faq/", english_page, name="faq"),
    path("impressum/", english_page, name="imprint"),
    path("praxis/<str:appointment_id>/start", naive_board_start, name="board-start"),
]


# --- A relay that puts everyone in one room and forwards everything -------------------


class NaiveRelay(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add("everyone", self.channel_name)
        await self.accept()
        await self.send_json({"type": "welcome", "role": "patient", "peer": None})

    async def receive_json(self, content, **kwargs):
        await self.channel_layer.group_send(
            "everyone", {"type": "relay", "content": content, "sender": self.channel_name}
        )

    async def relay(self, event):
        if event["sender"] != self.channel_name:
            await self.send_json(event["content"])


class RecordingRelay(NaiveRelay):
    """Also "keeps a log" of every message in the database."""

    async def receive_json(self, content, **kwargs):
        await database_sync_to_async(self._store)()
        await super().receive_json(content, **kwargs)

    def _store(self):
        Practice.objects.filter(pk=-1).update(name="relayed")


class BinaryRelay(NaiveRelay):
    """Forwards binary frames too — media through the server."""

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if bytes_data is not None:
            await self.channel_layer.group_send(
                "everyone", {"type": "relay.bytes", "data": bytes_data, "sender": self.channel_name}
            )
            return
        await super().receive(text_data=text_data, **kwargs)

    async def relay_bytes(self, event):
        if event["sender"] != self.channel_name:
            await self.send(bytes_data=event["data"])


def binary_application():
    return URLRouter([path("ws/call/", BinaryRelay.as_asgi())])


def naive_application():
    return URLRouter([path("ws/call/", NaiveRelay.as_asgi())])


def recording_application():
    return URLRouter([path("ws/call/", RecordingRelay.as_asgi())])


# --- A middleware that logs the client address ----------------------------------------


class AddressLoggingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        logging.getLogger("redconnect.requests").info(
            "request from %s", request.META.get("REMOTE_ADDR")
        )
        return self.get_response(request)


# --- Calls with guests: lookups and a room that ignore who may hear what ----------------

_real_find_by_code = services.find_by_code


def find_guest_by_slot(code, now=None):
    """Matches a guest code by its slot number in some appointment — not by its digest
    (here: always another appointment that has a guest in that slot, where there is one)."""
    match = _real_find_by_code(code, now)
    if match is None or match.role != services.GUEST:
        return match
    other = (
        GuestCode.objects.filter(
            slot=match.guest_slot, appointment__in=Appointment.objects.valid(now)
        )
        .exclude(appointment=match.appointment)
        .select_related("appointment")
        .first()
    )
    if other is None:
        return match
    return services.CodeMatch(other.appointment, services.GUEST, match.guest_slot)


def announce_to_everyone(self, event):
    """Room.on_joined that tells every connection of an admission, waiting or not."""
    other = self.others.get(event.get("from"))
    if other is None or not self.welcomed:
        return []
    other.admitted, other.order = True, self._next_order()
    if self.is_doctor:
        return [room.Send({"type": "admitted", "id": other.id})]
    return [room.Send(self._joined_message(other))]


_real_relay = room.Room._relay


def relay_to_anyone(self, message):
    """Room._relay that forwards `to` any connection of the appointment, admitted or not."""
    if message.to is None:
        return _real_relay(self, message)
    target = self.by_id(message.to)
    if target is None:
        raise protocol.ProtocolError("no-such-participant")
    text = protocol.encode({**message.data, "from": self.me.id})
    return [room.Deliver(target.channel, self._event("call.relay", text=text))]


def deliver_to_anyone(self, event):
    """Room.on_relay that hands every relayed message to its client, waiting or not."""
    return [room.SendText(event["text"])]
