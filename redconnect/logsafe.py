"""Log lines that cannot be forged, and no client addresses from daphne.

Every handler of the project formats with `EscapingFormatter`: control characters in a
message (a request path with `%0A`, a header value, a name) are written as escapes, so
one record is always one line and nobody can append a fake record to the log. Traceback
lines keep their line breaks but are indented, so they never look like a new record.
"""

from __future__ import annotations

import logging
import re

# C0/C1 controls and DEL, line/paragraph separators, and the bidi overrides and isolates
# that can make a line read differently from what it holds.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def escape_controls(text: str) -> str:
    """`text` with every control character written as a visible escape."""
    return _CONTROL.sub(_escape_char, text)


def _indented(text: str) -> str:
    return "\n".join("    " + escape_controls(line) for line in text.splitlines())


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


class DaphneAddressFilter(logging.Filter):
    """Daphne's "Application instance … took too long to shut down" warning prints the
    connection's scope and client address: keep the event, drop the details."""

    MARKER = "took too long to shut down"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("daphne") and self.MARKER in str(record.msg):
            record.msg = "An application instance took too long to shut down and was killed."
            record.args = ()
        return True
