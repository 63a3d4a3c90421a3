"""OpenAI's error envelope: `{"error": {"message", "type", "param", "code"}}` with its status."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class APIError(Exception):
    """An error a client sees. Raise it anywhere under a /v1 view."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def invalid_api_key(message: str) -> APIError:
    return APIError(message, status=401, code="invalid_api_key")


def model_not_found(model: str) -> APIError:
    return APIError(
        f"The model `{model}` does not exist or you do not have access to it.",
        status=404,
        code="model_not_found",
        param="model",
    )


def invalid_value(message: str, *, param: str | None, code: str | None = None) -> APIError:
    return APIError(message, status=400, param=param, code=code)


def unknown_url(method: str, path: str) -> APIError:
    return APIError(f"Invalid URL ({method} {path})", status=404, code="unknown_url", param=None)


def method_not_allowed(method: str, path: str, allowed: list[str]) -> APIError:
    return APIError(
        f"Method {method} is not allowed for {path}. Allowed: {', '.join(allowed)}.",
        status=405,
        code="method_not_allowed",
        headers={"Allow": ", ".join(allowed)},
    )


def request_too_large(limit_bytes: int) -> APIError:
    return APIError(
        f"The request body is larger than the limit of {limit_bytes} bytes.",
        status=413,
        code="request_too_large",
    )


def internal_error() -> APIError:
    return APIError(
        "The server had an error while processing your request. Sorry about that!",
        status=500,
        type="server_error",
        code="internal_error",
    )


def service_unavailable(message: str, *, retry_after_s: int) -> APIError:
    """A 503 the caller should retry (the OpenAI SDKs do, honouring Retry-After)."""
    return APIError(
        message,
        status=503,
        type="server_error",
        code="service_unavailable",
        headers={"Retry-After": str(retry_after_s)},
    )


def rate_limit_exceeded(message: str, *, type: str, headers: dict[str, str]) -> APIError:
    """OpenAI's 429 for a rate limit: `type` names the limit (requests, tokens)."""
    return APIError(message, status=429, type=type, code="rate_limit_exceeded", headers=headers)
