"""§ 5 Nr. 9: servers in the EU; metadata deleted after three months at most."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from compliance import kbv, regions
from compliance.declarations import declaration
from compliance.probes import PROBE_ADDRESS, PROBE_FORWARDED, HttpObservations
from compliance.registry import Finding, Requirement, Status, check
from consultations import services
from consultations.models import MAX_VALIDITY, Appointment

REQUIREMENT = Requirement(
    9,
    gettext_lazy("Servers in the EU, metadata for three months at most"),
    gettext_lazy(
        "Only servers in the EU may be used. All metadata must be deleted after three "
        "months at the latest, used only to run the consultation and never passed on."
    ),
    gettext_lazy(
        "Every STUN/TURN server is declared with its location and must stand in the EU; "
        "appointment records are purged after the configured retention period; logs "
        "hold no client addresses."
    ),
    gettext_lazy(
        "Annex 31b as amended on 15 June 2022: § 2a (data protection, server location "
        "and deletion of metadata)"
    ),
)


@check(
    "ice_servers_in_eu",
    gettext_lazy(
        "Every STUN/TURN server declares an EU location "
        "and is not a known public non-EU service (settings)"
    ),
)
def ice_servers_in_eu() -> Finding:
    entries = regions.ice_entries()
    if not entries:
        return Finding.passed(
            _(
                "No STUN/TURN servers are configured: browsers connect directly, no third "
                "server is used."
            )
        )
    refused = [f"{e.url} ({e.country or '?'})" for e in entries if e.status == Status.FAIL]
    if refused:
        return Finding.failed(
            _("ICE servers outside the EU or without a declared location: %(list)s.")
            % {"list": ", ".join(refused)}
        )
    eea = [f"{e.url} ({e.country})" for e in entries if e.status == Status.WARN]
    if eea:
        return Finding.warned(
            _("ICE servers in the EEA but outside the EU: %(list)s.") % {"list": ", ".join(eea)}
        )
    return Finding.passed(
        _("All %(count)d ICE server addresses are declared in the EU: %(list)s.")
        % {"count": len(entries), "list": ", ".join(f"{e.host} ({e.country})" for e in entries)}
    )


@check(
    "retention_at_most_90_days",
    gettext_lazy("Metadata retention is at most three months (settings)"),
)
def retention_at_most_90_days() -> Finding:
    days = settings.METADATA_RETENTION_DAYS
    if days > kbv.MAX_RETENTION_DAYS:
        return Finding.failed(
            _("METADATA_RETENTION_DAYS is %(days)d: more than 90 days.") % {"days": days}
        )
    return Finding.passed(
        _(
            "Expired and cancelled appointments are deleted %(days)d days after expiry (limit: "
            "90 days)."
        )
        % {"days": days}
    )


def overdue_admin_history(now: datetime) -> tuple[int, int]:
    """(overdue, stored) admin history entries about appointments (django_admin_log).

    Overdue: older than any appointment can live (30 days' validity plus retention), or
    about an appointment that no longer exists, once a purge run (a day) has passed since
    the newest entry about it — the deletion entry the admin writes itself included.
    """
    if not apps.is_installed("django.contrib.admin"):
        return 0, 0
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    entries = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Appointment))
    longest_life = MAX_VALIDITY + timedelta(days=settings.METADATA_RETENTION_DAYS)
    cutoff = now - longest_life - kbv.PURGE_GRACE
    existing = {str(pk) for pk in Appointment.objects.values_list("pk", flat=True)}
    gone = [
        row["object_id"]
        for row in entries.values("object_id").annotate(newest=Max("action_time"))
        if row["object_id"] not in existing and row["newest"] < now - kbv.PURGE_GRACE
    ]
    overdue = entries.filter(action_time__lt=cutoff).count()
    overdue += entries.filter(object_id__in=gone, action_time__gte=cutoff).count()
    return overdue, entries.count()


def expired_sessions(now: datetime) -> tuple[int, int]:
    """(expired for more than a day, stored) rows of django_session."""
    if not apps.is_installed("django.contrib.sessions"):
        return 0, 0
    from django.contrib.sessions.models import Session

    expired = Session.objects.filter(expire_date__lt=now - kbv.PURGE_GRACE).count()
    return expired, Session.objects.count()


@check(
    "purge_is_running",
    gettext_lazy(
        "No record outlives expiry plus retention: appointments, admin history, sessions (database)"
    ),
)
def purge_is_running() -> Finding:
    now = timezone.now()
    appointments = services.purgeable(now - kbv.PURGE_GRACE).count()
    history, history_total = overdue_admin_history(now)
    sessions, sessions_total = expired_sessions(now)
    problems = []
    if appointments:
        problems.append(_("%(count)d appointments") % {"count": appointments})
    if history:
        problems.append(
            _("%(count)d admin history entries about deleted or expired appointments")
            % {"count": history}
        )
    if sessions:
        problems.append(_("%(count)d expired sessions") % {"count": sessions})
    if problems:
        return Finding.failed(
            _(
                "More than a day past their deletion date: %(problems)s. The purge job "
                "(purge_expired) is not doing its work."
            )
            % {"problems": ", ".join(problems)}
        )
    return Finding.passed(
        _(
            "No appointment is past expiry plus %(days)d days of retention (of %(total)d "
            "stored), no admin history entry outlives its appointment (of %(history)d) and no "
            "session is kept past its expiry (of %(sessions)d); the purge job is doing its work."
        )
        % {
            "days": settings.METADATA_RETENTION_DAYS,
            "total": Appointment.objects.count(),
            "history": history_total,
            "sessions": sessions_total,
        }
    )


_ADDRESS_FIELDS = re.compile(
    r"%\((?:[^)]*(?:addr|client|remote|ip|host|forwarded|peer)[^)]*)\)|"
    r"\{(?:[^}]*(?:addr|client|remote|ip|host|forwarded|peer)[^}]*)\}",
    re.IGNORECASE,
)


@check(
    "no_client_addresses_logged",
    gettext_lazy("Logs hold no client address (logging configuration and a logged probe request)"),
)
def no_client_addresses_logged(http: HttpObservations) -> Finding:
    formats = [
        formatter.get("format", "") or formatter.get("fmt", "")
        for formatter in settings.LOGGING.get("formatters", {}).values()
    ]
    fields = sorted({m for fmt in formats for m in _ADDRESS_FIELDS.findall(fmt)})
    if fields:
        return Finding.failed(
            _("The log format contains client address fields: %(fields)s.")
            % {"fields": ", ".join(fields)}
        )
    leaks = [t for t in http.log_texts if PROBE_ADDRESS in t or PROBE_FORWARDED in t]
    if leaks:
        return Finding.failed(
            _("%(count)d log records of the probe requests contain the client address.")
            % {"count": len(leaks)}
        )
    return Finding.passed(
        _(
            "%(formats)d log formats have no address field; none of the %(records)d log records "
            "of the probe requests contains the client address."
        )
        % {"formats": len(formats), "records": len(http.log_texts)}
    )


@check(
    "hosting_declaration",
    gettext_lazy(
        "Declaration: hosting provider, data-centre location, no passing on of data (settings)"
    ),
)
def hosting_declaration() -> Finding:
    country = settings.HOSTING_COUNTRY
    status = regions.country_status(country)
    if status == Status.FAIL:
        return Finding.failed(
            _("The declared data-centre country %(country)s is not in the EU.")
            % {"country": country}
        )
    text = _(
        "The operator declares hosting by %(provider)s in a data centre in %(country)s, "
        "use of metadata only to run the consultation, and no passing on of data."
    ) % {"provider": settings.HOSTING_PROVIDER, "country": country}
    if status == Status.WARN:
        return Finding.warned(
            _(
                "The declared data-centre country %(country)s is in the EEA, not in the EU. "
                "Declared: %(text)s"
            )
            % {"country": country, "text": text}
        )
    return declaration(["HOSTING_PROVIDER", "HOSTING_COUNTRY"], text)
