"""The OpenAPI document of the admin API (drf-spectacular): settings, and the admin-key scheme."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

SETTINGS: dict[str, Any] = {
    "TITLE": "Plugsky organization admin API",
    "DESCRIPTION": (
        "Keys, members, usage and costs of one organization, shaped like OpenAI's "
        "Administration API. Authenticate with an admin key: `Authorization: Bearer sk-admin-…`."
    ),
    "VERSION": "1",
    # 3.1, as OpenAI's own document: a nullable object is `oneOf: [$ref, null]`, which 3.0's
    # `nullable` beside an `allOf` cannot say (validators reject null for such fields).
    "OAS_VERSION": "3.1.0",
    # Request and response bodies differ (`value` only once, defaults on input): split them.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    # Enums stay inline, as in OpenAI's document (one-value enums name an object's type).
    "POSTPROCESSING_HOOKS": [],
}


class AdminKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.admin_api.authentication.AdminKeyAuthentication"
    name = "AdminKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An sk-admin-… key."}
