"""The embedded default's e-mail backend: says that a message would go out, nothing more.

Django's console backend prints whole messages — an invitation holds the patient's
address and a clear access code, neither of which may reach a log (DESIGN "Data").
Configure EMAIL_URL (SMTP) to really send.
"""

from __future__ import annotations

import sys
import threading

from django.core.mail.backends.base import BaseEmailBackend


class PrivateConsoleBackend(BaseEmailBackend):
    def __init__(self, *args, stream=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stream = stream or sys.stdout
        self._lock = threading.RLock()

    def send_messages(self, email_messages) -> int:
        with self._lock:
            for message in email_messages:
                self.stream.write(
                    "e-mail not sent (console backend; set EMAIL_URL to send): "
                    f"{len(message.recipients())} recipient(s), "
                    f"{len(message.attachments)} attachment(s); address and content withheld\n"
                )
            self.stream.flush()
        return len(list(email_messages))
