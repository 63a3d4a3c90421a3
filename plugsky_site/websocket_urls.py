"""WebSocket routes (the in-browser tester streams through Channels)."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
