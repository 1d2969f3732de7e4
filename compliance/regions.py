"""Where servers may stand (KBV Anlage 31b § 5 Nr. 9: "only servers in the EU")."""

from __future__ import annotations

EU_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
)
# EEA members outside the EU: legally close, but the agreement says "EU" — a warning.
EEA_ONLY_COUNTRIES = frozenset({"IS", "LI", "NO"})

# Public STUN/TURN services run outside the EU (or anycast worldwide): always refused,
# whatever country an entry declares for them.
NON_EU_PUBLIC_ICE_HOSTS = (
    "stun.l.google.com",
    ".l.google.com",
    "stun.services.mozilla.com",
    "global.stun.twilio.com",
    "global.turn.twilio.com",
    ".twilio.com",
    "stun.cloudflare.com",
    "turn.cloudflare.com",
    "stun.stunprotocol.org",
    "stun.voip.blackberry.com",
    "openrelay.metered.ca",
    ".metered.ca",
    ".metered.live",
)


def is_public_non_eu_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    for known in NON_EU_PUBLIC_ICE_HOSTS:
        if known.startswith(".") and host.endswith(known):
            return True
        if host == known:
            return True
    return False
