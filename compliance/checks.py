"""Checks of the eleven requirements against the running system.

Each check inspects one property — settings, the database, the real URLconf through
Django's test client, the real consumer through a WebSocket communicator, templates and
static files, or the public address over TLS — and returns a status with a German
evidence sentence naming what it found. `declared` is reserved for what software cannot
verify (operator, hosting contract, data-centre location); such a declaration still on
its demo value is only a `warn`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import probes, regions, scans, tlsprobe
from consultations import services
from consultations.models import MAX_VALIDITY, Appointment, Membership

PASS, FAIL, WARN, DECLARED = "pass", "fail", "warn", "declared"
STATUSES = (PASS, FAIL, WARN, DECLARED)
KBV_MAX_VALIDITY = timedelta(days=30)  # "höchstens einen Monat"
KBV_MAX_RETENTION_DAYS = 90  # "spätestens nach drei Monaten"
PURGE_GRACE = timedelta(days=1)  # the purge timer runs daily
MIN_HSTS_SECONDS = 180 * 24 * 3600


@dataclass(frozen=True)
class Finding:
    status: str
    evidence: str


def passed(evidence: str) -> Finding:
    return Finding(PASS, evidence)


def failed(evidence: str) -> Finding:
    return Finding(FAIL, evidence)


def warned(evidence: str) -> Finding:
    return Finding(WARN, evidence)


def declared(evidence: str) -> Finding:
    return Finding(DECLARED, evidence)


class Context:
    """Shared, lazily gathered observations of one check run (each probe runs once)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, gather: Callable[[], Any]) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = gather()
            except Exception as exc:  # a crashed probe fails its checks, not the run
                self._cache[key] = {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        return self._cache[key]

    @property
    def http(self) -> dict[str, Any]:
        return self._once("http", probes.http_probe)

    @property
    def ws(self) -> dict[str, Any]:
        return self._once("ws", probes.websocket_probe)


@dataclass(frozen=True)
class Check:
    id: str
    requirement: int
    label: Promise
    function: Callable[[Context], Finding]
    static: bool = False  # a static inspection of code, not of the running behaviour


CHECKS: list[Check] = []


def check(requirement: int, check_id: str, label: Promise, *, static: bool = False):
    def register(function: Callable[[Context], Finding]):
        CHECKS.append(Check(check_id, requirement, label, function, static))
        return function

    return register


def run_check(item: Check, context: Context) -> Finding:
    try:
        return item.function(context)
    except Exception as exc:  # a check that cannot run proves nothing
        return failed(
            _("The check could not be carried out: %(error)s")
            % {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        )


class ProbeError(Exception):
    pass


def _observed(observations: dict[str, Any], *keys: str) -> list[Any]:
    """The named observations of a probe; ProbeError if the probe did not get that far."""
    missing = [key for key in keys if key not in observations]
    if missing:
        reason = observations.get("error") or f"missing: {', '.join(missing)}"
        raise ProbeError(reason)
    return [observations[key] for key in keys]


def _probe_failed(error: ProbeError) -> Finding:
    return failed(_("The probe did not complete: %(error)s") % {"error": error})


def _http(context: Context, *keys: str) -> list[Any]:
    return _observed(context.http, *keys)


def _ws(context: Context, *keys: str) -> list[Any]:
    return _observed(context.ws, *keys)


def _status_text(outcome: probes.JoinOutcome) -> str:
    where = urlsplit(outcome.location).path if outcome.location else ""
    return f"HTTP {outcome.status}" + (f" → {where}" if where else "")


# --- Nr. 1: doctor registration -------------------------------------------------------


@check(
    1,
    "doctor_is_active_member",
    gettext_lazy(
        "Every open appointment's doctor is an active doctor member of its practice (database)"
    ),
)
def doctor_is_active_member(context: Context) -> Finding:
    member = Membership.objects.filter(
        user=OuterRef("doctor"),
        practice=OuterRef("practice"),
        role=Membership.Role.DOCTOR,
        user__is_active=True,
    )
    open_appointments = Appointment.objects.valid()
    total = open_appointments.count()
    strays = open_appointments.exclude(Exists(member))
    if strays.exists():
        return failed(
            _(
                "%(bad)d of %(total)d open appointments have a doctor who is not an active "
                "doctor of the practice."
            )
            % {"bad": strays.count(), "total": total}
        )
    return passed(
        _(
            "All %(total)d open appointments belong to active doctor accounts of their "
            "practice (%(doctors)d active doctor memberships)."
        )
        % {
            "total": total,
            "doctors": Membership.objects.filter(
                role=Membership.Role.DOCTOR, user__is_active=True
            ).count(),
        }
    )


@check(
    1,
    "doctor_code_requires_login",
    gettext_lazy(
        "A doctor's code without login opens no call (join page via the real URL configuration)"
    ),
)
def doctor_code_requires_login(context: Context) -> Finding:
    try:
        (outcome,) = _http(context, "doctor_code_anonymous")
    except ProbeError as error:
        return _probe_failed(error)
    if outcome.joined:
        return failed(
            _("A doctor's code without login opened the call (%(result)s).")
            % {"result": _status_text(outcome)}
        )
    if not outcome.to_login:
        return warned(
            _(
                "A doctor's code without login was refused, but not with a redirect to the "
                "login page (%(result)s)."
            )
            % {"result": _status_text(outcome)}
        )
    return passed(
        _("A doctor's code without login is refused and leads to the login page (%(result)s).")
        % {"result": _status_text(outcome)}
    )


@check(
    1,
    "socket_requires_join",
    gettext_lazy(
        "The signaling WebSocket refuses connections without a join session (real consumer)"
    ),
)
def socket_requires_join(context: Context) -> Finding:
    try:
        (result,) = _ws(context, "no_session")
    except ProbeError as error:
        return _probe_failed(error)
    if result == 4001:
        return passed(_("A WebSocket connection without a join session is closed with 4001."))
    if isinstance(result, int):
        return warned(
            _(
                "A WebSocket connection without a join session is closed, but with code "
                "%(code)s instead of 4001."
            )
            % {"code": result}
        )
    return failed(_("A WebSocket connection without a join session stays open."))


@check(
    1,
    "board_start_only_own_doctor",
    gettext_lazy(
        "The board's one-click start opens the call only for the appointment's own logged-in "
        "doctor (real URL configuration)"
    ),
)
def board_start_only_own_doctor(context: Context) -> Finding:
    try:
        anonymous, other, own = _http(
            context, "board_start_anonymous", "board_start_other_doctor", "board_start_own_doctor"
        )
    except ProbeError as error:
        return _probe_failed(error)
    for who, result in ((_("without login"), anonymous), (_("for another doctor"), other)):
        if result.joined:
            return failed(
                _("The board's start opened the call %(who)s (%(result)s).")
                % {"who": who, "result": _status_text(result)}
            )
    if not own.joined:
        return warned(
            _("The board's start did not open the call for the appointment's doctor (%(result)s).")
            % {"result": _status_text(own)}
        )
    return passed(
        _(
            "The board's start is refused without login (%(anonymous)s) and for another doctor "
            "(%(other)s); the appointment's doctor gets the call (%(own)s)."
        )
        % {
            "anonymous": _status_text(anonymous),
            "other": _status_text(other),
            "own": _status_text(own),
        }
    )


# --- Nr. 2: no second access for consultations ----------------------------------------


@check(
    2,
    "staff_cannot_join",
    gettext_lazy(
        "A staff login with a doctor's code is refused (join page via the real URL configuration)"
    ),
)
def staff_cannot_join(context: Context) -> Finding:
    try:
        (outcome,) = _http(context, "doctor_code_staff")
    except ProbeError as error:
        return _probe_failed(error)
    if outcome.joined:
        return failed(
            _("A practice staff login with the doctor's code opened the call (%(result)s).")
            % {"result": _status_text(outcome)}
        )
    if outcome.status != 403:
        return warned(
            _(
                "A practice staff login with the doctor's code was refused, but not with 403 "
                "(%(result)s)."
            )
            % {"result": _status_text(outcome)}
        )
    return passed(
        _("A practice staff login with the doctor's code is refused (%(result)s).")
        % {"result": _status_text(outcome)}
    )


@check(
    2,
    "staff_cannot_start_from_board",
    gettext_lazy("A staff login cannot start a call from the board (real URL configuration)"),
)
def staff_cannot_start_from_board(context: Context) -> Finding:
    try:
        (result,) = _http(context, "board_start_staff")
    except ProbeError as error:
        return _probe_failed(error)
    if result.joined:
        return failed(
            _("A practice staff login started the call from the board (%(result)s).")
            % {"result": _status_text(result)}
        )
    if result.status != 403:
        return warned(
            _("The board's start was refused for staff, but not with 403 (%(result)s).")
            % {"result": _status_text(result)}
        )
    return passed(
        _("A practice staff login cannot start a call from the board (%(result)s).")
        % {"result": _status_text(result)}
    )


@check(
    2,
    "staff_never_doctor",
    gettext_lazy("No practice staff account is the doctor of an appointment (database)"),
)
def staff_never_doctor(context: Context) -> Finding:
    staff_only = Membership.objects.filter(
        user=OuterRef("doctor"), practice=OuterRef("practice")
    ).exclude(role=Membership.Role.DOCTOR)
    bad = Appointment.objects.filter(Exists(staff_only)).count()
    staff = Membership.objects.filter(role=Membership.Role.STAFF).count()
    if bad:
        return failed(
            _(
                "%(bad)d appointments have a doctor who holds only a staff or auditor role in "
                "the practice."
            )
            % {"bad": bad}
        )
    return passed(
        _(
            "None of the %(staff)d staff memberships is the doctor of any of the %(total)d "
            "appointments."
        )
        % {"staff": staff, "total": Appointment.objects.count()}
    )


# --- Nr. 3: patient without account, one doctor, one month ----------------------------


@check(
    3,
    "anonymous_join",
    gettext_lazy(
        "A patient joins with name and code, without an account (join page and call page)"
    ),
)
def anonymous_join(context: Context) -> Finding:
    try:
        outcome, call_page = _http(context, "patient_join", "call_page")
    except ProbeError as error:
        return _probe_failed(error)
    if not outcome.joined or call_page.status != 200:
        return failed(
            _(
                "A patient with a valid code could not join without an account (join: "
                "%(result)s, call page: HTTP %(call)d)."
            )
            % {"result": _status_text(outcome), "call": call_page.status}
        )
    return passed(
        _(
            "A patient without an account joined with name and code (%(result)s); the call "
            "page answered HTTP %(call)d."
        )
        % {"result": _status_text(outcome), "call": call_page.status}
    )


@check(
    3, "real_name_visible", gettext_lazy("The doctor sees the patient's typed name (real consumer)")
)
def real_name_visible(context: Context) -> Finding:
    try:
        (waiting,) = _ws(context, "doctor_peer_waiting")
    except ProbeError as error:
        return _probe_failed(error)
    if waiting and waiting.get("name") == probes.PATIENT_NAME:
        return passed(
            _('The doctor was told that "%(name)s" is waiting (the name the probe patient typed).')
            % {"name": probes.PATIENT_NAME}
        )
    return failed(_("The doctor was not shown the waiting patient's name."))


@check(
    3,
    "validity_at_most_30_days",
    gettext_lazy("No appointment's codes are valid longer than 30 days (database)"),
)
def validity_at_most_30_days(context: Context) -> Finding:
    too_long = Appointment.objects.filter(expires_at__gt=F("created_at") + KBV_MAX_VALIDITY)
    bad, total = too_long.count(), Appointment.objects.count()
    if bad or MAX_VALIDITY > KBV_MAX_VALIDITY:
        return failed(
            _("%(bad)d of %(total)d appointments have codes valid for more than 30 days.")
            % {"bad": bad, "total": total}
        )
    longest = max(
        (a.expires_at - a.created_at for a in Appointment.objects.only("expires_at", "created_at")),
        default=timedelta(0),
    )
    return passed(
        _(
            "All %(total)d appointments are valid for 30 days at most (longest: %(days).1f "
            "days); a database constraint refuses longer validity."
        )
        % {"total": total, "days": longest.total_seconds() / 86400}
    )


@check(
    3,
    "code_opens_only_its_appointment",
    gettext_lazy(
        "A code leads only to the doctor of its own appointment (join page and real consumer)"
    ),
)
def code_opens_only_its_appointment(context: Context) -> Finding:
    try:
        (other_doctor,) = _http(context, "doctor_code_other_doctor")
        welcome, first = _ws(context, "doctor_b_welcome", "doctor_b_first")
    except ProbeError as error:
        return _probe_failed(error)
    if other_doctor.joined:
        return failed(
            _("Another doctor opened appointment A's call with its doctor code (%(result)s).")
            % {"result": _status_text(other_doctor)}
        )
    saw = [m.get("type") for m in first if m.get("type") == "peer-waiting"]
    if welcome is None or welcome.get("peer") or saw:
        return failed(
            _("The doctor of appointment B saw the patient who joined with appointment A's code.")
        )
    return passed(
        _(
            "Appointment A's doctor code is refused for the doctor of appointment B "
            "(%(result)s), and B's doctor does not see A's waiting patient."
        )
        % {"result": _status_text(other_doctor)}
    )


# --- Nr. 4: undisturbed -----------------------------------------------------------------


@check(
    4,
    "admission_by_doctor",
    gettext_lazy("The patient waits until the doctor admits them (real consumer)"),
)
def admission_by_doctor(context: Context) -> Finding:
    try:
        waiting, early, leaked, admitted = _ws(
            context,
            "patient_waiting",
            "offer_before_admit",
            "doctor_got_before_admit",
            "admitted",
        )
    except ProbeError as error:
        return _probe_failed(error)
    early_code = early.get("code") if early else None
    relayed = [m.get("type") for m in leaked if m.get("type") == "offer"]
    if waiting is None or early_code != "not-admitted" or relayed or not admitted:
        return failed(
            _(
                "Admission is not enforced: waiting=%(waiting)s, offer before admission → "
                "%(early)s, relayed=%(relayed)d, admitted=%(admitted)s."
            )
            % {
                "waiting": waiting is not None,
                "early": early_code,
                "relayed": len(relayed),
                "admitted": admitted,
            }
        )
    return passed(
        _(
            "The patient was told to wait; an offer before admission was refused "
            '("not-admitted") and not relayed; after "admit" both sides were admitted.'
        )
    )


@check(
    4,
    "one_doctor_one_patient",
    gettext_lazy("At most one doctor and one patient per appointment (real consumer)"),
)
def one_doctor_one_patient(context: Context) -> Finding:
    try:
        second, close_code = _ws(context, "second_patient_welcome", "first_patient_close")
    except ProbeError as error:
        return _probe_failed(error)
    if close_code != 4009 or second is None:
        return failed(
            _(
                "A second patient connection did not replace the first (first connection: "
                "close code %(code)s)."
            )
            % {"code": close_code}
        )
    return passed(
        _(
            "A second patient connection replaced the first, which was closed with 4009: "
            "never more than one doctor and one patient in a call."
        )
    )


@check(
    4,
    "no_events_from_other_calls",
    gettext_lazy("Nothing from other appointments reaches a call (real consumer)"),
)
def no_events_from_other_calls(context: Context) -> Finding:
    try:
        (received,) = _ws(context, "doctor_b_received_total")
    except ProbeError as error:
        return _probe_failed(error)
    foreign = [kind for kind in received if kind not in ("welcome",)]
    if foreign:
        return failed(
            _(
                "The doctor of another appointment received %(count)d messages of this call: "
                "%(types)s."
            )
            % {"count": len(foreign), "types": ", ".join(foreign)}
        )
    return passed(
        _(
            "While a call of appointment A ran, the doctor connected to appointment B "
            "received nothing but their own welcome message."
        )
    )


# --- Nr. 5: peer to peer ----------------------------------------------------------------


@check(
    5,
    "relays_signaling_only",
    gettext_lazy("The server relays only connection set-up messages (real consumer)"),
)
def relays_signaling_only(context: Context) -> Finding:
    try:
        relayed, media, record, binary = _ws(
            context, "relayed", "media_type", "recording_type", "binary_frame"
        )
    except ProbeError as error:
        return _probe_failed(error)
    leaked = media["leaked"] + record["leaked"]
    if binary["leaked"] or binary["error"] is None:
        return failed(
            _("A binary frame was not refused (reply: %(reply)s, relayed: %(leaked)d).")
            % {"reply": binary["error"], "leaked": len(binary["leaked"])}
        )
    if relayed != ["offer", "answer", "candidate"]:
        return failed(
            _("The signaling relay did not pass offer, answer and candidate (got: %(types)s).")
            % {"types": ", ".join(relayed) or "—"}
        )
    if leaked or media["error"] != "unknown-type" or record["error"] != "unknown-type":
        return failed(
            _(
                "Message types other than signaling were not refused (media: %(media)s, "
                "record: %(record)s, relayed: %(leaked)d)."
            )
            % {"media": media["error"], "record": record["error"], "leaked": len(leaked)}
        )
    return passed(
        _(
            'Relayed were offer, answer and candidate; "media" and "record" messages '
            'were refused as "unknown-type" and a binary frame as "%(binary)s"; none '
            "reached the other side."
        )
        % {"binary": binary["error"]}
    )


def _ice_entries() -> list[tuple[str, str | None, str]]:
    """(url, declared country, host) for every configured ICE server URL."""
    entries = []
    for server in settings.ICE_SERVERS:
        urls = server.get("urls")
        for url in urls if isinstance(urls, list) else [urls]:
            host = re.split(r"[:?]", str(url).split(":", 1)[-1].lstrip("/"))[0]
            entries.append((str(url), server.get("country"), host.strip("[]")))
    return entries


@check(
    5,
    "turn_relays_in_eu",
    gettext_lazy(
        "Relay (TURN) servers are declared in the EU and use time-limited credentials (settings)"
    ),
)
def turn_relays_in_eu(context: Context) -> Finding:
    turn = [entry for entry in _ice_entries() if entry[0].startswith(("turn:", "turns:"))]
    if not turn:
        return passed(
            _("No TURN relay is configured: media flow only directly between the browsers.")
        )
    outside = [url for url, country, _host in turn if country not in regions.EU_COUNTRIES]
    if outside:
        return failed(
            _("TURN relays not declared in an EU country: %(urls)s.") % {"urls": ", ".join(outside)}
        )
    if not settings.TURN_SECRET:
        return warned(
            _(
                "%(count)d TURN relays in the EU, but TURN_SECRET is not set: no time-limited "
                "credentials."
            )
            % {"count": len(turn)}
        )
    return passed(
        _(
            "%(count)d TURN relays, all declared in the EU (%(countries)s), with time-limited "
            "credentials; relayed packets stay end-to-end encrypted (DTLS-SRTP)."
        )
        % {"count": len(turn), "countries": ", ".join(sorted({c for _u, c, _h in turn}))}
    )


# --- Nr. 6: end-to-end encryption -------------------------------------------------------


@check(
    6,
    "sdp_requires_dtls",
    gettext_lazy("Offers without a DTLS fingerprint or with SDES keys are refused (real consumer)"),
)
def sdp_requires_dtls(context: Context) -> Finding:
    try:
        no_fp, sdes, relayed = _ws(context, "sdp_no_fingerprint", "sdp_sdes", "relayed")
    except ProbeError as error:
        return _probe_failed(error)
    problems = []
    for name, result in (("fingerprint", no_fp), ("sdes", sdes)):
        if result["error"] != "insecure-sdp" or result["leaked"]:
            problems.append(f"{name}: {result['error']}, relayed {len(result['leaked'])}")
    if problems:
        return failed(
            _("Insecure session descriptions were not refused: %(problems)s.")
            % {"problems": "; ".join(problems)}
        )
    if "offer" not in relayed:
        return failed(_("A secure offer with a DTLS fingerprint was not relayed."))
    return passed(
        _(
            'An offer without "a=fingerprint" and one with an SDES key ("a=crypto") were '
            'refused as "insecure-sdp" and not relayed; an offer with a DTLS fingerprint '
            "was relayed."
        )
    )


@check(
    6,
    "https_settings",
    gettext_lazy("HTTPS settings: secure cookies, HSTS, redirect to HTTPS (settings)"),
)
def https_settings(context: Context) -> Finding:
    if not settings.PUBLIC_URL.startswith("https://"):
        return warned(
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
        return failed(
            _("PUBLIC_URL is https, but these settings are not secure: %(names)s.")
            % {"names": ", ".join(wrong)}
        )
    return passed(
        _("Secure session and CSRF cookies, redirect to HTTPS and HSTS for %(days)d days are on.")
        % {"days": hsts // 86400}
    )


@check(
    6, "tls_probe", gettext_lazy("Live TLS probe of PUBLIC_URL against BSI TR-02102-2 (network)")
)
def tls_probe(context: Context) -> Finding:
    public = urlsplit(settings.PUBLIC_URL)
    if public.scheme != "https":
        return warned(
            _(
                "No https PUBLIC_URL is configured (%(url)s): the TLS configuration cannot be "
                "checked here."
            )
            % {"url": settings.PUBLIC_URL}
        )
    try:
        findings = tlsprobe.probe(public.hostname, public.port or 443)
    except tlsprobe.Unreachable as exc:
        return warned(
            _("%(host)s did not answer (%(error)s): the TLS configuration could not be checked.")
            % {"host": public.netloc, "error": exc}
        )
    except Exception as exc:  # handshake refused although we offered every modern suite
        return failed(
            _("No TLS connection to %(host)s: %(error)s.")
            % {"host": public.netloc, "error": f"{type(exc).__name__}: {exc}"}
        )
    summary = _(
        "%(protocol)s with %(cipher)s, TLS 1.2: %(tls12)s, certificate key %(key)s %(bits)s bit"
    ) % {
        "protocol": findings.protocol,
        "cipher": findings.cipher,
        "tls12": findings.tls12_cipher or "—",
        "key": findings.key_type,
        "bits": findings.key_bits,
    }
    problems = tlsprobe.assess(findings)
    if problems:
        return failed(
            _("%(host)s: %(summary)s. Not compliant with BSI TR-02102-2: %(problems)s.")
            % {"host": public.netloc, "summary": summary, "problems": "; ".join(problems)}
        )
    return passed(
        _(
            "%(host)s: %(summary)s; TLS 1.0/1.1 and ciphers outside BSI TR-02102-2 are "
            "refused; the certificate is trusted."
        )
        % {"host": public.netloc, "summary": summary}
    )


# --- Nr. 7: adaptive quality (static inspection of the call client) -------------------

CALL_TEMPLATE = "consultations/call.html"


def _call_scripts() -> dict[str, str]:
    return {
        file.path: file.text()
        for file in scans.static_files((".js", ".mjs"))
        if file.own and file.path.startswith("js/")
    }


def _call_template() -> str:
    template = get_template(CALL_TEMPLATE)
    return template.template.source


@check(
    7,
    "no_bitrate_caps",
    gettext_lazy("The call client sets no fixed bitrate cap (static check of the JavaScript)"),
    static=True,
)
def no_bitrate_caps(context: Context) -> Finding:
    scripts = _call_scripts()
    if not scripts:
        return failed(_("No call client scripts found below static/js/."))
    capped = sorted(
        path
        for path, text in scripts.items()
        if re.search(r"\bmaxBitrate\b|b=AS:|b=TIAS:|\bmaxFramerate\s*:", text)
    )
    if capped:
        return failed(
            _("Static check: fixed bitrate caps in %(files)s.") % {"files": ", ".join(capped)}
        )
    return passed(
        _(
            "Static check: none of the %(count)d call scripts sets maxBitrate or a bandwidth "
            "line; WebRTC congestion control adapts the rate."
        )
        % {"count": len(scripts)}
    )


@check(
    7,
    "degradation_preference",
    gettext_lazy("The call client sets a degradation preference (static check of the JavaScript)"),
    static=True,
)
def degradation_preference(context: Context) -> Finding:
    found = sorted(p for p, text in _call_scripts().items() if "degradationPreference" in text)
    if not found:
        return failed(_("Static check: no call script sets degradationPreference."))
    return passed(
        _("Static check: degradationPreference is set in %(files)s.") % {"files": ", ".join(found)}
    )


@check(
    7,
    "quality_controls",
    gettext_lazy(
        "The call page shows a quality indicator and offers "
        "an audio-only switch (static check of template and JavaScript)"
    ),
    static=True,
)
def quality_controls(context: Context) -> Finding:
    try:
        source = _call_template()
    except TemplateDoesNotExist:
        return failed(_("Static check: the call page template is missing."))
    stats = sorted(p for p, text in _call_scripts().items() if "getStats" in text)
    missing = [
        name
        for name, present in (
            ('data-role="quality"', 'data-role="quality"' in source),
            ('data-action="audio-only"', 'data-action="audio-only"' in source),
            ("getStats()", bool(stats)),
        )
        if not present
    ]
    if missing:
        return failed(
            _("Static check: the call page lacks %(missing)s.") % {"missing": ", ".join(missing)}
        )
    return passed(
        _(
            "Static check: the call page has a quality indicator fed by getStats() "
            "(%(files)s) and an audio-only switch; the participants decide whether to go on."
        )
        % {"files": ", ".join(stats)}
    )


# --- Nr. 8: no viewing or storing of content ------------------------------------------


@check(
    8,
    "no_content_fields",
    gettext_lazy(
        "No database field can hold call content (scan of all models against an allowlist)"
    ),
)
def no_content_fields(context: Context) -> Finding:
    scanned, unlisted = scans.unlisted_fields(apps.get_models())
    if unlisted:
        return failed(
            _(
                "%(count)d fields are not on the reviewed allowlist and might hold content: "
                "%(fields)s."
            )
            % {"count": len(unlisted), "fields": ", ".join(unlisted)}
        )
    return passed(
        _(
            "All %(scanned)d fields of %(models)d models are on the reviewed allowlist; none "
            "can hold names of patients or call content."
        )
        % {"scanned": scanned, "models": len(apps.get_models())}
    )


@check(
    8, "no_recording_code", gettext_lazy("No served script can record (MediaRecorder)"), static=True
)
def no_recording_code(context: Context) -> Finding:
    scripts = list(scans.static_files((".js", ".mjs")))
    recording = sorted(f.path for f in scripts if re.search(r"MediaRecorder", f.text()))
    if recording:
        return failed(
            _("Served scripts that use MediaRecorder: %(files)s.") % {"files": ", ".join(recording)}
        )
    return passed(
        _("None of the %(count)d served scripts uses MediaRecorder.") % {"count": len(scripts)}
    )


@check(
    8,
    "relay_writes_nothing",
    gettext_lazy(
        "Relaying a call's messages writes nothing to "
        "the database (queries counted on the real consumer)"
    ),
)
def relay_writes_nothing(context: Context) -> Finding:
    try:
        reads, writes, connect = _ws(context, "relay_reads", "relay_writes", "connect_queries")
    except ProbeError as error:
        return _probe_failed(error)
    if writes:
        return failed(
            _("Relaying offer, answer and candidate caused %(writes)d database writes.")
            % {"writes": writes}
        )
    if not connect:
        return warned(
            _(
                "No database queries were seen at all, not even when connecting: the count "
                "cannot be trusted."
            )
        )
    if reads:
        return warned(
            _("Relaying wrote nothing, but caused %(reads)d database reads.") % {"reads": reads}
        )
    return passed(
        _(
            "Relaying offer, answer and candidate caused 0 database queries (connecting "
            "caused %(connect)d, so the counter sees the consumer)."
        )
        % {"connect": connect}
    )


# --- Nr. 9: EU servers, metadata ≤ 3 months -------------------------------------------


@check(
    9,
    "ice_servers_in_eu",
    gettext_lazy(
        "Every STUN/TURN server declares an EU location "
        "and is not a known public non-EU service (settings)"
    ),
)
def ice_servers_in_eu(context: Context) -> Finding:
    entries = _ice_entries()
    if not entries:
        return passed(
            _(
                "No STUN/TURN servers are configured: browsers connect directly, no third "
                "server is used."
            )
        )
    public = [url for url, _c, host in entries if regions.is_public_non_eu_host(host)]
    undeclared = [url for url, country, _h in entries if not country]
    outside = [
        f"{url} ({country})"
        for url, country, _h in entries
        if country and country not in regions.EU_COUNTRIES | regions.EEA_ONLY_COUNTRIES
    ]
    eea = [f"{url} ({c})" for url, c, _h in entries if c in regions.EEA_ONLY_COUNTRIES]
    if public or undeclared or outside:
        return failed(
            _("ICE servers outside the EU or without a declared location: %(list)s.")
            % {"list": ", ".join([*public, *(u + " (?)" for u in undeclared), *outside])}
        )
    if eea:
        return warned(
            _("ICE servers in the EEA but outside the EU: %(list)s.") % {"list": ", ".join(eea)}
        )
    return passed(
        _("All %(count)d ICE server addresses are declared in the EU: %(list)s.")
        % {"count": len(entries), "list": ", ".join(f"{h} ({c})" for _u, c, h in entries)}
    )


@check(
    9,
    "retention_at_most_90_days",
    gettext_lazy("Metadata retention is at most three months (settings)"),
)
def retention_at_most_90_days(context: Context) -> Finding:
    days = settings.METADATA_RETENTION_DAYS
    if days > KBV_MAX_RETENTION_DAYS:
        return failed(_("METADATA_RETENTION_DAYS is %(days)d: more than 90 days.") % {"days": days})
    return passed(
        _(
            "Expired and cancelled appointments are deleted %(days)d days after expiry (limit: "
            "90 days)."
        )
        % {"days": days}
    )


@check(9, "purge_is_running", gettext_lazy("No record outlives expiry plus retention (database)"))
def purge_is_running(context: Context) -> Finding:
    overdue = services.purgeable(timezone.now() - PURGE_GRACE)
    count = overdue.count()
    if count:
        return failed(
            _(
                "%(count)d appointments are more than a day past their deletion date: the "
                "purge job (purge_expired) is not running."
            )
            % {"count": count}
        )
    return passed(
        _(
            "No appointment is past expiry plus %(days)d days of retention (of %(total)d "
            "stored); the purge job is doing its work."
        )
        % {"days": settings.METADATA_RETENTION_DAYS, "total": Appointment.objects.count()}
    )


_ADDRESS_FIELDS = re.compile(
    r"%\((?:[^)]*(?:addr|client|remote|ip|host|forwarded|peer)[^)]*)\)|"
    r"\{(?:[^}]*(?:addr|client|remote|ip|host|forwarded|peer)[^}]*)\}",
    re.IGNORECASE,
)


@check(
    9,
    "no_client_addresses_logged",
    gettext_lazy("Logs hold no client address (logging configuration and a logged probe request)"),
)
def no_client_addresses_logged(context: Context) -> Finding:
    formats = [
        formatter.get("format", "") or formatter.get("fmt", "")
        for formatter in settings.LOGGING.get("formatters", {}).values()
    ]
    fields = sorted({m for fmt in formats for m in _ADDRESS_FIELDS.findall(fmt)})
    if fields:
        return failed(
            _("The log format contains client address fields: %(fields)s.")
            % {"fields": ", ".join(fields)}
        )
    try:
        (texts,) = _http(context, "log_texts")
    except ProbeError as error:
        return _probe_failed(error)
    leaks = [t for t in texts if probes.PROBE_ADDRESS in t or probes.PROBE_FORWARDED in t]
    if leaks:
        return failed(
            _("%(count)d log records of the probe requests contain the client address.")
            % {"count": len(leaks)}
        )
    return passed(
        _(
            "%(formats)d log formats have no address field; none of the %(records)d log records "
            "of the probe requests contains the client address."
        )
        % {"formats": len(formats), "records": len(texts)}
    )


DECLARATION_SETTINGS = (
    "OPERATOR_NAME",
    "OPERATOR_ADDRESS",
    "OPERATOR_EMAIL",
    "HOSTING_PROVIDER",
    "HOSTING_COUNTRY",
)


def demo_declarations() -> set[str]:
    """The declaration settings still on their demo value (settings.DEMO_DECLARATIONS)."""
    demo = {
        name
        for name in DECLARATION_SETTINGS
        if getattr(settings, name) == settings.DEMO_DECLARATIONS.get(name)
    }
    if "HOSTING_PROVIDER" not in demo:
        demo.discard("HOSTING_COUNTRY")  # "DE" is a real answer too, unless the demo provider
    return demo


def _declaration(names: list[str], text: str) -> Finding:
    demo = [name for name in names if name in demo_declarations()]
    if demo:
        return warned(
            _("Still the demo value: %(names)s. Declared: %(text)s")
            % {"names": ", ".join(demo), "text": text}
        )
    return declared(text)


@check(
    9,
    "hosting_declaration",
    gettext_lazy(
        "Declaration: hosting provider, data-centre location, no passing on of data (settings)"
    ),
)
def hosting_declaration(context: Context) -> Finding:
    country = settings.HOSTING_COUNTRY
    if country not in regions.EU_COUNTRIES:
        return failed(
            _("The declared data-centre country %(country)s is not in the EU.")
            % {"country": country}
        )
    text = _(
        "The operator declares hosting by %(provider)s in a data centre in %(country)s, "
        "use of metadata only to run the consultation, and no passing on of data."
    ) % {"provider": settings.HOSTING_PROVIDER, "country": country}
    return _declaration(["HOSTING_PROVIDER", "HOSTING_COUNTRY"], text)


# --- Nr. 10: terms in German without login --------------------------------------------

MIN_PAGE_TEXT = 400  # characters: an empty placeholder page is not "complete"


@check(
    10,
    "public_pages_german",
    gettext_lazy("Terms, privacy notice, FAQ and imprint answer without login, in German (HTTP)"),
)
def public_pages_german(context: Context) -> Finding:
    try:
        (pages,) = _http(context, "public_pages")
    except ProbeError as error:
        return _probe_failed(error)
    summary, bad, short = [], [], []
    for page in pages.values():
        lang, length = scans.html_lang(page.html), scans.visible_text_length(page.html)
        summary.append(f"{page.path} ({page.status}, lang={lang}, {length})")
        if page.status != 200 or lang != "de":
            bad.append(page.path)
        elif length < MIN_PAGE_TEXT:
            short.append(page.path)
    if bad:
        return failed(
            _("Not readable in German without login: %(pages)s. Found: %(summary)s.")
            % {"pages": ", ".join(bad), "summary": "; ".join(summary)}
        )
    if short:
        return warned(
            _("Pages that look incomplete (under %(min)d characters): %(pages)s.")
            % {"min": MIN_PAGE_TEXT, "pages": ", ".join(short)}
        )
    return passed(
        _("Answered without login (status, language, characters of text): %(summary)s.")
        % {"summary": "; ".join(summary)}
    )


@check(
    10, "public_pages_linked", gettext_lazy("The join page links to the four public pages (HTTP)")
)
def public_pages_linked(context: Context) -> Finding:
    try:
        (join_page,) = _http(context, "join_page")
    except ProbeError as error:
        return _probe_failed(error)
    links = scans.links_in(join_page.html)
    missing = [reverse(name) for name in probes.PUBLIC_PAGES if reverse(name) not in links]
    if join_page.status != 200 or missing:
        return failed(
            _("The join page (HTTP %(status)d) does not link to: %(missing)s.")
            % {"status": join_page.status, "missing": ", ".join(missing) or "—"}
        )
    return passed(
        _("The join page links to %(pages)s.")
        % {"pages": ", ".join(reverse(name) for name in probes.PUBLIC_PAGES)}
    )


@check(
    10,
    "operator_declaration",
    gettext_lazy("Declaration: operator named in the imprint (settings)"),
)
def operator_declaration(context: Context) -> Finding:
    text = _("Operator: %(name)s, %(address)s, %(email)s.") % {
        "name": settings.OPERATOR_NAME,
        "address": settings.OPERATOR_ADDRESS,
        "email": settings.OPERATOR_EMAIL,
    }
    return _declaration(["OPERATOR_NAME", "OPERATOR_ADDRESS", "OPERATOR_EMAIL"], text)


# --- Nr. 11: no advertising -----------------------------------------------------------


@check(
    11,
    "pages_load_nothing_foreign",
    gettext_lazy("Rendered public pages and the call page load nothing from another origin (HTTP)"),
)
def pages_load_nothing_foreign(context: Context) -> Finding:
    try:
        join_page, pages, call_page = _http(context, "join_page", "public_pages", "call_page")
    except ProbeError as error:
        return _probe_failed(error)
    rendered = [join_page, *pages.values(), call_page]
    not_rendered = [page.path for page in rendered if page.status != 200]
    foreign = {page.path: scans.foreign_loads(page.html) for page in rendered}
    foreign = {path: urls for path, urls in foreign.items() if urls}
    if foreign:
        return failed(
            _("Pages that load from other origins: %(list)s.")
            % {"list": "; ".join(f"{p}: {', '.join(u)}" for p, u in foreign.items())}
        )
    if not_rendered:
        return failed(
            _("These pages could not be rendered for the check: %(pages)s.")
            % {"pages": ", ".join(not_rendered)}
        )
    return passed(
        _(
            "%(count)d rendered pages (%(pages)s) load scripts, styles, images and frames only "
            "from their own origin."
        )
        % {"count": len(rendered), "pages": ", ".join(page.path for page in rendered)}
    )


@check(
    11,
    "static_files_no_foreign_urls",
    gettext_lazy("Served scripts and style sheets reference no other origin"),
    static=True,
)
def static_files_no_foreign_urls(context: Context) -> Finding:
    files = list(scans.static_files())
    offending = {f.path: refs for f in files if (refs := scans.foreign_references(f))}
    if offending:
        return failed(
            _("Static files referring to other origins: %(list)s.")
            % {"list": "; ".join(f"{p}: {', '.join(u)}" for p, u in offending.items())}
        )
    return passed(
        _("None of the %(count)d served scripts and style sheets loads from another origin.")
        % {"count": len(files)}
    )


@check(
    11,
    "csp_forbids_foreign_origins",
    gettext_lazy("The Content Security Policy forbids other origins (HTTP header)"),
)
def csp_forbids_foreign_origins(context: Context) -> Finding:
    try:
        join_page, call_page = _http(context, "join_page", "call_page")
    except ProbeError as error:
        return _probe_failed(error)
    problems = []
    for page in (join_page, call_page):
        if not page.csp:
            problems.append(f"{page.path}: —")
            continue
        directives, foreign = scans.csp_foreign_sources(page.csp)
        if directives.get("default-src") not in (["'self'"], ["'none'"]):
            problems.append(f"{page.path}: default-src {directives.get('default-src')}")
        problems.extend(f"{page.path}: {source}" for source in foreign)
    if problems:
        return failed(
            _("The Content Security Policy allows other origins or is missing: %(list)s.")
            % {"list": "; ".join(problems)}
        )
    return passed(
        _(
            "The join page and the call page send a Content Security Policy with default-src "
            "'self' and no other origin: %(csp)s"
        )
        % {"csp": join_page.csp}
    )
