"""The /ws/call/ close codes, error codes and message types have one home:
redconnect/callcodes.py. Nothing else in the server code types them again."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from django.conf import settings

from redconnect import callcodes
from signaling import protocol

ROOT = Path(settings.BASE_DIR)
SERVER_PACKAGES = ("consultations", "signaling", "compliance", "redconnect", "board")
HOME = ROOT / "redconnect" / "callcodes.py"


def python_sources():
    for package in SERVER_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != HOME and "migrations" not in path.parts:
                yield path


def literals(path: Path):
    """(kind, value) of every number and string literal token in the file's code."""
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NUMBER:
            yield "number", token.string
        elif token.type == tokenize.STRING:
            yield "string", token.string.strip("\"'")


def test_no_close_or_error_code_is_typed_outside_its_home():
    numbers = {str(code) for code in callcodes.CLOSE_CODES.values()}
    errors = set(callcodes.ERROR_CODES)
    offenders = [
        f"{path.relative_to(ROOT)}: {value}"
        for path in python_sources()
        for kind, value in literals(path)
        if (kind == "number" and value in numbers) or (kind == "string" and value in errors)
    ]
    assert offenders == []


def test_the_scan_sees_a_re_typed_code(tmp_path):
    """The scan above must be able to fail."""
    sample = tmp_path / "sample.py"
    sample.write_text('CLOSE = 4009\nraise ProtocolError("forbidden")  # 4001 in a comment\n')
    assert list(literals(sample)) == [("number", "4009"), ("string", "forbidden")]


def test_every_server_message_type_is_in_the_table():
    sent = set()
    for path in (ROOT / "signaling").glob("*.py"):
        sent |= set(re.findall(r'"type": "([a-z-]+)"', path.read_text(encoding="utf-8")))
    assert sent and sent <= set(callcodes.table()["type"].values())


def test_every_error_code_has_a_message_and_the_protocol_uses_the_table():
    assert set(protocol.ERROR_MESSAGES) == set(callcodes.ERROR_CODES)
    assert protocol.CLIENT_TYPES == set(callcodes.CLIENT_TYPES)
    assert protocol.CLOSE_NO_SESSION == callcodes.CLOSE_NO_SESSION


def test_table_names_are_unique_and_final_codes_are_close_codes():
    table = callcodes.table()
    assert len(table["error"]) == len(callcodes.ERROR_CODES)
    assert len(table["type"]) == len(set(callcodes.CLIENT_TYPES + callcodes.SERVER_TYPES))
    assert set(table["final"]) <= set(table["close"].values())
