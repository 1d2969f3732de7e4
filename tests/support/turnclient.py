"""A minimal STUN/TURN client over UDP (RFC 8489, RFC 8656), for tests against coturn.

Enough to prove what a TURN server lets an authenticated client do: Allocate with
long-term credentials (401 challenge, then REALM/NONCE/MESSAGE-INTEGRITY), then
CreatePermission for a peer address. coturn answers 403 for a peer it must not relay
to (denied-peer-ip, loopback, its own addresses). Closing deletes the allocation
(Refresh, lifetime 0). No data relaying, no TCP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass, field

MAGIC = 0x2112A442
ALLOCATE, CREATE_PERMISSION, REFRESH = 0x0003, 0x0008, 0x0004
SUCCESS, ERROR = 0x0100, 0x0110
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE = 0x0006, 0x0008, 0x0009
REALM, NONCE, XOR_RELAYED_ADDRESS = 0x0014, 0x0015, 0x0016
XOR_PEER_ADDRESS, REQUESTED_TRANSPORT, XOR_MAPPED_ADDRESS = 0x0012, 0x0019, 0x0020
LIFETIME = 0x000D
UDP = 17
ALLOCATION_MISMATCH = 437


def rest_credentials(secret: str, ttl: int = 600, name: str = "test") -> tuple[str, str]:
    """coturn's TURN REST API scheme (`use-auth-secret`), computed independently."""
    username = f"{int(time.time()) + ttl}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def _attribute(kind: int, value: bytes) -> bytes:
    padding = b"\0" * (-len(value) % 4)
    return struct.pack("!HH", kind, len(value)) + value + padding


def _xor_address(ip: str, port: int, transaction: bytes) -> bytes:
    address = ipaddress.ip_address(ip)
    xport = port ^ (MAGIC >> 16)
    if address.version == 4:
        xaddr = int(address) ^ MAGIC
        return struct.pack("!BBHI", 0, 1, xport, xaddr)
    mask = int.from_bytes(struct.pack("!I", MAGIC) + transaction, "big")
    return struct.pack("!BBH", 0, 2, xport) + (int(address) ^ mask).to_bytes(16, "big")


def _parse_xor_address(value: bytes, transaction: bytes) -> tuple[str, int]:
    family, xport = value[1], struct.unpack("!H", value[2:4])[0]
    port = xport ^ (MAGIC >> 16)
    if family == 1:
        return str(ipaddress.IPv4Address(struct.unpack("!I", value[4:8])[0] ^ MAGIC)), port
    mask = int.from_bytes(struct.pack("!I", MAGIC) + transaction, "big")
    return str(ipaddress.IPv6Address(int.from_bytes(value[4:20], "big") ^ mask)), port


@dataclass
class Response:
    method: int
    success: bool
    attributes: dict[int, bytes] = field(default_factory=dict)
    transaction: bytes = b""

    @property
    def error(self) -> int | None:
        value = self.attributes.get(ERROR_CODE)
        if value is None:
            return None
        return (value[2] & 0x07) * 100 + value[3]

    @property
    def reason(self) -> str:
        value = self.attributes.get(ERROR_CODE, b"\0\0\0\0")
        return value[4:].decode("utf-8", "replace")

    def address(self, kind: int) -> tuple[str, int] | None:
        value = self.attributes.get(kind)
        return _parse_xor_address(value, self.transaction) if value else None


def parse(data: bytes) -> Response:
    kind, length, magic = struct.unpack("!HHI", data[:8])
    if magic != MAGIC:
        raise ValueError("not a STUN message")
    transaction = data[8:20]
    method = kind & 0x3EEF
    klass = kind & 0x0110
    attributes: dict[int, bytes] = {}
    offset = 20
    while offset + 4 <= 20 + length:
        attr, size = struct.unpack("!HH", data[offset : offset + 4])
        attributes.setdefault(attr, data[offset + 4 : offset + 4 + size])
        offset += 4 + size + (-size % 4)
    return Response(method, klass == SUCCESS, attributes, transaction)


class TurnClient:
    """One UDP socket, one allocation; `allocate()` then `create_permission(ip)`."""

    def __init__(
        self, server: tuple[str, int], username: str, password: str, timeout=3.0, source_port=0
    ):
        self.server = server
        self.username = username
        self.password = password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        if source_port:  # a test's chosen port; else the kernel's on first send
            # Only ever used inside a test's own network namespace (tests/support/netlab).
            self.sock.bind(("0.0.0.0", source_port))  # noqa: S104
        self.realm = b""
        self.nonce = b""
        self.relayed: tuple[str, int] | None = None
        self.mismatches = 0
        self.resent = 0  # requests sent again after no answer

    def close(self) -> None:
        """Delete the allocation (Refresh with lifetime 0, RFC 8656 §7), then the socket.

        Otherwise the allocation outlives the socket for its lifetime (10 minutes): it
        keeps counting against its username's quota, and a later socket that the kernel
        gives the same source port finds its 5-tuple taken (437, see `allocate`). The
        quota test still met a 437 once after this change (an allocation of some other
        client of the lab's address), hence the retry there as well.
        """
        try:
            if self.relayed is not None:
                self.release()
        except OSError:  # no answer (TimeoutError included): the lifetime ends it anyway
            pass
        finally:
            self.sock.close()

    def release(self) -> Response:
        lifetime = _attribute(LIFETIME, struct.pack("!I", 0))
        response = self.authenticated(REFRESH, lambda _t: [lifetime])
        if response.success:
            self.relayed = None
        return response

    def __enter__(self) -> TurnClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _key(self) -> bytes:
        text = f"{self.username}:{self.realm.decode()}:{self.password}"
        return hashlib.md5(text.encode(), usedforsecurity=False).digest()

    def _message(self, method: int, attributes, transaction: bytes, sign: bool) -> bytes:
        """`attributes(transaction)` gives the body (IPv6 XOR encoding needs the id)."""
        body = b"".join(attributes(transaction))
        if sign:
            body += _attribute(USERNAME, self.username.encode())
            body += _attribute(REALM, self.realm) + _attribute(NONCE, self.nonce)
            # The integrity covers the header with the length *including* its own 24 bytes.
            header = struct.pack("!HHI", method, len(body) + 24, MAGIC) + transaction
            mac = hmac.new(self._key(), header + body, hashlib.sha1).digest()
            body += _attribute(MESSAGE_INTEGRITY, mac)
        return struct.pack("!HHI", method, len(body), MAGIC) + transaction + body

    def request(self, method: int, attributes, sign: bool = True) -> Response:
        transaction = os.urandom(12)
        message = self._message(method, attributes, transaction, sign)
        for _attempt in range(3):  # UDP: resend on loss
            self.sock.sendto(message, self.server)
            try:
                while True:
                    response = parse(self.sock.recvfrom(4096)[0])
                    if response.transaction == transaction:
                        return response
            except TimeoutError:
                self.resent += 1
                continue
        raise TimeoutError(f"no answer from {self.server}")

    def authenticated(self, method: int, attributes) -> Response:
        response = self.request(method, attributes, sign=bool(self.nonce))
        if response.error in (401, 438):  # challenge, or stale nonce: retry once signed
            self.realm = response.attributes.get(REALM, self.realm)
            self.nonce = response.attributes.get(NONCE, self.nonce)
            response = self.request(method, attributes, sign=True)
        return response

    def allocate(self) -> Response:
        """Allocate a relayed address. On 437 (Allocation Mismatch: the server still holds
        an allocation on this source port, e.g. one a crashed client left behind on a port
        the kernel handed out again) retry from a new socket, three addresses in all, as
        RFC 8656 §7.3 tells a client to; `mismatches` counts such retries."""
        transport = _attribute(REQUESTED_TRANSPORT, struct.pack("!B3x", UDP))
        for _address in range(3):
            response = self.authenticated(ALLOCATE, lambda _t: [transport])
            if response.error != ALLOCATION_MISMATCH:
                break
            self.mismatches += 1
            timeout = self.sock.gettimeout()
            self.sock.close()
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.settimeout(timeout)
        if response.success:
            self.relayed = response.address(XOR_RELAYED_ADDRESS)
        return response

    def create_permission(self, peer_ip: str, peer_port: int = 9) -> Response:
        def peer(transaction: bytes) -> list[bytes]:
            return [_attribute(XOR_PEER_ADDRESS, _xor_address(peer_ip, peer_port, transaction))]

        return self.authenticated(CREATE_PERMISSION, peer)
