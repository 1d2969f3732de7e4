from django import template

from compliance.views import may_audit

register = template.Library()


@register.simple_tag(takes_context=True)
def can_audit(context) -> bool:
    request = context.get("request")
    return bool(request and request.user.is_authenticated and may_audit(request.user))
