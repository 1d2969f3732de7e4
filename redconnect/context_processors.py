from django.conf import settings


def site(request) -> dict:
    """Values every page needs: operator for the footer, the public address."""
    return {
        "OPERATOR_NAME": settings.OPERATOR_NAME,
        "PUBLIC_URL": settings.PUBLIC_URL,
    }
