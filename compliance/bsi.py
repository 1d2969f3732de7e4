"""BSI TR-02102-2 (TLS) as the compliance checks and the deployment docs read it.

One module, so that the TLS probe, the nginx example in docs/ and its test all use the
same lists. Names are OpenSSL's (what nginx `ssl_ciphers`/`ssl_conf_command
Ciphersuites` and Python's `ssl` report).
"""

from __future__ import annotations

# Versions: TLS 1.2 and 1.3 only.
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
