"""WebSocket routes (the in-browser tester streams through Channels)."""

from channels.auth import AuthMiddlewareStack
from django.urls import URLPattern, path

from apps.tester.consumers import TesterConsumer

websocket_urlpatterns: list[URLPattern] = [
    # The session cookie identifies the user; the consumer checks their membership.
    path("ws/tester/<int:organization_id>/", AuthMiddlewareStack(TesterConsumer.as_asgi())),
]
