"""TLS servers for the scan tests: certificates made on the spot, nginx on loopback.

`make_certificate` issues a leaf certificate for localhost from a throw-away CA (the
CA file is the trust anchor a test hands to the scanner via SSL_CERT_FILE);
`nginx_tls` starts Debian's nginx as a child process with its own prefix and config
in a temp dir, on a free loopback port, with the given TLS directives.
"""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID


class Certificate(NamedTuple):
    cert: str  # the leaf (what the server sends)
    key: str
    ca: str  # the anchor that makes it trusted


def _write_pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certificate(directory: Path, key, ca_key=None, pss: bool = False) -> Certificate:
    """A localhost certificate for `key`, signed by a fresh CA (EC P-256 unless `ca_key`
    is given; an RSA CA signs with PKCS#1 v1.5, or with PSS if `pss`)."""
    ca_key = ca_key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RED connect test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    signing = {}
    if pss:
        signing["rsa_padding"] = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256(), **signing)
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    return Certificate(
        _write_pem(directory / "cert.pem", leaf.public_bytes(pem)),
        _write_pem(directory / "key.pem", _key_pem(key)),
        _write_pem(directory / "ca.pem", ca.public_bytes(pem)),
    )


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


# What every test nginx needs: one foreground process, and every path inside `prefix`
# (Debian's defaults point to /var and /run). Ends inside the `http` block.
NGINX_PRELUDE = """\
worker_processes 1;
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{main}events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
"""


def nginx_prelude(prefix, connections: int = 64, main: str = "") -> str:
    """NGINX_PRELUDE filled in; `main`: further lines for the main context."""
    return NGINX_PRELUDE.format(prefix=prefix, connections=connections, main=main)


NGINX_CONF = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
{directives}
        location / {{ return 204; }}
    }}
}}
"""


@contextmanager
def nginx_tls(directory: Path, certificate: Certificate, directives: list[str]):
    """nginx serving TLS with these `ssl_*` directive lines on 127.0.0.1; yields the port.

    A missing nginx binary is a failure of the test, not a skip: the deployment guide's
    configuration is only proven by running it.
    """
    prefix = directory / "nginx"
    port = free_port()
    config = nginx_prelude(prefix) + NGINX_CONF.format(
        port=port,
        cert=certificate.cert,
        key=certificate.key,
        directives="\n".join(f"        {line}" for line in directives),
    )
    with run_nginx(prefix, port, config):
        yield port


@contextmanager
def run_nginx(prefix: Path, port: int, config: str):
    """Debian's nginx as a child process with `config` (which must listen on `port`) and
    `prefix` as its directory, until the block ends; yields the process. A missing
    binary fails the test."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is not installed (Debian package nginx-light)"
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "error.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(port, process, prefix)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_for(port: int, process: subprocess.Popen, prefix: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""
            raise AssertionError(f"nginx exited: {process.stderr.read()} {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not listen in time")
