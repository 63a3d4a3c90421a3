"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plugsky_site.settings")

# Django must be set up before anything imports models.
django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from apps.gateway.admission import released_at_request_end  # noqa: E402
from apps.gateway.middleware import envelope_for_status, is_v1_path  # noqa: E402
from plugsky_site.websocket_urls import websocket_urlpatterns  # noqa: E402


class PlugskyASGIHandler(ASGIHandler):
    """Django's handler, whose own answers to undecodable /v1 requests use OpenAI's envelope."""

    def create_request(self, scope, body_file):
        request, error_response = super().create_request(scope, body_file)
        if error_response is not None and is_v1_path(scope["path"]):
            error_response = envelope_for_status(error_response.status_code)
        return request, error_response


django_asgi_app = PlugskyASGIHandler()

# Daphne does not serve static files; in development Django's handler does (no build step).
# Django's handler returns once a response is sent or its client has gone: /v1 calls in flight end
# there at the latest (apps/gateway/admission.py).
http_app = released_at_request_end(
    ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app
)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
