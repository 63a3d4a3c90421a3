"""DRF's side of admin-key authentication (apps.keys.admin_authentication does the work)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.accounts.models import User
from apps.keys.admin_authentication import AdminIdentity, authenticate_admin
from apps.keys.authentication import InvalidAPIKey


class AdminKeyAuthentication(BaseAuthentication):
    """`request.user` is the key's creator and `request.auth` its AdminIdentity."""

    def authenticate(self, request: Request) -> tuple[User, AdminIdentity]:
        try:
            identity = authenticate_admin(request.META.get("HTTP_AUTHORIZATION"))
        except InvalidAPIKey as error:
            raise exceptions.AuthenticationFailed(str(error)) from None
        return identity.membership.user, identity

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return "Bearer"
