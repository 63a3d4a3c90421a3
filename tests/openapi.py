"""Validate what the server returns against the official OpenAI spec (a copy in tests/openapi/)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

# The repository carries the spec its tests validate against (tests/openapi/README.md: origin).
SPEC_PATH = Path(__file__).resolve().parent / "openapi" / "openapi-mini.norm.json"
SERVER = "http://127.0.0.1:8000"


@functools.cache
def _spec() -> OpenAPI:
    # The published spec fails its own validator on one default; responses are what we check.
    return OpenAPI.from_file_path(str(SPEC_PATH), config=Config(spec_validator_cls=None))


def validate_response(
    method: str, path: str, status: int, body: Any, request_body: Any | None = None
) -> None:
    """Raise if `body` is not a valid response of `method path` with `status`."""
    data = json.dumps(request_body).encode() if request_body is not None else None
    request = MockRequest(
        SERVER, method.lower(), f"/v1{path}", data=data, content_type="application/json"
    )
    response = MockResponse(
        data=json.dumps(body).encode(), status_code=status, content_type="application/json"
    )
    _spec().validate_response(request, response)


def validate_schema(schema_name: str, instance: Any) -> None:
    """Validate one object (e.g. a streamed chunk) against a named component schema."""
    import jsonschema

    document = json.loads(SPEC_PATH.read_text())
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)
