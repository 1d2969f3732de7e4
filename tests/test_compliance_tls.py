"""The live TLS probe against local TLS servers with certificates made in the test."""

from __future__ import annotations

import socket
import ssl

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import override_settings

from compliance import bsi, checks, tlsprobe
from tests.tlsserver import make_certificate, tls_server

BSI_ONLY = ":".join(sorted(bsi.TLS12_CIPHERS))


def probe_check(port: int) -> checks.Finding:
    with override_settings(PUBLIC_URL=f"https://localhost:{port}"):
        return checks.tls_probe(checks.Context())


def test_ec_p256_certificate_with_bsi_ciphers_passes(tmp_path, monkeypatch):
    cert, key = make_certificate(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    with tls_server(cert, key, BSI_ONLY) as port:
        finding = probe_check(port)
    assert finding.status == "pass", finding
    assert "EC 256 Bit" in finding.evidence and "TLSv1.3" in finding.evidence


def test_rsa_2048_certificate_fails(tmp_path, monkeypatch):
    cert, key = make_certificate(tmp_path, rsa.generate_private_key(65537, 2048))
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    with tls_server(cert, key, BSI_ONLY) as port:
        finding = probe_check(port)
    assert finding.status == "fail"
    assert "RSA key 2048 bit" in finding.evidence


def test_cipher_outside_the_tr_list_fails(tmp_path, monkeypatch):
    cert, key = make_certificate(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    # ChaCha20-Poly1305 is allowed by OpenSSL's defaults but not by BSI TR-02102-2.
    with tls_server(cert, key, "ECDHE-ECDSA-CHACHA20-POLY1305:" + BSI_ONLY) as port:
        finding = probe_check(port)
    assert finding.status == "fail" and "CHACHA20" in finding.evidence


def test_server_accepting_tls_1_1_fails(tmp_path, monkeypatch):
    cert, key = make_certificate(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    ciphers = BSI_ONLY + ":ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"
    with tls_server(cert, key, ciphers, legacy=True) as port:
        finding = probe_check(port)
    assert finding.status == "fail" and "accepts TLSv1" in finding.evidence


def test_untrusted_certificate_fails(tmp_path, monkeypatch):
    cert, key = make_certificate(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    other, _ = make_certificate(tmp_path / "other", ec.generate_private_key(ec.SECP256R1()))
    monkeypatch.setenv("SSL_CERT_FILE", other)
    with tls_server(cert, key, BSI_ONLY) as port:
        finding = probe_check(port)
    assert finding.status == "fail" and "certificate not trusted" in finding.evidence


def test_unreachable_public_url_warns():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    assert probe_check(port).status == "warn"


def test_bsi_lists_are_openssl_names():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for name in bsi.TLS12_CIPHERS:
        context.set_ciphers(name)  # raises SSLError for a name OpenSSL does not know
    assert "TLS_CHACHA20_POLY1305_SHA256" not in bsi.TLS13_CIPHERSUITES
    assert {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"} <= bsi.TLS13_CIPHERSUITES
    assert bsi.MIN_RSA_BITS == 3000 and bsi.MIN_EC_BITS == 250


@pytest.mark.parametrize(
    ("key_type", "bits", "ok"), [("RSA", 2048, False), ("RSA", 3072, True), ("EC", 256, True)]
)
def test_key_size_limits(key_type, bits, ok):
    findings = tlsprobe.TlsFindings(
        "h",
        443,
        protocol="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        key_type=key_type,
        key_bits=bits,
        trusted=True,
    )
    assert (tlsprobe.assess(findings) == []) is ok
