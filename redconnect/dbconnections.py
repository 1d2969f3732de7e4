"""Which database connections outlive their use (settings `CONN_MAX_AGE`).

Django's ASGI handler runs each HTTP request's sync code in a thread of its own
(`asgiref.sync.ThreadSensitiveContext`), and connections belong to a thread: a connection
a request leaves open is never used again and lingers until its thread is collected
(with PostgreSQL an idle server backend per past request). So an HTTP request closes its
connections when it ends, as with `CONN_MAX_AGE` 0, while the WebSocket consumers' one
database thread (Channels' `database_sync_to_async`, the same thread for every connect)
keeps its connection for `CONN_MAX_AGE` seconds: that is where a connect otherwise spent
a fifth of its database time opening SQLite/PostgreSQL connections. Channels checks it
before and after each use (`close_old_connections`, with `CONN_HEALTH_CHECKS`), so a
database outage closes it and the next connect opens a new one.
"""

from __future__ import annotations

from django.core.signals import request_finished
from django.db import connections


def close_request_connections(**_kwargs) -> None:
    """`request_finished`: close the finished request's connections (its thread's).

    Skipped inside an atomic block: only a test's transaction (the test client) is one
    then; a served request never ends inside one.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def connect_signals() -> None:
    request_finished.connect(close_request_connections, dispatch_uid="rc-close-request-db")
