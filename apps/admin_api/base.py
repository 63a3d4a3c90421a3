"""The base of every admin API view: admin-key authentication, JSON only, OpenAI's errors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.admin_api import schema as _schema  # noqa: F401  (registers the admin-key scheme)
from apps.admin_api import serializers as shapes
from apps.admin_api.authentication import AdminKeyAuthentication
from apps.admin_api.errors import exception_handler, forbidden
from apps.keys.admin_authentication import AdminIdentity

_ERRORS = {status: shapes.ErrorSerializer for status in (400, 401, 403, 404)}


def documented(**kwargs: Any) -> Any:
    """`extend_schema` on a view method, based on spectacular's AutoSchema: the project's
    REST_FRAMEWORK settings name no DEFAULT_SCHEMA_CLASS, which the decorator would take."""

    def decorate(method: Any) -> Any:
        method.schema = AutoSchema
        return extend_schema(**kwargs)(method)

    return decorate


def responses(status: int, serializer: Any) -> dict[int, Any]:
    return {status: serializer, **_ERRORS}


class AdminAPIView(APIView):
    authentication_classes = [AdminKeyAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]
    throttle_classes: list[Any] = []
    schema = AutoSchema()

    def get_exception_handler(self) -> Any:
        return exception_handler

    @property
    def identity(self) -> AdminIdentity:
        identity: AdminIdentity = self.request.auth
        return identity

    def validated(self, serializer_class: type[serializers.Serializer], data: Any) -> Any:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def require_manager(self) -> None:
        if not self.identity.is_manager:
            raise forbidden("Only owners and admins manage members and billing.")


def render(
    serializer_class: type[serializers.Serializer], body: Any, status: int = 200
) -> Response:
    return Response(serializer_class(body).data, status=status)
