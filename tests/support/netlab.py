"""A small real network of Linux network namespaces for the network tests (root only).

    practice (198.18.1.10) ─ pnat ─┐                         ┌─ hnat ─ home (198.18.2.10)
                   198.51.100.2 wan┴─ internet (router) ─────┴wan 198.51.100.130
                                        lo: 203.0.113.10  (manage.py serve, coturn)

Five namespaces with random names, joined by veth pairs among themselves only; nothing
is connected to the machine's interfaces and no namespace has a default route, so all
traffic stays inside the lab. The "internet" routes between the two NAT routers' public
sides (198.51.100.0/25 and /25) and holds the server address; it has no route into the
private LANs (198.18.1.0/24, 198.18.2.0/24), exactly like the real one.

The NAT routers use nftables masquerade. Mapping: `port-restricted` keeps the source
port (endpoint-independent mapping), `symmetric` maps every destination to a random
port (`fully-random`). Filtering: inbound traffic is let through only when it belongs to
a connection that went out (conntrack), anything else addressed to the router is dropped
before conntrack confirms it, so an unsolicited packet cannot reserve a port either.
`udp_blocked` drops all UDP from the LAN (networks that allow only TCP).

Everything started here (coturn, the server, Chromium) is a child process; `close()`
stops them and deletes the namespaces, also when a test failed (use `with Lab(...)`).
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

SERVER_IP = "203.0.113.10"
PRACTICE_WAN, HOME_WAN = "198.51.100.2", "198.51.100.130"
PRACTICE_LAN, HOME_LAN = "198.18.1.10", "198.18.2.10"
SERVER_PORT = 8000
TURN_PORT, TURNS_PORT = 3478, 443
# The lab's "public Internet": the NAT routers' outside addresses. The documented coturn
# configuration denies every reserved range, the lab's own included; the lab opens only
# this one again (allowed-peer-ip overrides denied-peer-ip), as the real Internet is open.
LAB_PUBLIC_RANGE = "198.51.100.0-198.51.100.255"

# The lab's only changes to the documented /etc/turnserver.conf (test_turn_config checks
# that the started file is the documented one plus exactly these keys).
TURN_OVERRIDES = (
    "listening-ip",
    "relay-ip",
    "realm",
    "server-name",
    "static-auth-secret",
    "cert",
    "pkey",
    "log-file",
    "pidfile",
    "userdb",
    "allowed-peer-ip",
    "simple-log",
    "no-stdout-log",
    "verbose",
)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_open_labs: set[Lab] = set()


def require_tools() -> None:
    """A missing tool fails the test with a clear message (never a skip)."""
    missing = [tool for tool in ("ip", "nft", "tc", "turnserver") if not shutil.which(tool)]
    if missing:
        raise RuntimeError(
            "network tests need the Debian packages iproute2, nftables and coturn; "
            f"missing: {', '.join(missing)}"
        )
    if os.geteuid() != 0:
        raise RuntimeError("network tests must run as root (they create network namespaces)")


def run(*args: str, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, input=input, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


LAB_PREFIX = "rclab-"


def remove_stale_labs() -> None:
    """Delete lab namespaces whose creating process is gone (killed test runs)."""
    for line in run("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{LAB_PREFIX}(\d+)-[0-9a-f]+-\w+", name)
        if not match or Path(f"/proc/{match.group(1)}").exists():
            continue
        for pid in run("ip", "netns", "pids", name, check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run("ip", "netns", "del", name, check=False)


def documented_turn_config() -> list[str]:
    """The `/etc/turnserver.conf` block of docs/deployment.md, as lines without comments."""
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    match = re.search(r"`/etc/turnserver\.conf`:\s*\n\s*```ini\n(.*?)```", text, re.S)
    if not match:
        raise RuntimeError("docs/deployment.md has no ```ini block for /etc/turnserver.conf")
    lines = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def config_key(line: str) -> str:
    return line.split("=", 1)[0].strip()


def in_netns(name: str, function, *args):
    """Call `function(*args)` in a thread that has entered network namespace `name`.

    setns(2) with CLONE_NEWNET moves only the calling thread, so sockets the function
    opens live in the lab while the test process itself stays where it is.
    """
    outcome: dict = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {name} failed")
            finally:
                os.close(fd)
            outcome["value"] = function(*args)
        except BaseException as error:  # re-raised in the caller
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class Lab:
    """The namespaces, NAT rules, coturn and the server; `with Lab(workdir) as lab:`."""

    def __init__(self, workdir: Path, practice_nat: str = "port-restricted"):
        require_tools()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        remove_stale_labs()
        # The creator's pid in the name lets a later run remove a lab whose test process
        # was killed before it could clean up (SIGKILL runs no cleanup).
        prefix = f"{LAB_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.ns = {
            role: f"{prefix}-{role}" for role in ("internet", "pnat", "practice", "hnat", "home")
        }
        self.turn_secret = secrets.token_hex(32)
        self.processes: list[subprocess.Popen] = []
        self.turn: subprocess.Popen | None = None
        self.server: subprocess.Popen | None = None
        self.created: list[str] = []
        self.practice_nat = practice_nat

    # ------------------------------------------------------------------ topology

    def __enter__(self) -> Lab:
        _open_labs.add(self)
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ip(self, role: str, *args: str) -> str:
        return run(*self.exec_args(role), "ip", *args)

    def exec_args(self, role: str) -> list[str]:
        # nsenter, not `ip netns exec`/`ip -n`: those also remount / and /sys, which fails
        # where / is no mount point (the fresh-machine chroot of CI). Only the network
        # namespace is needed here.
        return ["nsenter", f"--net=/run/netns/{self.ns[role]}"]

    def sh(self, role: str, *args: str, check: bool = True, input: str | None = None) -> str:
        return run(*self.exec_args(role), *args, check=check, input=input)

    def veth(self, a: str, a_name: str, a_addr: str, b: str, b_name: str, b_addr: str) -> None:
        self.ip(a, "link", "add", a_name, "type", "veth",
                "peer", "name", b_name, "netns", self.ns[b])  # fmt: skip
        self.ip(a, "addr", "add", a_addr, "dev", a_name)
        self.ip(b, "addr", "add", b_addr, "dev", b_name)
        self.ip(a, "link", "set", a_name, "up")
        self.ip(b, "link", "set", b_name, "up")

    def build(self) -> None:
        for role, name in self.ns.items():
            run("ip", "netns", "add", name)
            self.created.append(name)
            self.ip(role, "link", "set", "lo", "up")
        # The server's address sits on the internet namespace's loopback (no dummy module
        # needed); the NAT routers reach it through their veth.
        self.ip("internet", "addr", "add", f"{SERVER_IP}/32", "dev", "lo")
        self.veth("internet", "to-practice", "198.51.100.1/25", "pnat", "wan", f"{PRACTICE_WAN}/25")
        self.veth("internet", "to-home", "198.51.100.129/25", "hnat", "wan", f"{HOME_WAN}/25")
        self.veth("pnat", "lan", "198.18.1.1/24", "practice", "eth0", f"{PRACTICE_LAN}/24")
        self.veth("hnat", "lan", "198.18.2.1/24", "home", "eth0", f"{HOME_LAN}/24")
        # Only routes to the lab's public ranges, never a default route.
        for router in ("pnat", "hnat"):
            gateway = "198.51.100.1" if router == "pnat" else "198.51.100.129"
            self.ip(router, "route", "add", "203.0.113.0/24", "via", gateway)
            self.ip(router, "route", "add", "198.51.100.0/24", "via", gateway)
        for host, gateway in (("practice", "198.18.1.1"), ("home", "198.18.2.1")):
            for prefix in ("203.0.113.0/24", "198.51.100.0/24"):
                self.ip(host, "route", "add", prefix, "via", gateway)
        for router in ("internet", "pnat", "hnat"):
            self.sh(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for host in ("practice", "home"):
            # No IPv6 at all: the lab is IPv4 only, so no link-local address appears.
            self.sh(host, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
        self.set_nat("pnat", self.practice_nat)
        self.set_nat("hnat", "port-restricted")

    def set_nat(self, router: str, kind: str, udp_blocked: bool = False) -> None:
        """(Re)write a NAT router's rules: kind = port-restricted | symmetric."""
        if kind not in ("port-restricted", "symmetric"):
            raise ValueError(kind)
        mapping = "masquerade fully-random" if kind == "symmetric" else "masquerade"
        block = 'iifname "lan" meta l4proto udp drop' if udp_blocked else ""
        rules = f"""
table ip lab
delete table ip lab
table ip lab {{
  chain postrouting {{ type nat hook postrouting priority srcnat; oifname "wan" {mapping}; }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    {block}
    iifname "lan" oifname "wan" accept
    iifname "wan" ct state established,related accept
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }}
}}
"""
        self.sh(router, "nft", "-f", "-", input=rules)

    def impair_home(self, rate_kbit: int, loss_percent: int) -> None:
        """Limit the home link both ways (tbf) and drop a share of packets (nftables)."""
        for dev in ("wan", "lan"):  # egress of wan = upload, of lan = download
            self.sh("hnat", "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                    "rate", f"{rate_kbit}kbit", "burst", "8kb", "latency", "150ms")  # fmt: skip
        rules = f"""
table ip impair
delete table ip impair
table ip impair {{
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    numgen random mod 100 < {loss_percent} drop
  }}
}}
"""
        self.sh("hnat", "nft", "-f", "-", input=rules)

    def cut_direct_path(self) -> None:
        """Drop everything between the home and the practice router; coturn stays reachable."""
        rules = f"""
table ip cut
delete table ip cut
table ip cut {{
  chain forward {{
    type filter hook forward priority filter - 20; policy accept;
    ip saddr {PRACTICE_WAN} drop
    ip daddr {PRACTICE_WAN} drop
  }}
}}
"""
        self.sh("hnat", "nft", "-f", "-", input=rules)

    def restore_direct_path(self) -> None:
        self.sh("hnat", "nft", "delete", "table", "ip", "cut", check=False)

    def lift_impairment(self) -> None:
        for dev in ("wan", "lan"):
            self.sh("hnat", "tc", "qdisc", "del", "dev", dev, "root", check=False)
        self.sh("hnat", "nft", "delete", "table", "ip", "impair", check=False)

    # ------------------------------------------------------------------ coturn

    def turn_config(self) -> str:
        """The documented configuration with the lab's overrides (TURN_OVERRIDES)."""
        cert, key = self.certificate()
        overrides = [
            f"listening-ip={SERVER_IP}",
            f"relay-ip={SERVER_IP}",
            "realm=turn.lab.invalid",
            "server-name=turn.lab.invalid",
            f"static-auth-secret={self.turn_secret}",
            f"cert={cert}",
            f"pkey={key}",
            # The log stays in the test's temporary directory (it names lab addresses).
            f"log-file={self.workdir / 'turn.log'}",
            "simple-log",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            f"userdb={self.workdir / 'turndb'}",
            f"allowed-peer-ip={LAB_PUBLIC_RANGE}",
        ]
        keys = {config_key(line) for line in overrides}
        lines = [line for line in documented_turn_config() if config_key(line) not in keys]
        return "\n".join(lines + overrides) + "\n"

    def certificate(self) -> tuple[str, str]:
        from cryptography.hazmat.primitives.asymmetric import ec

        from tests.support.tlsserver import make_certificate

        cert, key = self.workdir / "turn-tls" / "cert.pem", self.workdir / "turn-tls" / "key.pem"
        if cert.exists():
            return str(cert), str(key)
        made = make_certificate(self.workdir / "turn-tls", ec.generate_private_key(ec.SECP384R1()))
        return made.cert, made.key

    def certificate_spki(self) -> str:
        """base64(SHA-256(SubjectPublicKeyInfo)) of the TURN certificate, as Chromium wants."""
        import base64
        import hashlib

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert = x509.load_pem_x509_certificate(Path(self.certificate()[0]).read_bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")

    def start_turn(self) -> None:
        path = self.workdir / "turnserver.conf"
        path.write_text(self.turn_config())
        path.chmod(0o600)
        self.turn = self.spawn("internet", ["turnserver", "-c", str(path)], "turnserver.out")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.turn.poll() is not None:
                raise RuntimeError(f"turnserver exited:\n{self.read('turnserver.out')}")
            listening = self.sh("internet", "ss", "-Hlnut", check=False)
            if f"{SERVER_IP}:{TURN_PORT}" in listening and f"{SERVER_IP}:{TURNS_PORT}" in listening:
                return
            time.sleep(0.1)
        raise TimeoutError(f"turnserver not listening:\n{self.read('turn.log')}")

    # ------------------------------------------------------------------ the server

    @property
    def url(self) -> str:
        return f"http://{SERVER_IP}:{SERVER_PORT}"

    def ice_servers(self) -> list[dict]:
        """The documented ICE_SERVERS entry (deployment.md § 7), on the lab's address."""
        return [
            {
                "urls": [
                    f"stun:{SERVER_IP}:{TURN_PORT}",
                    f"turn:{SERVER_IP}:{TURN_PORT}?transport=udp",
                    f"turns:{SERVER_IP}:{TURNS_PORT}?transport=tcp",
                ],
                "country": "DE",
            }
        ]

    def server_env(self, **extra: str) -> dict[str, str]:
        from tests.support.live import embedded_env

        return embedded_env(
            self.workdir / "site",
            PUBLIC_URL=self.url,
            ICE_SERVERS=json.dumps(self.ice_servers()),
            TURN_SECRET=self.turn_secret,
            **extra,
        )

    def start_server(self, env: dict[str, str]) -> None:
        command = [sys.executable, "manage.py", "serve", "--host", SERVER_IP, "--port",
                   str(SERVER_PORT)]  # fmt: skip
        self.server = self.spawn("internet", command, "serve.log", env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.read('serve.log')}")
            if in_netns(self.ns["practice"], self._healthy):
                return
            time.sleep(0.2)
        raise TimeoutError(f"server not ready:\n{self.read('serve.log')}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    # ------------------------------------------------------------------ browsers

    def chromium_wrapper(self, role: str) -> str:
        """A script for playwright's executable_path that starts Chromium inside `role`.

        Playwright talks to Chromium over inherited pipes, which nsenter keeps.
        """
        from tests.support.browser import CHROMIUM

        path = self.workdir / f"chromium-{role}.sh"
        enter = " ".join(self.exec_args(role))
        path.write_text(f'#!/bin/sh\nexec {enter} {CHROMIUM} "$@"\n')
        path.chmod(stat.S_IRWXU)
        return str(path)

    def chromium_args(self) -> list[str]:
        from tests.support.browser import CHROMIUM_ARGS

        # getUserMedia needs a secure context; the lab serves plain http on a lab address.
        return [
            *CHROMIUM_ARGS,
            f"--unsafely-treat-insecure-origin-as-secure={self.url}",
            # Trust exactly the lab coturn's throw-away certificate for turns: (TLS on 443).
            f"--ignore-certificate-errors-spki-list={self.certificate_spki()}",
        ]

    # ------------------------------------------------------------------ processes

    def spawn(self, role: str, command: list[str], log: str, **kwargs) -> subprocess.Popen:
        handle = open(self.workdir / log, "ab")
        try:
            process = subprocess.Popen(
                [*self.exec_args(role), *command],
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        finally:
            handle.close()
        self.processes.append(process)
        return process

    def read(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def read_full(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.processes.clear()
        for name in reversed(self.created):
            # Any process still inside (e.g. a browser renderer) would keep it alive.
            pids = run("ip", "netns", "pids", name, check=False).split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", name, check=False)
        self.created.clear()
        _open_labs.discard(self)


@atexit.register
def _close_all() -> None:
    for lab in list(_open_labs):
        lab.close()
