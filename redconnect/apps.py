"""App configuration for the admin; kept free of model imports (loaded before models)."""

from django.contrib.admin.apps import AdminConfig


class RedConnectAdminConfig(AdminConfig):
    """`django.contrib.admin` with `RedConnectAdminSite` (TOTP second factor) as `admin.site`."""

    default_site = "redconnect.admin_site.RedConnectAdminSite"

    def ready(self) -> None:
        super().ready()
        # The project package is no app of its own; its system checks register here.
        from redconnect import checks  # noqa: F401
