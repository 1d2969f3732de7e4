"""The live TLS check: sslyze against nginx on loopback, judged by TR-02102-2 2026-01.

nginx (Debian's nginx-light) runs with the TLS directives of docs/deployment.md — the
guide's configuration must pass — and with one deliberate mistake at a time, each of
which must fail or warn. Certificates come from a throw-away CA that the scanner trusts
through SSL_CERT_FILE.
"""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import override_settings

from compliance import bsi, registry, tlsscan
from tests.support.tlsserver import make_certificate, nginx_tls

DEPLOYMENT = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text()


def guide_tls_directives() -> list[str]:
    """The `ssl_*` lines of the guide's TLS server block (its own certificate paths and
    OCSP stapling, which needs a public CA, left out)."""
    (block,) = re.findall(r"```nginx\n(.*?)```", DEPLOYMENT, re.DOTALL)
    server = block[block.index("listen 443 ssl;") :]
    lines = [line.strip() for line in server.splitlines()]
    return [
        line
        for line in lines
        if line.startswith("ssl_") and not line.startswith(("ssl_certificate", "ssl_stapling"))
    ]


def replaced(directives: list[str], name: str, value: str) -> list[str]:
    """The directives with `name` set to `value` (added if absent)."""
    kept = [line for line in directives if line.split(None, 1)[0] != name.split()[0]]
    if name.startswith("ssl_conf_command"):
        kept = [line for line in directives if not line.startswith(name)]
    return [*kept, f"{name} {value};"]


def tls_check(port: int) -> registry.Finding:
    with override_settings(PUBLIC_URL=f"https://localhost:{port}"):
        return registry.run_check(registry.find_check("tls_probe"), registry.Observations())


@pytest.fixture
def ec384(tmp_path, monkeypatch):
    certificate = make_certificate(tmp_path / "ec", ec.generate_private_key(ec.SECP384R1()))
    monkeypatch.setenv("SSL_CERT_FILE", certificate.ca)
    return certificate


def test_the_guide_takes_its_lists_from_tr_02102_2():
    directives = dict(line.rstrip(";").split(None, 1) for line in guide_tls_directives())
    assert directives["ssl_protocols"].split() == ["TLSv1.2", "TLSv1.3"]
    assert set(directives["ssl_ciphers"].split(":")) <= bsi.TLS12_CIPHERS
    suites = directives["ssl_conf_command"].removeprefix("Ciphersuites ").split(":")
    assert set(suites) <= bsi.TLS13_CIPHERSUITES
    assert set(directives["ssl_ecdh_curve"].split(":")) <= bsi.GROUPS


def test_the_deployment_guide_configuration_passes_the_scan(tmp_path, ec384):
    with nginx_tls(tmp_path, ec384, guide_tls_directives()) as port:
        scan = tlsscan.scan("localhost", port)
        finding = tls_check(port)
    assert finding.status == "pass", finding
    assert scan.versions == ("TLSv1.2", "TLSv1.3") and scan.trusted
    assert {s.name for s in scan.suites_of("TLSv1.3")} == set(bsi.TLS13_CIPHERSUITES)
    assert {s.openssl_name for s in scan.suites_of("TLSv1.2")} <= bsi.TLS12_CIPHERS
    assert set(scan.groups) == {"secp256r1", "secp384r1", "secp521r1"}
    assert (scan.key_type, scan.key_bits) == ("EC", 384)
    for text in ("TLSv1.3", "TLS_AES_128_CCM_SHA256", "secp384r1", "EC 384 Bit", "2026-01"):
        assert text in finding.evidence, text


@pytest.mark.parametrize(
    ("name", "value", "status", "reason"),
    [
        (
            "ssl_conf_command Ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
            "fail",
            "TLS 1.3 suite TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            "ssl_ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305",
            "fail",
            "TLS 1.2 suite ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
        ("ssl_ecdh_curve", "X25519:secp384r1", "warn", "group X25519"),
        ("ssl_ecdh_curve", "X448:secp384r1", "fail", "group X448"),
    ],
)
def test_a_configuration_outside_the_tr_is_caught(tmp_path, ec384, name, value, status, reason):
    with nginx_tls(tmp_path, ec384, replaced(guide_tls_directives(), name, value)) as port:
        finding = tls_check(port)
    assert finding.status == status, finding
    assert reason in finding.evidence


def test_tls_1_2_without_forward_secrecy_fails(tmp_path, monkeypatch):
    """RSA key transport needs an RSA certificate to be negotiated at all."""
    certificate = make_certificate(
        tmp_path / "rsa",
        rsa.generate_private_key(65537, 3072),
        ca_key=rsa.generate_private_key(65537, 3072),
        pss=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", certificate.ca)
    directives = replaced(
        guide_tls_directives(), "ssl_ciphers", "ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256"
    )
    with nginx_tls(tmp_path, certificate, directives) as port:
        finding = tls_check(port)
    assert finding.status == "fail" and "TLS 1.2 suite AES128-GCM-SHA256" in finding.evidence


def test_a_server_accepting_tls_1_1_fails(tmp_path, ec384):
    directives = replaced(guide_tls_directives(), "ssl_protocols", "TLSv1.1 TLSv1.2 TLSv1.3")
    directives = replaced(
        directives,
        "ssl_ciphers",
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0",
    )
    with nginx_tls(tmp_path, ec384, directives) as port:
        finding = tls_check(port)
    assert finding.status == "fail" and "accepts TLSv1.1" in finding.evidence


@pytest.mark.parametrize(
    ("bits", "pss", "status", "reason"),
    [
        (2048, True, "fail", "RSA key 2048 bit"),
        (3072, False, "warn", "RSA PKCS#1 v1.5"),
        (3072, True, "pass", "RSA 3072 Bit"),
    ],
)
def test_rsa_certificates(tmp_path, monkeypatch, bits, pss, status, reason):
    certificate = make_certificate(
        tmp_path / "rsa",
        rsa.generate_private_key(65537, bits),
        ca_key=rsa.generate_private_key(65537, 3072),
        pss=pss,
    )
    monkeypatch.setenv("SSL_CERT_FILE", certificate.ca)
    with nginx_tls(tmp_path, certificate, guide_tls_directives()) as port:
        finding = tls_check(port)
    assert finding.status == status, finding
    assert reason in finding.evidence


def test_an_untrusted_certificate_fails(tmp_path, monkeypatch, ec384):
    other = make_certificate(tmp_path / "other", ec.generate_private_key(ec.SECP256R1()))
    monkeypatch.setenv("SSL_CERT_FILE", other.ca)
    with nginx_tls(tmp_path, ec384, guide_tls_directives()) as port:
        finding = tls_check(port)
    assert finding.status == "fail" and "certificate not trusted" in finding.evidence


def test_an_unreachable_public_url_warns():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    assert tls_check(port).status == "warn"


def test_a_server_without_tls_fails(tmp_path):
    """Something answers on the port, but speaks no TLS: not a warning."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(0.1)
        finding = tls_check(port)
    assert finding.status == "fail", finding


def test_bsi_lists_are_openssl_names():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for name in bsi.TLS12_CIPHERS:
        context.set_ciphers(name)  # raises SSLError for a name OpenSSL does not know
    assert "TLS_CHACHA20_POLY1305_SHA256" not in bsi.TLS13_CIPHERSUITES
    assert {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"} <= bsi.TLS13_CIPHERSUITES
    assert bsi.MIN_RSA_BITS == 3000 and bsi.MIN_EC_BITS == 250 and bsi.VERSION == "2026-01"


def _scan(**overrides) -> tlsscan.TlsScan:
    values = {
        "host": "h",
        "port": 443,
        "versions": ("TLSv1.3",),
        "suites": (
            tlsscan.AcceptedSuite(
                "TLSv1.3", "TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", "secp256r1", 256
            ),
        ),
        "groups": ("secp256r1",),
        "key_type": "EC",
        "key_bits": 256,
        "signatures": (),
        "trusted": True,
        "trust_error": None,
    }
    return tlsscan.TlsScan(**{**values, **overrides})


@pytest.mark.parametrize(
    ("key_type", "bits", "ok"), [("RSA", 2048, False), ("RSA", 3072, True), ("EC", 256, True)]
)
def test_key_size_limits(key_type, bits, ok):
    assert (bsi.judge(_scan(key_type=key_type, key_bits=bits)).failures == []) is ok


def test_dhe_with_a_small_group_fails():
    suite = tlsscan.AcceptedSuite(
        "TLSv1.2", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256", "DH", 2048
    )
    verdict = bsi.judge(_scan(versions=("TLSv1.2",), suites=(suite,)))
    assert verdict.failures == ["DHE-RSA-AES128-GCM-SHA256 with DH 2048 bit"]
