"""What the operator declares and software cannot verify, and whether it is still a demo.

The one home of the "still a demo value" rule: a declaration setting equal to its entry
in `settings.DEMO_DECLARATIONS` is a demo value — except the country, whose demo value
(DE) is a real answer too, unless the provider is still the demo one.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _

from compliance.registry import Finding

DECLARATION_SETTINGS = (
    "OPERATOR_NAME",
    "OPERATOR_ADDRESS",
    "OPERATOR_EMAIL",
    "HOSTING_PROVIDER",
    "HOSTING_COUNTRY",
)


def demo_declarations() -> set[str]:
    """The declaration settings still on their demo value."""
    demo = {
        name
        for name in DECLARATION_SETTINGS
        if getattr(settings, name) == settings.DEMO_DECLARATIONS.get(name)
    }
    if "HOSTING_PROVIDER" not in demo:
        demo.discard("HOSTING_COUNTRY")
    return demo


def any_demo_value() -> bool:
    """True while any declaration is still a demo value (the public pages say so)."""
    return bool(demo_declarations())


def declaration(names: list[str], text: str) -> Finding:
    """`declared`, or `warn` while one of the named settings is still a demo value."""
    demo = [name for name in names if name in demo_declarations()]
    if demo:
        return Finding.warned(
            _("Still the demo value: %(names)s. Declared: %(text)s")
            % {"names": ", ".join(demo), "text": text}
        )
    return Finding.declared(text)
