"""Where servers may stand (KBV Anlage 31b § 5 Nr. 9: "only servers in the EU").

The one home of the country lists and of how a declared country is rated: EU → pass,
EEA outside the EU → warn (legally close, but the agreement says "EU"), anything else or
nothing → fail. Used for the hosting declaration, STUN/TURN servers and TURN relays alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from compliance.registry import Status

EU_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
)
EEA_ONLY_COUNTRIES = frozenset({"IS", "LI", "NO"})

# Names for the countries a hosting provider may sensibly declare (public pages show
# them; anything else is shown as its ISO code and fails the check anyway).
COUNTRY_NAMES = {
    "AT": _("Austria"), "BE": _("Belgium"), "BG": _("Bulgaria"), "HR": _("Croatia"),
    "CY": _("Cyprus"), "CZ": _("Czechia"), "DK": _("Denmark"), "EE": _("Estonia"),
    "FI": _("Finland"), "FR": _("France"), "DE": _("Germany"), "GR": _("Greece"),
    "HU": _("Hungary"), "IE": _("Ireland"), "IT": _("Italy"), "LV": _("Latvia"),
    "LT": _("Lithuania"), "LU": _("Luxembourg"), "MT": _("Malta"), "NL": _("Netherlands"),
    "PL": _("Poland"), "PT": _("Portugal"), "RO": _("Romania"), "SK": _("Slovakia"),
    "SI": _("Slovenia"), "ES": _("Spain"), "SE": _("Sweden"), "IS": _("Iceland"),
    "LI": _("Liechtenstein"), "NO": _("Norway"),
}  # fmt: skip


def country_name(code: str) -> str:
    return str(COUNTRY_NAMES.get(code.upper(), code.upper()))


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


def country_status(country: str | None) -> Status:
    """EU → pass, EEA only → warn, other or undeclared → fail."""
    country = (country or "").upper()
    if country in EU_COUNTRIES:
        return Status.PASS
    if country in EEA_ONLY_COUNTRIES:
        return Status.WARN
    return Status.FAIL


def is_public_non_eu_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    for known in NON_EU_PUBLIC_ICE_HOSTS:
        if known.startswith(".") and host.endswith(known):
            return True
        if host == known:
            return True
    return False


@dataclass(frozen=True)
class IceEntry:
    url: str
    country: str | None  # as declared in ICE_SERVERS
    host: str

    @property
    def is_turn(self) -> bool:
        return self.url.startswith(("turn:", "turns:"))

    @property
    def status(self) -> Status:
        """A known public non-EU service fails whatever it declares."""
        if is_public_non_eu_host(self.host):
            return Status.FAIL
        return country_status(self.country)


def ice_entries() -> list[IceEntry]:
    """One entry per configured STUN/TURN URL."""
    entries = []
    for server in settings.ICE_SERVERS:
        urls = server.get("urls")
        for url in urls if isinstance(urls, list) else [urls]:
            host = re.split(r"[:?]", str(url).split(":", 1)[-1].lstrip("/"))[0]
            entries.append(IceEntry(str(url), server.get("country"), host.strip("[]")))
    return entries
