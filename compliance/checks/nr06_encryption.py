"""§ 5 Nr. 6: end-to-end encryption per the state of the art (BSI TR-02102)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import bsi, tlsscan
from compliance.probes import RefusalPhase, RelayPhase
from compliance.registry import Finding, Requirement, check
from redconnect import callcodes

MIN_HSTS_SECONDS = 180 * 24 * 3600

REQUIREMENT = Requirement(
    6,
    gettext_lazy("End-to-end encryption"),
    gettext_lazy(
        "All content must be end-to-end encrypted during the whole transmission "
        "according to the state of the art, in particular BSI TR-02102."
    ),
    gettext_lazy(
        "Media are encrypted with DTLS-SRTP between the browsers; connection offers "
        "without a DTLS fingerprint or with SDES keys are refused. The web service "
        "itself is reachable only over TLS as recommended by BSI TR-02102-2."
    ),
    gettext_lazy(
        "Annex 31b as amended on 15 June 2022: § 2 (IT security); proven by the "
        "IT security certificate of a body accredited under ISO/IEC 17065"
    ),
)


@check(
    "sdp_requires_dtls",
    gettext_lazy("Offers without a DTLS fingerprint or with SDES keys are refused (real consumer)"),
)
def sdp_requires_dtls(relay: RelayPhase, refusals: RefusalPhase) -> Finding:
    problems = []
    for name, result in (("fingerprint", refusals.sdp_no_fingerprint), ("sdes", refusals.sdp_sdes)):
        if result.error != callcodes.INSECURE_SDP or result.leaked:
            problems.append(f"{name}: {result.error}, relayed {len(result.leaked)}")
    if problems:
        return Finding.failed(
            _("Insecure session descriptions were not refused: %(problems)s.")
            % {"problems": "; ".join(problems)}
        )
    if "offer" not in relay.relayed:
        return Finding.failed(_("A secure offer with a DTLS fingerprint was not relayed."))
    return Finding.passed(
        _(
            'An offer without "a=fingerprint" and one with an SDES key ("a=crypto") were '
            'refused as "insecure-sdp" and not relayed; an offer with a DTLS fingerprint '
            "was relayed."
        )
    )


@check(
    "https_settings",
    gettext_lazy("HTTPS settings: secure cookies, HSTS, redirect to HTTPS (settings)"),
)
def https_settings() -> Finding:
    if not settings.PUBLIC_URL.startswith("https://"):
        return Finding.warned(
            _(
                "PUBLIC_URL is %(url)s (not https): acceptable only for a local trial; secure "
                "cookies, HSTS and the HTTPS redirect are off."
            )
            % {"url": settings.PUBLIC_URL}
        )
    hsts = getattr(settings, "SECURE_HSTS_SECONDS", 0) or 0
    wrong = [
        name
        for name, ok in (
            ("SESSION_COOKIE_SECURE", settings.SESSION_COOKIE_SECURE),
            ("CSRF_COOKIE_SECURE", settings.CSRF_COOKIE_SECURE),
            ("SECURE_SSL_REDIRECT", getattr(settings, "SECURE_SSL_REDIRECT", False)),
            ("SECURE_HSTS_SECONDS", hsts >= MIN_HSTS_SECONDS),
        )
        if not ok
    ]
    if wrong:
        return Finding.failed(
            _("PUBLIC_URL is https, but these settings are not secure: %(names)s.")
            % {"names": ", ".join(wrong)}
        )
    return Finding.passed(
        _("Secure session and CSRF cookies, redirect to HTTPS and HSTS for %(days)d days are on.")
        % {"days": hsts // 86400}
    )


@check(
    "tls_probe",
    gettext_lazy("Live TLS scan of PUBLIC_URL (sslyze) against BSI TR-02102-2 (network)"),
)
def tls_probe() -> Finding:
    public = urlsplit(settings.PUBLIC_URL)
    if public.scheme != "https":
        return Finding.warned(
            _(
                "No https PUBLIC_URL is configured (%(url)s): the TLS configuration cannot be "
                "checked here."
            )
            % {"url": settings.PUBLIC_URL}
        )
    try:
        scan = tlsscan.scan(public.hostname, public.port or 443)
    except tlsscan.Unreachable as exc:
        return Finding.warned(
            _("%(host)s did not answer (%(error)s): the TLS configuration could not be checked.")
            % {"host": public.netloc, "error": exc}
        )
    except tlsscan.ScanFailed as exc:
        return Finding.failed(
            _("No TLS connection to %(host)s: %(error)s.") % {"host": public.netloc, "error": exc}
        )
    return _judged(public.netloc, scan)


def tls_summary(scan: tlsscan.TlsScan) -> str:
    """Protocols, suites per protocol, groups and certificate, as the evidence names them."""
    per_version = "; ".join(
        f"{version}: {', '.join(s.name for s in scan.suites_of(version))}"
        for version in scan.versions
    )
    return _(
        "protocols %(versions)s (%(suites)s); groups %(groups)s; certificate key %(key)s "
        "%(bits)s bit, signed with %(signature)s"
    ) % {
        "versions": ", ".join(scan.versions) or "—",
        "suites": per_version or "—",
        "groups": ", ".join(scan.groups) or "—",
        "key": scan.key_type,
        "bits": scan.key_bits,
        "signature": ", ".join(sorted({s.algorithm for s in scan.signatures})) or "—",
    }


def _judged(host: str, scan: tlsscan.TlsScan) -> Finding:
    verdict = bsi.judge(scan)
    summary = tls_summary(scan)
    if verdict.failures:
        return Finding.failed(
            _("%(host)s: %(summary)s. Not compliant with BSI TR-02102-2: %(problems)s.")
            % {"host": host, "summary": summary, "problems": "; ".join(verdict.failures)}
        )
    if verdict.warnings:
        return Finding.warned(
            _(
                "%(host)s: %(summary)s. Compliant, but not recommended by TR-02102-2 %(version)s: "
                "%(problems)s."
            )
            % {
                "host": host,
                "summary": summary,
                "version": bsi.VERSION,
                "problems": "; ".join(verdict.warnings),
            }
        )
    return Finding.passed(
        _(
            "%(host)s: %(summary)s; only what BSI TR-02102-2 %(version)s allows is accepted; "
            "the certificate is trusted."
        )
        % {"host": host, "summary": summary, "version": bsi.VERSION}
    )
