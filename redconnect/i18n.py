"""Language selection: German unless the visitor picked another language on the page."""

from __future__ import annotations

from django.conf import settings
from django.middleware.locale import LocaleMiddleware
from django.utils import translation


class ChosenLanguageMiddleware(LocaleMiddleware):
    """Activate the language from the switch's cookie, else `LANGUAGE_CODE` (German).

    Django's LocaleMiddleware would also follow the browser's Accept-Language header.
    We deliberately do not: the service, its terms and its error messages are German
    (KBV Anlage 31b § 5 Nr. 10), every visitor must see the same page the practice
    describes on the code slip, and English is one click away on every page.
    """

    def process_request(self, request) -> None:
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        try:
            language = translation.get_supported_language_variant(chosen or "")
        except LookupError:
            language = settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
