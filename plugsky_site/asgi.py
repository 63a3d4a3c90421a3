"""ASGI entry point: HTTP through Django, WebSockets through Channels.

The gateway's /v1 has a handler of its own (plugsky_site.v1_handler): Django without the site's
sync middleware, which cost more CPU per API call than the call's own work.
"""

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
from plugsky_site.v1_handler import V1ASGIHandler  # noqa: E402
from plugsky_site.v1_handler import serves as serves_v1  # noqa: E402
from plugsky_site.websocket_urls import websocket_urlpatterns  # noqa: E402

django_asgi_app = ASGIHandler()
# Daphne does not serve static files; in development Django's handler does (no build step).
site_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app
v1_app = V1ASGIHandler()


async def _by_path(scope, receive, send):
    app = v1_app if serves_v1(scope["path"]) else site_app
    await app(scope, receive, send)


# Both handlers return once a response is sent or its client has gone: /v1 calls in flight end
# there at the latest (apps/gateway/admission.py).
http_app = released_at_request_end(_by_path)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
