"""nginx in front of test server processes, configured from docs/deployment.md itself.

The guide's one `nginx` block is what operators copy; a second copy here could drift.
So the proxy takes from it, verbatim, every `upstream` block (with the guide's
`server 127.0.0.1:800N;` lines replaced by the test's processes), the `map` blocks, and
the `location` blocks of the TLS server. Only what a loopback test cannot have is left
out: TLS (proven by tests/test_compliance_tls.py), the port-80 redirect and the log
paths. Plain http on a free loopback port.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from tests.support.tlsserver import free_port, nginx_prelude, run_nginx

GUIDE = Path(__file__).resolve().parent.parent.parent / "docs" / "deployment.md"
GUIDE_SERVER = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+;\n", re.MULTILINE)

CONF = """\

{upstreams}

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;

{locations}
    }}
}}
"""


def guide_block() -> str:
    """The deployment guide's nginx configuration (there is exactly one)."""
    (block,) = re.findall(r"```nginx\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    return block


def blocks(text: str, header: str) -> list[str]:
    """Every `header … { … }` block (regex `header` at a line start), braces balanced;
    braces in quoted strings (e.g. a `return 403 '{…}'`) and comments do not count."""
    found = []
    for match in re.finditer(rf"^[ \t]*{header}[^{{;\n]*\{{", text, re.MULTILINE):
        depth, quote, index = 0, None, match.end() - 1
        while True:
            char = text[index]
            if quote:
                quote = None if char == quote else quote
            elif char == "#":  # a comment runs to the end of the line (and may say "it's")
                index = text.index("\n", index)
            elif char in "'\"":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        found.append(text[match.start() : index + 1])
    return found


def with_servers(upstream: str, ports: list[int]) -> str:
    """The upstream block with the guide's server lines replaced by `ports`."""
    (indent,) = set(GUIDE_SERVER.findall(upstream))  # the guide lists its servers alike
    own = "".join(f"{indent}server 127.0.0.1:{port};\n" for port in ports)
    first = GUIDE_SERVER.search(upstream).start()
    return upstream[:first] + own + GUIDE_SERVER.sub("", upstream[first:])


def proxy_config(prefix: Path, port: int, ports: list[int], connections: int = 1024) -> str:
    guide = guide_block()
    tls_server = next(b for b in blocks(guide, "server") if "listen 443 ssl;" in b)
    body = tls_server[tls_server.index("{") + 1 : tls_server.rindex("}")]
    upstreams = [with_servers(b, ports) for b in blocks(guide, "upstream")]
    # Only the server's own locations (4 spaces in); nested ones come with their parent.
    locations = [b for b in blocks(body, "location") if b.startswith("    location")]
    main = f"worker_rlimit_nofile {2 * connections + 64};\n"
    return nginx_prelude(prefix, connections, main) + CONF.format(
        port=port,
        upstreams="\n\n".join(upstreams + blocks(guide, "map")),
        locations="\n\n".join(locations),
    )


@contextmanager
def guide_proxy(
    directory: Path, ports: list[int], port: int | None = None, connections: int = 1024
):
    """nginx with the guide's upstreams and locations in front of `ports`; yields its
    port (pass `port` to know it before the servers start, e.g. for PUBLIC_URL).
    `connections`: client plus upstream connections at once (the benchmark needs more)."""
    port = port or free_port()
    prefix = directory / "nginx-proxy"
    with run_nginx(prefix, port, proxy_config(prefix, port, ports, connections)):
        yield port
