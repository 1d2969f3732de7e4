"""The agreement's numbers (Anlage 31b BMV-Ä), as the checks measure the product by them.

The product's own limits live where they are enforced (`consultations.models`,
`consultations.services`, settings); the checks compare those with these.
"""

from __future__ import annotations

from datetime import timedelta

MAX_ACCESS = timedelta(days=30)  # § 5 Nr. 3: access "höchstens einen Monat"
MAX_RETENTION_DAYS = 90  # § 5 Nr. 9: metadata deleted "spätestens nach drei Monaten"
PURGE_GRACE = timedelta(days=1)  # the purge timer runs daily: one day late is not a failure
