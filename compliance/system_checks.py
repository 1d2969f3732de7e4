"""The KBV checks as Django system checks (`manage.py check --deploy --tag kbv`).

Registered for deployment checks only: they run probes and would slow every
`manage.py` command otherwise.
"""

from __future__ import annotations

from django.core import checks as django_checks


@django_checks.register("kbv", deploy=True)
def kbv_requirements(app_configs=None, **kwargs) -> list[django_checks.CheckMessage]:
    from compliance import runner

    messages: list[django_checks.CheckMessage] = []
    for requirement in runner.run_checks()["requirements"]:
        for item in requirement["checks"]:
            number = requirement["number"]
            text = f"KBV § 5 Nr. {number} ({requirement['title']}): {item['evidence']}"
            if item["status"] == runner.FAIL:
                messages.append(django_checks.Error(text, id=f"kbv.E{number:03d}", obj=item["id"]))
            elif item["status"] == runner.WARN:
                messages.append(
                    django_checks.Warning(text, id=f"kbv.W{number:03d}", obj=item["id"])
                )
    return messages
