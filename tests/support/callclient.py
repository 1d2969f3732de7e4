"""A scripted participant for tests against real `manage.py serve` processes.

`HttpSession` is a tiny browser: cookies, CSRF token, no redirect following, optional
extra headers (e.g. `X-Forwarded-For`). `CallSocket` speaks the `/ws/call/` protocol with
the `websockets` library, sending the Origin and Cookie headers a browser would send.
Everything goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import re
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import websockets

BASE_DELAY, MAX_DELAY = 0.5, 8.0  # seconds, as in static/js/signaling.js
CLOSE_TRY_AGAIN, TRY_AGAIN_MAX_DELAY = 4503, 2.0  # "channel layer down": poll briefly

# A minimal offer that passes the contract's content rule (DTLS fingerprint, no SDES key).
FINGERPRINT = (
    "a=fingerprint:sha-256 "
    "7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08"
)


def make_sdp(marker: str = "rc") -> str:
    """A minimal, valid-looking SDP; `marker` ends up in the session name and ICE ufrag."""
    return "\r\n".join(
        [
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 0.0.0.0",
            f"s={marker}",
            "t=0 0",
            "a=group:BUNDLE 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            "a=mid:0",
            f"a=ice-ufrag:{marker[:32]}",
            "a=ice-pwd:asd88fgpdd777uzjYhagZg5zzj8ZdJ6b",
            FINGERPRINT,
            "a=setup:actpass",
            "a=sendrecv",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            "",
        ]
    )


def make_candidate(marker: str = "rc") -> dict:
    """An mDNS host candidate (no real address); `marker` is its foundation."""
    return {
        "candidate": f"candidate:{marker} 1 udp 2122260223 {marker}.local 54321 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


@dataclass
class HttpSession:
    base_url: str
    extra_headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Response:
        parts = urlsplit(self.base_url)
        assert parts.hostname == "127.0.0.1", "tests talk to the loopback address only"
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        all_headers = {**self.extra_headers, **(headers or {})}
        if self.cookies:
            all_headers["Cookie"] = self.cookie_header
        try:
            connection.request(method, path, body=body, headers=all_headers)
            raw = connection.getresponse()
            payload = raw.read().decode("utf-8", errors="replace")
            for name, value in raw.getheaders():
                if name.lower() == "set-cookie":
                    self._store_cookie(value)
            headers_out = {name.lower(): value for name, value in raw.getheaders()}
            return Response(raw.status, headers_out, payload)
        finally:
            connection.close()

    def _store_cookie(self, header: str) -> None:
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            if morsel["max-age"] == "0" or not morsel.value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    @property
    def origin(self) -> str:
        return self.base_url.rstrip("/")

    def get(self, path: str, headers: dict | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def csrf_token(self, path: str) -> str:
        """Load a form page and return the CSRF token a browser would submit."""
        page = self.get(path)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        if match:
            return match.group(1)
        assert "csrftoken" in self.cookies, f"no CSRF token on {path} ({page.status})"
        return self.cookies["csrftoken"]

    def post_form(self, path: str, data: dict[str, str], *, form_path: str | None = None):
        token = self.csrf_token(form_path or path.split("?")[0])
        body = urlencode({"csrfmiddlewaretoken": token, **data}).encode()
        return self.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": self.origin,
            },
        )

    def login(self, username: str, password: str) -> Response:
        response = self.post_form(
            "/admin/login/?next=/admin/", {"username": username, "password": password}
        )
        assert response.status == 302, f"login failed: {response.status} {response.body[:300]}"
        return response

    def join(self, code: str, name: str = "") -> Response:
        data = {"code": code, "name": name, "consent": "on"}
        return self.post_form("/", data)


class CallSocket:
    """One participant's `/ws/call/` connection with reconnect like the call page's."""

    def __init__(self, session: HttpSession, base_url: str | None = None, query: str = ""):
        self.session = session
        self.base_url = (base_url or session.base_url).rstrip("/")
        self.query = query  # the call page's data-ws-query (routing key), if any
        self.ws = None
        self.attempt = 0
        self.failed_attempts = 0

    @property
    def ws_url(self) -> str:
        url = "ws://" + self.base_url.split("://", 1)[1] + "/ws/call/"
        return url + (f"?{self.query}" if self.query else "")

    async def connect(self, timeout: float = 10) -> dict:
        """Open the socket and return the first message (the contract: `welcome`)."""
        self.ws = await websockets.connect(
            self.ws_url,
            origin=self.session.origin,
            additional_headers={"Cookie": self.session.cookie_header},
            open_timeout=timeout,
            max_size=2**20,
        )
        return await self.recv(timeout)

    def next_delay(self, code: int | None = None) -> float:
        """The call page's back-off (static/js/signaling.js): 0.5 s doubling up to 8 s
        (2 s while the server closes with 4503), ±25 % jitter; only a `welcome` resets it."""
        cap = TRY_AGAIN_MAX_DELAY if code == CLOSE_TRY_AGAIN else MAX_DELAY
        delay = min(cap, BASE_DELAY * 2**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.75, 1.25)

    async def connect_with_retry(self, deadline: float) -> dict:
        """Reconnect like the call page until a `welcome` arrives."""
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                welcome = await self.connect(timeout=max(0.5, deadline - time.monotonic()))
                if welcome.get("type") == "welcome":
                    self.attempt = 0
                    return welcome
                last_error = AssertionError(f"first message was {welcome}")
            except (TimeoutError, OSError, websockets.WebSocketException) as exc:
                last_error = exc
            self.failed_attempts += 1
            await self.close()
            await asyncio.sleep(self.next_delay(_close_code(last_error)))
        raise TimeoutError(f"could not reconnect before the deadline: {last_error!r}")

    async def send(self, message: dict | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = 10) -> dict:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return json.loads(raw)

    async def expect(self, kind: str, timeout: float = 10, skip: tuple[str, ...] = ()) -> dict:
        """The next message, which must be of type `kind` (types in `skip` are passed over)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message.get("type") in skip:
                continue
            assert message.get("type") == kind, f"expected {kind}, got {message}"
            return message

    async def closed_with(self, timeout: float = 10) -> int | None:
        """Wait for the server to close the socket; return the close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic()))
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        raise TimeoutError("socket still open")

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await self.ws.close()
            except Exception:  # noqa: S110  (already gone: nothing to close)
                pass
            self.ws = None


async def admit_and_negotiate(doctor: CallSocket, patient: CallSocket, marker: str) -> None:
    """Doctor admits the waiting patient; offer, answer and one candidate each way."""
    await doctor.send({"type": "admit"})
    await doctor.expect("admitted")
    await patient.expect("admitted")
    offer = make_sdp(f"offer{marker}")
    await doctor.send({"type": "offer", "sdp": offer})
    assert (await patient.expect("offer"))["sdp"] == offer
    answer = make_sdp(f"answer{marker}")
    await patient.send({"type": "answer", "sdp": answer})
    assert (await doctor.expect("answer"))["sdp"] == answer
    await exchange_candidates(doctor, patient, marker)


async def exchange_candidates(doctor: CallSocket, patient: CallSocket, marker: str) -> None:
    doctor_candidate = make_candidate(f"dc{marker}")
    await doctor.send({"type": "candidate", "candidate": doctor_candidate})
    assert (await patient.expect("candidate"))["candidate"] == doctor_candidate
    patient_candidate = make_candidate(f"pc{marker}")
    await patient.send({"type": "candidate", "candidate": patient_candidate})
    assert (await doctor.expect("candidate"))["candidate"] == patient_candidate
    await patient.send({"type": "candidate", "candidate": None})
    assert (await doctor.expect("candidate"))["candidate"] is None


def _close_code(error: Exception | None) -> int | None:
    """The close code the server sent, if the attempt ended with a close frame."""
    if isinstance(error, websockets.ConnectionClosed) and error.rcvd is not None:
        return error.rcvd.code
    return None
