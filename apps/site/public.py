"""What pages need to know about where they are served: the public base URL, the client address."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def public_base_url(request: HttpRequest) -> str:
    """This server's origin as customers reach it, e.g. "https://api.example.com"."""
    if settings.PLUGSKY_PUBLIC_URL:
        return str(settings.PLUGSKY_PUBLIC_URL)
    return request.build_absolute_uri("/").rstrip("/")


def api_base_url(request: HttpRequest) -> str:
    """The `base_url` an OpenAI SDK needs: the origin plus /v1."""
    return public_base_url(request) + "/v1"


def client_ip(request: HttpRequest) -> str:
    """The client's address; behind a trusted balancer, the one it appended to X-Forwarded-For."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return str(request.META.get("REMOTE_ADDR", ""))
