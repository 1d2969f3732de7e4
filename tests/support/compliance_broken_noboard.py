"""The broken URL configuration without the board: its start probe cannot run at all."""

from tests.support.compliance_broken import urlpatterns as _broken

urlpatterns = [p for p in _broken if getattr(p, "name", None) != "board-start"]
