import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger("redconnect")


class Command(BaseCommand):
    help = "Serve pages, static files and WebSocket in one daphne process (no access log)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to bind")
        parser.add_argument("--port", type=int, default=8000, help="port to bind")

    def handle(self, *args, host: str, port: int, **options):
        # Importing daphne.server installs the asyncio Twisted reactor: do it first.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from redconnect.asgi import application
        from redconnect.serving import tune_autobahn, tune_gc, tune_twisted

        if settings.DEBUG:
            raise CommandError("serve refuses to run with DEBUG on; unset DEBUG.")
        if not 0 < port < 65536:
            raise CommandError(f"--port must be 1 to 65535, not {port}.")
        self.stdout.write(f"RED connect: http://{host}:{port}/ (Ctrl+C stops)", ending="\n")
        self.stdout.flush()
        tune_autobahn()
        tune_twisted()
        tune_gc()
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            # No action_logger: daphne's access log would record client addresses.
            action_logger=None,
            websocket_max_message_size=256 * 1024,
            websocket_max_frame_size=256 * 1024,
            verbosity=0,
        ).run()
