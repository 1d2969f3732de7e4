"""Issue 11 item 10: the SDP's DTLS fingerprint lines (signaling.protocol.check_content)."""

from __future__ import annotations

import pytest

from signaling import protocol
from tests.support.callclient import FINGERPRINT, make_sdp

SHA256_OTHER = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)
SHA384 = "a=fingerprint:sha-384 " + ":".join(["0C"] * 48)
SHA512 = "a=fingerprint:sha-512 " + ":".join(["9f"] * 64)


def offer(sdp: str) -> protocol.Message:
    return protocol.Message("offer", {"type": "offer", "sdp": sdp})


def refused(sdp: str) -> bool:
    try:
        protocol.check_content(offer(sdp))
    except protocol.ProtocolError as exc:
        assert exc.code == "insecure-sdp"
        return True
    return False


def with_media_fingerprint(line: str) -> str:
    """The session fingerprint plus `line` in a second media section."""
    return make_sdp() + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n" + line + "\r\n"


@pytest.mark.parametrize(
    "sdp",
    [
        # hash function on one line, the value on the next: `\s` used to bridge the break
        make_sdp().replace(FINGERPRINT, FINGERPRINT.replace("sha-256 ", "sha-256\r\n")),
        make_sdp().replace("a=fingerprint:", "a=fingerprint:\r\n"),
        make_sdp().replace(FINGERPRINT, "a=fingerprint:\r\n" + FINGERPRINT),  # empty line first
        make_sdp().replace(FINGERPRINT, "a=fingerprint:sha-256"),
        make_sdp().replace(FINGERPRINT, "a=fingerprint:sha-256 not-hex"),
        # the genuine value first, a second sha-256 value in a media section
        with_media_fingerprint(SHA256_OTHER),
        with_media_fingerprint(SHA256_OTHER.replace("sha-256", "SHA-256")),
    ],
)
def test_malformed_or_conflicting_fingerprints_are_refused(sdp):
    assert refused(sdp)


@pytest.mark.parametrize(
    "sdp",
    [
        make_sdp(),
        make_sdp().replace("\r\n", "\n"),
        # aiortc: one line per hash function
        make_sdp().replace(FINGERPRINT, "\r\n".join([FINGERPRINT, SHA384, SHA512])),
        # the same value repeated per media section (Chrome with several m= lines)
        with_media_fingerprint(FINGERPRINT),
        with_media_fingerprint(FINGERPRINT.replace("sha-256", "SHA-256").lower()),
    ],
)
def test_well_formed_fingerprints_are_accepted(sdp):
    assert not refused(sdp)


def test_an_sdp_without_fingerprint_stays_refused():
    assert refused(make_sdp().replace(FINGERPRINT + "\r\n", ""))


def _lines_by_split(sdp: str) -> list[str]:
    """The definition the fast finder must keep: split at CRLF, LF or CR, keep the
    lines that start with `a=fingerprint:` (any case)."""
    import re

    return [
        line for line in re.split(r"\r\n|\n|\r", sdp) if line.lower().startswith("a=fingerprint:")
    ]


def test_the_fingerprint_line_finder_is_the_line_split():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(
        ["a=fingerprint:", "A=FINGERPRINT:", "\r", "\n", "\r\n", " ", "sha-256", "AB:", "x", "a="]
    )

    @settings(max_examples=400, deadline=None)
    @given(st.lists(pieces, max_size=20))
    def check(parts):
        sdp = "".join(parts)
        assert list(protocol._fingerprint_lines(sdp)) == _lines_by_split(sdp)

    check()
