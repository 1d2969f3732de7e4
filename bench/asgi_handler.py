"""Page requests through three Django handlers in one process: CPU per request.

`redconnect.handler.SyncChainASGIHandler` (what `redconnect.asgi` serves), Django's stock
`ASGIHandler` (middleware in a thread, back to the event loop at the innermost
middleware, into a thread again for the view) and Django's `WSGIHandler` (no event loop:
the floor). The three take turns, request by request, so that machine noise hits all of
them; no server, no sockets: only what the handler and the project's middleware and
views cost.

    .venv/bin/python bench/asgi_handler.py            # 1,000 requests per handler and page
    .venv/bin/python bench/asgi_handler.py --quick    # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, common_arguments, fmt, machine_info, print_table, ratio, write_results

PAGES = ("/", "/faq/")


def configure() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="redconnect-bench-handler-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "redconnect.settings")
    os.environ["REDCONNECT_VAR_DIR"] = str(workdir)
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    logging.disable(logging.INFO)  # the request log line is the same for all three


def asgi_scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"accept-language", b"de")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def asgi_get(handler, path: str) -> int:
    sent: list[dict] = []
    finished = asyncio.Event()
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await finished.wait()  # Django listens for a disconnect while it answers
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await handler(asgi_scope(path), receive, send)
    finished.set()
    return sent[0]["status"]


def wsgi_get(handler, path: str) -> int:
    status = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT_LANGUAGE": "de",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
    }
    response = handler(environ, lambda line, headers: status.append(int(line.split()[0])))
    b"".join(response)
    response.close()
    return status[0]


async def measure(requests: int) -> dict:
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    from redconnect.asgi import django_asgi_app

    handlers = {
        "sync_chain_asgi": ("asgi", django_asgi_app),
        "stock_asgi": ("asgi", ASGIHandler()),
        "wsgi": ("wsgi", WSGIHandler()),
    }
    results: dict = {}
    for path in PAGES:
        cpu = dict.fromkeys(handlers, 0.0)
        for round_ in range(requests + 20):  # the first 20 warm up
            for name, (kind, handler) in handlers.items():
                started = time.process_time()
                status = (
                    await asgi_get(handler, path) if kind == "asgi" else wsgi_get(handler, path)
                )
                if status != 200:
                    raise RuntimeError(f"{name} GET {path}: HTTP {status}")
                if round_ >= 20:
                    cpu[name] += time.process_time() - started
        results[path] = {name: round(total / requests * 1000, 3) for name, total in cpu.items()}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, quick_help="smoke run: 20 requests per handler and page")
    parser.add_argument("--requests", type=int, default=1000, help="requests per handler and page")
    args = parser.parse_args()
    configure()
    requests = 20 if args.quick else args.requests
    results = asyncio.run(measure(requests))
    rows = []
    for path, cpu in results.items():
        for name, ms in cpu.items():
            rows.append((path, name, fmt(ms, 2), fmt(ratio(ms, cpu["wsgi"]), 2)))
    print_table(
        "CPU per page request (ms), one process, handlers taking turns",
        rows,
        ("page", "handler", "CPU ms/request", "/ wsgi"),
    )
    write_results(
        "asgi-handler",
        {"machine": machine_info(), "requests": requests, "cpu_ms": results},
        args.json_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
