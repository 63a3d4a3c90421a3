"""Every error of the admin API in OpenAI's envelope, with OpenAI's status and codes."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from apps.protocol.errors import APIError


def not_found(kind: str, public_id: str) -> APIError:
    return APIError(f"No such {kind}: {public_id}", status=404, code="not_found", param=None)


def forbidden(message: str) -> APIError:
    return APIError(message, status=403, code="insufficient_permissions")


def _first_field_error(detail: Any, prefix: str = "") -> tuple[str | None, str, str]:
    """(param, message, DRF code) of the first error in a serializer's nested detail."""
    if isinstance(detail, dict):
        name, inner = next(iter(detail.items()))
        if isinstance(name, int):  # an item of a list: the parameter is the list
            return _first_field_error(inner, prefix)
        param = None if name == "non_field_errors" else f"{prefix}{name}"
        found_param, message, code = _first_field_error(inner, f"{param}." if param else "")
        return found_param or param, message, code
    if isinstance(detail, list) and detail:
        return _first_field_error(detail[0], prefix)
    return None, str(detail), getattr(detail, "code", "invalid")


def _from_validation(error: exceptions.ValidationError) -> APIError:
    param, message, code = _first_field_error(error.detail)
    openai_code = "missing_required_parameter" if code == "required" else "invalid_value"
    return APIError(message, status=400, code=openai_code, param=param)


def _as_api_error(error: Exception) -> APIError | None:
    if isinstance(error, APIError):
        return error
    if isinstance(error, exceptions.ValidationError):
        return _from_validation(error)
    if isinstance(error, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return APIError(str(error.detail), status=401, code="invalid_api_key")
    if isinstance(error, (exceptions.PermissionDenied, DjangoPermissionDenied)):
        return forbidden(str(error) or "You may not do this.")
    if isinstance(error, DjangoValidationError):
        code = getattr(error, "code", None) or "invalid_value"
        return APIError(" ".join(error.messages), status=400, code=code)
    if isinstance(error, (exceptions.NotFound, Http404)):
        return APIError("Not found.", status=404, code="not_found")
    if isinstance(error, exceptions.APIException):
        return APIError(str(error.detail), status=error.status_code, code=error.default_code)
    return None


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's hook: the envelope for errors we know; None lets anything else become a 500."""
    api_error = _as_api_error(error)
    if api_error is None:
        return None
    headers = dict(api_error.headers)
    if api_error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(api_error.body(), status=api_error.status, headers=headers)
