"""Live TLS scan of the public address with sslyze, reduced to what TR-02102-2 judges.

sslyze tries every protocol version and every cipher suite it knows, one handshake
each, and every elliptic-curve group; it reads the certificate chain and validates it
against the usual trust stores (plus `SSL_CERT_FILE`, if set, as an extra anchor — how
tests and private CAs are trusted). `compliance.bsi.judge` rates the result.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

VERSION_NAMES = {
    "SSL_2_0": "SSLv2",
    "SSL_3_0": "SSLv3",
    "TLS_1_0": "TLSv1",
    "TLS_1_1": "TLSv1.1",
    "TLS_1_2": "TLSv1.2",
    "TLS_1_3": "TLSv1.3",
}
TRUST_STORES = {"Mozilla", "Supplied CA file"}  # a browser's view, or the operator's own CA


class Unreachable(Exception):
    """The address does not answer at all (DNS, refused, timeout): cannot be checked."""


class ScanFailed(Exception):
    """The address answers, but no TLS connection could be made."""


@dataclass(frozen=True)
class AcceptedSuite:
    version: str  # "TLSv1.2"
    name: str  # IANA name, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    openssl_name: str  # e.g. ECDHE-ECDSA-AES128-GCM-SHA256
    key_exchange: str | None  # group of the ephemeral key ("secp384r1", "DH"), if any
    key_exchange_bits: int | None


@dataclass(frozen=True)
class CertificateSignature:
    subject: str
    algorithm: str  # e.g. sha256WithRSAEncryption, ecdsa-with-SHA256, rsassaPss
    rsa_pkcs1v15: bool


@dataclass(frozen=True)
class TlsScan:
    host: str
    port: int
    versions: tuple[str, ...]  # accepted protocol versions
    suites: tuple[AcceptedSuite, ...]  # every accepted cipher suite
    groups: tuple[str, ...]  # accepted key-exchange groups
    key_type: str | None
    key_bits: int | None
    signatures: tuple[CertificateSignature, ...]  # of the certificates the server sent
    trusted: bool
    trust_error: str | None

    def suites_of(self, version: str) -> list[AcceptedSuite]:
        return [suite for suite in self.suites if suite.version == version]


def scan(host: str, port: int = 443, timeout: int = 5) -> TlsScan:
    address = _reachable(host, port, timeout)
    with warnings.catch_warnings():  # sslyze's bundled stores trip cryptography's warnings
        warnings.simplefilter("ignore")
        result = _run_sslyze(host, port, address, timeout)
    return _reduce(host, port, result)


def _reachable(host: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            return raw.getpeername()[0]
    except OSError as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None


def _run_sslyze(host: str, port: int, address: str, timeout: int):
    import sslyze

    commands = {
        sslyze.ScanCommand.CERTIFICATE_INFO,
        sslyze.ScanCommand.SSL_2_0_CIPHER_SUITES,
        sslyze.ScanCommand.SSL_3_0_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_0_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_1_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_2_CIPHER_SUITES,
        sslyze.ScanCommand.TLS_1_3_CIPHER_SUITES,
        sslyze.ScanCommand.ELLIPTIC_CURVES,
    }
    extra = sslyze.ScanCommandsExtraArguments()
    anchor = os.environ.get("SSL_CERT_FILE")
    if anchor and Path(anchor).is_file():
        extra = sslyze.ScanCommandsExtraArguments(
            certificate_info=sslyze.CertificateInfoExtraArgument(custom_ca_file=Path(anchor))
        )
    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation(host, port, ip_address=address),
        network_configuration=sslyze.ServerNetworkConfiguration(
            tls_server_name_indication=host, network_timeout=timeout, network_max_retries=1
        ),
        scan_commands=commands,
        scan_commands_extra_arguments=extra,
    )
    scanner = sslyze.Scanner(per_server_concurrent_connections_limit=5)
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    if result.connectivity_status != sslyze.ServerConnectivityStatusEnum.COMPLETED:
        raise ScanFailed(_last_line(result.connectivity_error_trace))
    return result.scan_result


def _last_line(trace) -> str:
    text = "".join(trace.format_exception_only()) if trace else "no TLS connection"
    return text.strip().splitlines()[-1][:200]


def _attempt(scan_result, name: str):
    attempt = getattr(scan_result, name)
    if attempt.result is None:
        raise ScanFailed(f"{name}: {attempt.error_reason} {_last_line(attempt.error_trace)}")
    return attempt.result


def _reduce(host: str, port: int, scan_result) -> TlsScan:
    suites = []
    for key, version in VERSION_NAMES.items():
        result = _attempt(scan_result, f"{key.lower()}_cipher_suites")
        suites.extend(_accepted(version, suite) for suite in result.accepted_cipher_suites)
    curves = _attempt(scan_result, "elliptic_curves")
    groups = tuple(curve.name for curve in curves.supported_curves or [])
    certificate = _attempt(scan_result, "certificate_info")
    deployment = certificate.certificate_deployments[0]
    chain = deployment.received_certificate_chain
    key_type, key_bits = _key_of(chain[0])
    trusted, trust_error = _trust(deployment.path_validation_results)
    return TlsScan(
        host=host,
        port=port,
        versions=tuple(sorted({suite.version for suite in suites})),
        suites=tuple(suites),
        groups=groups,
        key_type=key_type,
        key_bits=key_bits,
        signatures=tuple(_signature(c) for c in chain if c.issuer != c.subject),
        trusted=trusted,
        trust_error=trust_error,
    )


def _accepted(version: str, accepted) -> AcceptedSuite:
    key = accepted.ephemeral_key
    group = getattr(key, "curve_name", None) if key is not None else None
    if key is not None and group is None:
        group = "DH"
    return AcceptedSuite(
        version,
        accepted.cipher_suite.name,
        accepted.cipher_suite.openssl_name,
        group,
        key.size if key is not None else None,
    )


def _key_of(certificate: x509.Certificate) -> tuple[str, int]:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, 0


def _signature(certificate: x509.Certificate) -> CertificateSignature:
    oid = certificate.signature_algorithm_oid
    parameters = certificate.signature_algorithm_parameters
    return CertificateSignature(
        subject=certificate.subject.rfc4514_string(),
        algorithm=getattr(oid, "_name", None) or oid.dotted_string,
        rsa_pkcs1v15=isinstance(parameters, padding.PKCS1v15),
    )


def _trust(results) -> tuple[bool, str | None]:
    relevant = [r for r in results if r.trust_store.name in TRUST_STORES]
    if any(r.was_validation_successful for r in relevant):
        return True, None
    errors = [r.validation_error for r in relevant if r.validation_error]
    return False, (errors[0] if errors else "no trust store validated the chain")[:200]
