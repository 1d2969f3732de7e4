"""What consultations announces to the apps that depend on it.

consultations must not import signaling (signaling depends on consultations): instead
of calling signaling, `services` sends these signals, and signaling connects to them in
its AppConfig.ready() to end the live WebSocket connections.
"""

from django.dispatch import Signal

# An appointment was cancelled: every live connection ends (close "no session").
# Keyword argument: appointment_id.
appointment_closed = Signal()

# An appointment got new codes: joins made with older codes end (close "no session"),
# the doctor stays. Keyword arguments: appointment_id, codes_version (the new one).
codes_reissued = Signal()
