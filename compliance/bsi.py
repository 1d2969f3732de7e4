"""BSI TR-02102-2 (TLS), version 2026-01, as the compliance checks and the docs read it.

One module, so that the TLS scan, the nginx example in docs/ and its tests all use the
same lists, and one function (`judge`) that rates a scan. Names are OpenSSL's for TLS 1.2
(what nginx `ssl_ciphers` takes) and the IANA names for TLS 1.3 suites (identical in
OpenSSL); group names as OpenSSL and sslyze report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compliance.tlsscan import TlsScan

VERSION = "2026-01"

# Versions: TLS 1.2 and 1.3 only (TLS 1.2 acceptable until the end of 2031).
TLS_VERSIONS = frozenset({"TLSv1.2", "TLSv1.3"})

# TLS 1.3: ChaCha20-Poly1305 is not in the TR's list.
TLS13_CIPHERSUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_AES_128_CCM_SHA256"}
)

# TLS 1.2: forward secrecy only — (EC)DHE with AES in GCM, CBC (SHA-2) or CCM.
TLS12_CIPHERS = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-CCM",
        "ECDHE-ECDSA-AES256-CCM",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-RSA-AES256-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-SHA256",
        "DHE-RSA-AES256-SHA256",
        "DHE-RSA-AES128-CCM",
        "DHE-RSA-AES256-CCM",
        "DHE-DSS-AES128-GCM-SHA256",
        "DHE-DSS-AES256-GCM-SHA384",
        "DHE-DSS-AES128-SHA256",
        "DHE-DSS-AES256-SHA256",
    }
)

# Key exchange groups (OpenSSL / nginx `ssl_ecdh_curve` names).
GROUPS = frozenset(
    {
        "secp256r1",
        "prime256v1",  # OpenSSL's alias of secp256r1
        "secp384r1",
        "secp521r1",
        "brainpoolP256r1",
        "brainpoolP384r1",
        "brainpoolP512r1",
        "ffdhe2048",
        "ffdhe3072",
        "ffdhe4096",
    }
)
# Not in the TR's list but widely used and not known to be weak: a warning, not a failure.
TOLERATED_GROUPS = frozenset({"x25519", "X25519"})

# Minimum key sizes in bits (RSA 2048 was allowed only until the end of 2023).
MIN_RSA_BITS = 3000
MIN_EC_BITS = 250
MIN_DH_BITS = 3000
MIN_KEY_BITS = {"RSA": MIN_RSA_BITS, "EC": MIN_EC_BITS, "DSA": MIN_DH_BITS}


@dataclass
class Verdict:
    """Short technical phrases: failures break the TR, warnings are not recommended."""

    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def judge(scan: TlsScan) -> Verdict:
    verdict = Verdict()
    if not scan.trusted:
        verdict.failures.append(f"certificate not trusted ({scan.trust_error})")
    verdict.failures.extend(f"accepts {v}" for v in scan.versions if v not in TLS_VERSIONS)
    for suite in scan.suites:
        _judge_suite(suite, verdict)
    for group in scan.groups:
        if group in TOLERATED_GROUPS:
            verdict.warnings.append(f"group {group} (not in TR-02102-2)")
        elif group not in GROUPS:
            verdict.failures.append(f"group {group}")
    needed = MIN_KEY_BITS.get(scan.key_type or "", 10**6)
    if (scan.key_bits or 0) < needed:
        verdict.failures.append(f"{scan.key_type} key {scan.key_bits} bit")
    for signature in scan.signatures:
        if signature.rsa_pkcs1v15:
            verdict.warnings.append(
                f"certificate signature {signature.algorithm} (RSA PKCS#1 v1.5, not recommended)"
            )
    return verdict


def _judge_suite(suite, verdict: Verdict) -> None:
    if suite.version == "TLSv1.3" and suite.name not in TLS13_CIPHERSUITES:
        verdict.failures.append(f"TLS 1.3 suite {suite.name}")
    elif suite.version == "TLSv1.2" and suite.openssl_name not in TLS12_CIPHERS:
        verdict.failures.append(f"TLS 1.2 suite {suite.openssl_name}")
    if suite.key_exchange == "DH" and (suite.key_exchange_bits or 0) < MIN_DH_BITS:
        verdict.failures.append(f"{suite.openssl_name} with DH {suite.key_exchange_bits} bit")
