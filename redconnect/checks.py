"""System checks for what Django's own checks cannot see in this project."""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.module_loading import import_string


@checks.register(checks.Tags.security, deploy=True)
def csrf_middleware_installed(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Stands in for Django's security.W003, silenced in settings.

    W003 looks for Django's CsrfViewMiddleware by its exact path; the project installs a
    subclass (redconnect.csrf), so W003 would warn although CSRF protection is active.
    """
    for path in settings.MIDDLEWARE:
        try:
            middleware = import_string(path)
        except ImportError:
            continue
        if isinstance(middleware, type) and issubclass(middleware, CsrfViewMiddleware):
            return []
    return [
        checks.Warning(
            "No CSRF middleware (django.middleware.csrf.CsrfViewMiddleware or a subclass) "
            "is installed: forms are open to cross-site request forgery.",
            id="redconnect.W003",
        )
    ]
