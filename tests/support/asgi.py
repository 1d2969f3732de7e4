"""A request through the project's ASGI application, as daphne hands it over."""

from __future__ import annotations


async def asgi_get(path: str, headers: list[tuple[bytes, bytes]] | None = None):
    """GET `path` through `redconnect.asgi.application` (static handler included).

    Returns the status, the response headers (title-cased names) and the body.
    """
    from asgiref.testing import ApplicationCommunicator

    from redconnect.asgi import application

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "headers": [(b"host", b"127.0.0.1"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    response_headers = {name.decode().title(): value.decode() for name, value in start["headers"]}
    return start["status"], response_headers, body
