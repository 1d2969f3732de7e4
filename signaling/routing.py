urlpatterns_placeholder = None
websocket_urlpatterns: list = []
