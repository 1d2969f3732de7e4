"""Times as people in Germany read them: Europe/Berlin, `24.12.2026, 10:00 Uhr (MEZ)`.

For command output meant for people; `--json` output stays ISO 8601 with offset.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")
_ZONE_NAMES = {"CET": "MEZ", "CEST": "MESZ"}


def human(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    local = moment.astimezone(BERLIN)
    zone = local.tzname() or ""
    return f"{local:%d.%m.%Y, %H:%M} Uhr ({_ZONE_NAMES.get(zone, zone)})"
