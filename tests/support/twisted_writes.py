"""Run as a script: Twisted TCP writes with and without `redconnect.serving.write_now`.

Prints one JSON line for the mode given (write_now or buffered): how often a write made
the reactor watch the socket for writability (`addWriter`), and whether the peer
received every byte in order — a small write, a write far larger than the socket takes
at once, then small writes queued behind it, then a clean close.
"""

from __future__ import annotations

import json
import sys

from twisted.internet import asyncioreactor

asyncioreactor.install()

from twisted.internet import protocol, reactor, tcp  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402

from redconnect import serving  # noqa: E402

LARGE = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than a socket buffer takes
EXPECTED = b"hello" + LARGE + b"".join(b"tail%d" % i for i in range(100))


class Sender(protocol.Protocol):
    def connectionMade(self):
        watched_before = self.factory.counter["addWriter"]
        self.transport.write(b"hello")
        self.factory.small_write_watches = self.factory.counter["addWriter"] - watched_before
        self.transport.write(LARGE)
        for i in range(100):
            self.transport.write(b"tail%d" % i)
        self.transport.loseConnection()


class Receiver(protocol.Protocol):
    def connectionMade(self):
        self.received = []

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.factory.result = b"".join(self.received)
        self.factory.done()


def run(mode: str, counter: dict) -> dict:
    tcp.Connection.write = serving.write_now if mode == "write_now" else serving._buffered_write
    receiver_factory = protocol.Factory.forProtocol(Receiver)
    sender_factory = protocol.Factory.forProtocol(Sender)
    sender_factory.counter = counter
    finished = []
    receiver_factory.done = lambda: finished.append(True)
    port = reactor.listenTCP(0, receiver_factory, interface="127.0.0.1")
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    connected = endpoint.connect(sender_factory)
    result: dict = {}

    def check():
        if finished:
            result["intact"] = receiver_factory.result == EXPECTED
            result["received"] = len(receiver_factory.result)
            result["small_write_watches"] = sender_factory.small_write_watches
            port.stopListening()
            reactor.stop()
        else:
            reactor.callLater(0.01, check)

    connected.addErrback(lambda failure: (result.update(error=str(failure)), reactor.stop()))
    reactor.callLater(0.01, check)
    reactor.callLater(30, reactor.stop)
    reactor.run()
    return result


def main() -> None:
    mode = sys.argv[1]
    counter = {"addWriter": 0}
    original = reactor.addWriter

    def counting(writer):
        counter["addWriter"] += 1
        return original(writer)

    reactor.addWriter = counting
    print(json.dumps(run(mode, counter)))


if __name__ == "__main__":
    main()
