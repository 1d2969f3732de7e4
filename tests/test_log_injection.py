"""Issue 11 item 11: a request path (or any logged value) cannot forge a log line, and
daphne's shut-down warning loses the client address it carries."""

from __future__ import annotations

import io
import logging
import re
from contextlib import contextmanager

import pytest

from tests.support.callclient import HttpSession
from tests.support.live import ServeProcess, embedded_env

FORGED = "2031-01-01 00:00:00,000 INFO redconnect.requests GET /forged 200 1.0ms"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@contextmanager
def captured(logger_name: str):
    """What the project's configured handler of `logger_name` writes."""
    handler = next(h for h in logging.getLogger(logger_name).handlers)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def test_a_request_path_cannot_forge_a_log_line(tmp_path):
    server = ServeProcess(embedded_env(tmp_path)).start()
    try:
        path = "/faq/%0A" + FORGED.replace(" ", "%20") + "%0D%0A%1B[2J%E2%80%A8x"
        assert HttpSession(server.url).get(path).status == 404
    finally:
        server.stop()
    lines = server.output().splitlines()
    assert not any(line.startswith("2031-01-01") for line in lines), server.output()
    logged = [line for line in lines if "/faq/" in line]
    assert len(logged) == 1, lines
    assert "/faq/\\n2031-01-01" in logged[0] and "\\r\\n\\x1b[2J\\u2028x" in logged[0]
    assert RECORD_START.match(logged[0])


def test_every_project_handler_escapes_controls(settings):
    with captured("redconnect") as stream:
        logging.getLogger("redconnect").warning("value %s", "a\nb\r\x00\u202e")
    assert stream.getvalue().count("\n") == 1
    assert "value a\\nb\\r\\x00\\u202e" in stream.getvalue()


def test_traceback_lines_never_look_like_a_record():
    with captured("redconnect") as stream:
        try:
            raise ValueError("bad\n" + FORGED)
        except ValueError:
            logging.getLogger("redconnect").exception("failed")
    lines = stream.getvalue().splitlines()
    assert RECORD_START.match(lines[0]) and lines[0].endswith("failed")
    assert all(line.startswith("    ") for line in lines[1:]), lines
    assert not any(RECORD_START.match(line) for line in lines[1:])


@pytest.mark.parametrize("logger_name", ["daphne.server", "daphne"])
def test_daphne_shutdown_warning_holds_no_client_address(logger_name):
    # daphne/server.py's own call, with the scope repr it passes.
    scope = "{'type': 'websocket', 'client': ['198.51.100.23', 50123], 'path': '/ws/call/'}"
    with captured("daphne") as stream:
        logging.getLogger(logger_name).warning(
            "Application instance %r for connection %s took too long to shut down and was killed.",
            scope,
            "<WebSocketProtocol client=tcp4:198.51.100.23:50123>",
        )
    text = stream.getvalue()
    assert "took too long to shut down" in text
    assert "198.51.100.23" not in text and "client" not in text
