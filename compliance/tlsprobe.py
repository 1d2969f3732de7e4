"""Live TLS probe of the public address against BSI TR-02102-2 (`compliance.bsi`).

Five handshakes with Python's `ssl`: one as a normal browser would (certificate trust),
one unverified to read the certificate's key, one limited to TLS 1.2 offering every
cipher (which one does the server choose?), and two that offer only what the TR
excludes (TLS 1.0/1.1; TLS 1.2 ciphers outside the list) and must be refused.
The key exchange group is not visible through Python's `ssl`; the deployment guide
configures it.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from compliance import bsi


@dataclass
class TlsFindings:
    host: str
    port: int
    protocol: str | None = None
    cipher: str | None = None
    tls12_cipher: str | None = None
    key_type: str | None = None
    key_bits: int | None = None
    trusted: bool = False
    trust_error: str | None = None
    legacy_accepted: str | None = None  # "TLSv1.1" if the server accepted it
    weak_cipher_accepted: str | None = None
    problems: list[str] = field(default_factory=list)


class Unreachable(Exception):
    """The address does not answer at all (DNS, refused, timeout): cannot be checked."""


def _handshake(host: str, port: int, context: ssl.SSLContext, timeout: float):
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None
    try:
        tls = context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
    return tls


def _inspect(host, port, context, timeout) -> tuple[str | None, str | None, bytes | None]:
    with _handshake(host, port, context, timeout) as tls:
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else None, tls.getpeercert(binary_form=True)


def _unverified(minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = minimum
    context.maximum_version = maximum
    return context


def _key_of(der: bytes) -> tuple[str, int]:
    key = x509.load_der_x509_certificate(der).public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, 0


def _refused(host, port, context, timeout) -> str | None:
    """The protocol/cipher the server accepted although it should not, else None."""
    try:
        version, cipher, _der = _inspect(host, port, context, timeout)
    except (ssl.SSLError, ConnectionError, OSError, Unreachable):
        return None
    return f"{version} {cipher}"


def probe(host: str, port: int = 443, timeout: float = 5.0) -> TlsFindings:
    findings = TlsFindings(host, port)
    # 1. As a browser: trusted certificate for this host name?
    try:
        with _handshake(host, port, ssl.create_default_context(), timeout) as tls:
            findings.trusted = True
            findings.protocol = tls.version()
            findings.cipher = (tls.cipher() or (None,))[0]
    except ssl.SSLCertVerificationError as exc:
        findings.trust_error = exc.verify_message or str(exc)
    # 2. Certificate key (unverified, so an untrusted certificate can still be measured).
    version, cipher, der = _inspect(host, port, _unverified(), timeout)
    findings.protocol = findings.protocol or version
    findings.cipher = findings.cipher or cipher
    if der:
        findings.key_type, findings.key_bits = _key_of(der)
    # 3. The server's choice when a client offers every TLS 1.2 cipher.
    everything = _unverified(maximum=ssl.TLSVersion.TLSv1_2)
    everything.set_ciphers("ALL:@SECLEVEL=0")
    try:
        findings.tls12_cipher = _inspect(host, port, everything, timeout)[1]
    except ssl.SSLError:
        findings.tls12_cipher = None  # TLS 1.3 only: fine
    # 4. Outdated protocols must be refused.
    with warnings.catch_warnings():  # deprecated on purpose: the server must refuse them
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = _unverified(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    legacy.set_ciphers("ALL:@SECLEVEL=0")
    findings.legacy_accepted = _refused(host, port, legacy, timeout)
    # 5. TLS 1.2 ciphers outside the TR's list must be refused.
    weak_names = [
        c["name"]
        for c in everything.get_ciphers()
        if c["protocol"] == "TLSv1.2" and c["name"] not in bsi.TLS12_CIPHERS
    ]
    if weak_names:
        weak = _unverified(maximum=ssl.TLSVersion.TLSv1_2)
        weak.set_ciphers(":".join(weak_names) + ":@SECLEVEL=0")
        findings.weak_cipher_accepted = _refused(host, port, weak, timeout)
    return findings


def assess(findings: TlsFindings) -> list[str]:
    """Problems with the findings, as short technical phrases (empty: compliant)."""
    problems = []
    if not findings.trusted:
        problems.append(f"certificate not trusted ({findings.trust_error})")
    if findings.protocol not in bsi.TLS_VERSIONS:
        problems.append(f"protocol {findings.protocol}")
    allowed = bsi.TLS13_CIPHERSUITES | bsi.TLS12_CIPHERS
    if findings.cipher not in allowed:
        problems.append(f"cipher {findings.cipher}")
    if findings.tls12_cipher is not None and findings.tls12_cipher not in bsi.TLS12_CIPHERS:
        problems.append(f"TLS 1.2 cipher {findings.tls12_cipher}")
    if findings.legacy_accepted:
        problems.append(f"accepts {findings.legacy_accepted}")
    if findings.weak_cipher_accepted:
        problems.append(f"accepts {findings.weak_cipher_accepted}")
    minimum = {"RSA": bsi.MIN_RSA_BITS, "EC": bsi.MIN_EC_BITS, "DSA": bsi.MIN_DH_BITS}
    bits_needed = minimum.get(findings.key_type or "", 10**6)
    if (findings.key_bits or 0) < bits_needed:
        problems.append(f"{findings.key_type} key {findings.key_bits} bit")
    return problems
