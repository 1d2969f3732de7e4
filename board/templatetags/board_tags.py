from django import template
from django.utils.translation import gettext as _

from board import access, links

register = template.Library()


@register.simple_tag
def join_qr(code: str) -> str:
    """The slip's QR code: opens the join page with the code filled in."""
    return links.qr_img(code, _("QR code: opens the join page with your access code filled in"))


@register.simple_tag(takes_context=True)
def board_available(context) -> bool:
    request = context.get("request")
    return request is not None and access.board_practices(request.user).exists()
