"""The baseline: a bare signaling relay written directly with `websockets`, without Django.

It speaks the same protocol as the project's `/ws/call/` (shared/CONTRACT.md): welcome,
waiting/peer-waiting, admit/admitted, offer/answer/candidate relayed only after admission,
the same validation order (size, JSON shape, type whitelist, state, SDP fingerprint), the
same per-connection frame limit, supersede and peer-left. What it leaves out is
everything Django adds: sessions, a database, the channel layer, middleware.

Its "join" is one `GET /join?code=ROOM.ROLE&name=…` answered with an HMAC-signed cookie:
no database lookup, no CSRF form. Run: `python bench/baseline_relay.py --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections import deque
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

SECRET = os.urandom(32)
COOKIE = "bj"
MAX_FRAME = 64 * 1024
RATE_FRAMES, RATE_WINDOW = 100, 10.0
RELAYED = {"offer", "answer", "candidate"}
KNOWN = RELAYED | {"admit", "bye"}
OTHER = {"doctor": "patient", "patient": "doctor"}


class Room:
    __slots__ = ("admitted", "names", "sockets")

    def __init__(self) -> None:
        self.sockets: dict[str, ServerConnection | None] = {"doctor": None, "patient": None}
        self.names: dict[str, str] = {}
        self.admitted = False


ROOMS: dict[str, Room] = {}


def sign(value: str) -> str:
    mac = hmac.new(SECRET, value.encode(), hashlib.sha256).hexdigest()[:32]
    return base64.urlsafe_b64encode(f"{value}|{mac}".encode()).decode()


def unsign(token: str) -> list[str] | None:
    try:
        value, mac = base64.urlsafe_b64decode(token.encode()).decode().rsplit("|", 1)
    except ValueError:
        return None
    expected = hmac.new(SECRET, value.encode(), hashlib.sha256).hexdigest()[:32]
    return value.split("|") if hmac.compare_digest(mac, expected) else None


def process_request(connection: ServerConnection, request):
    url = urlsplit(request.path)
    if url.path == "/join":
        query = parse_qs(url.query)
        room, _, role = query.get("code", [""])[0].partition(".")
        if role not in OTHER:
            return connection.respond(400, "bad code\n")
        token = sign(f"{room}|{role}|{query.get('name', [role])[0]}")
        headers = Headers([("Location", "/call/"), ("Set-Cookie", f"{COOKIE}={token}; Path=/")])
        return Response(302, "Found", headers, b"")
    if url.path == "/healthz":
        return connection.respond(200, '{"status": "ok"}')
    if url.path != "/ws/call/":
        return connection.respond(404, "not found\n")
    cookies = SimpleCookie(request.headers.get("Cookie", ""))
    connection.join = unsign(cookies[COOKIE].value) if COOKIE in cookies else None
    return None


async def send(socket: ServerConnection | None, message: dict) -> None:
    """Send to a peer; a vanished peer is not the sender's problem."""
    if socket is None:
        return
    try:
        await socket.send(json.dumps(message))
    except ConnectionClosed:
        pass


async def error(socket: ServerConnection, code: str) -> None:
    await send(socket, {"type": "error", "code": code, "message": code})


def relay_payload(kind: str, message: dict) -> dict | None:
    """Only the known fields of a well-formed message, or None."""
    if kind == "candidate":
        candidate = message.get("candidate")
        return (
            None
            if not (candidate is None or isinstance(candidate, dict))
            else {
                "type": kind,
                "candidate": candidate,
            }
        )
    sdp = message.get("sdp")
    return {"type": kind, "sdp": sdp} if isinstance(sdp, str) else None


async def handle_frame(socket: ServerConnection, room: Room, role: str, raw) -> None:
    if isinstance(raw, bytes) or len(raw.encode()) > MAX_FRAME:
        await error(socket, "too-large" if not isinstance(raw, bytes) else "bad-message")
        return
    try:
        message = json.loads(raw)
    except ValueError:
        await error(socket, "bad-message")
        return
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        await error(socket, "bad-message")
    elif kind not in KNOWN:
        await error(socket, "unknown-type")
    elif kind == "admit":
        await admit(socket, room, role)
    elif kind == "bye":
        if role == "patient":
            room.admitted = False
        await send(room.sockets[OTHER[role]], {"type": "peer-left"})
    else:
        payload = relay_payload(kind, message)
        if payload is None:
            await error(socket, "bad-message")
        elif not room.admitted:
            await error(socket, "not-admitted")
        elif "sdp" in payload and (
            "a=fingerprint:" not in payload["sdp"] or "a=crypto:" in payload["sdp"]
        ):
            await error(socket, "insecure-sdp")
        else:
            await send(room.sockets[OTHER[role]], payload)


async def admit(socket: ServerConnection, room: Room, role: str) -> None:
    if role != "doctor":
        await error(socket, "forbidden")
    elif room.sockets["patient"] is None:
        await error(socket, "nobody-waiting")
    else:
        room.admitted = True
        await send(socket, {"type": "admitted"})
        await send(room.sockets["patient"], {"type": "admitted"})


async def greet(socket: ServerConnection, room: Room, role: str) -> None:
    peer_role = OTHER[role]
    peer = room.sockets[peer_role]
    await send(
        socket,
        {
            "type": "welcome",
            "role": role,
            "ice_servers": [],
            "peer": {"role": peer_role, "name": room.names[peer_role]} if peer else None,
        },
    )
    if role == "patient":
        room.admitted = False
        await send(socket, {"type": "waiting"})
        await send(peer, {"type": "peer-waiting", "name": room.names["patient"]})
    elif peer is not None and room.admitted:
        await send(socket, {"type": "admitted"})
        await send(peer, {"type": "admitted"})
    elif peer is not None:
        await send(socket, {"type": "peer-waiting", "name": room.names["patient"]})


async def handler(socket: ServerConnection) -> None:
    if not getattr(socket, "join", None):
        await socket.close(4001)
        return
    room_id, role, name = socket.join
    room = ROOMS.setdefault(room_id, Room())
    old = room.sockets[role]
    room.sockets[role], room.names[role] = socket, name
    if old is not None:
        await old.close(4009)
    await greet(socket, room, role)
    frames: deque[float] = deque()
    try:
        async for raw in socket:
            now = time.monotonic()
            frames.append(now)
            while frames[0] < now - RATE_WINDOW:
                frames.popleft()
            if len(frames) > RATE_FRAMES:
                await socket.close(4029)
                break
            await handle_frame(socket, room, role, raw)
    except ConnectionClosed:
        pass
    finally:
        if room.sockets[role] is socket:
            room.sockets[role] = None
            if role == "patient":
                room.admitted = False
            await send(room.sockets[OTHER[role]], {"type": "peer-left"})
            if room.sockets[OTHER[role]] is None:
                ROOMS.pop(room_id, None)


async def main(port: int) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        compression=None,
        max_size=256 * 1024,
    ):
        print(f"baseline relay on ws://127.0.0.1:{port}/ws/call/", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
