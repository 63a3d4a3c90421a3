"""Anthropic's Messages API: request schemas and its error envelope.

The requests mirror Anthropic's reference for `POST /v1/messages` and
`POST /v1/messages/count_tokens`. As with OpenAI's schemas, unknown fields are tolerated
(`cache_control`, `citations`, new parameters) and bodies are checked for depth and lone
surrogates before their fields are (apps.protocol.openai.check_document).

Errors are `{"type": "error", "error": {"type", "message"}, "request_id"}`, the type named by the
status as Anthropic's reference lists them; an overloaded service is Anthropic's 529, not 503.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.http import JsonResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from apps.protocol.errors import APIError
from apps.protocol.openai import check_document

__all__ = [
    "Base64ImageSource",
    "ContentBlock",
    "CountTokensRequest",
    "ImageBlock",
    "MessageParam",
    "MessagesRequest",
    "TextBlock",
    "ThinkingBlock",
    "ToolChoice",
    "ToolResultBlock",
    "ToolUseBlock",
    "URLImageSource",
    "error_body",
    "error_response",
    "error_type_for",
]

OVERLOADED_STATUS = 529

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    OVERLOADED_STATUS: "overloaded_error",
}


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextBlock(_Tolerant):
    type: Literal["text"]
    text: str


class Base64ImageSource(_Tolerant):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLImageSource(_Tolerant):
    type: Literal["url"]
    url: str


class ImageBlock(_Tolerant):
    type: Literal["image"]
    source: Annotated[Base64ImageSource | URLImageSource, Field(discriminator="type")]


class ToolUseBlock(_Tolerant):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Tolerant):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] = ""
    is_error: bool = False


class ThinkingBlock(_Tolerant):
    """An earlier turn's reasoning, sent back by clients that keep it; not shown to the model."""

    type: Literal["thinking", "redacted_thinking"]


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class MessageParam(_Tolerant):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(_Tolerant):
    # Server tools (web search, bash, …) have a versioned `type` and no schema: refused here.
    type: Literal["custom"] | None = None
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(_Tolerant):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs the tool's name")
        return self


class Metadata(_Tolerant):
    user_id: Annotated[str, Field(max_length=256)] | None = None


class _Conversation(_Tolerant):
    """What both endpoints take: the model, the conversation, and the tools it may call."""

    model: str
    messages: Annotated[list[MessageParam], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None

    @model_validator(mode="before")
    @classmethod
    def _sound_document(cls, data: Any) -> Any:
        check_document(data)
        return data


class MessagesRequest(_Conversation):
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: Metadata | None = None
    stream: bool = False


class CountTokensRequest(_Conversation):
    pass


# --- Errors ---------------------------------------------------------------------------------


def error_type_for(status: int) -> str:
    """Anthropic's error type for a status; other 4xx are invalid requests, other 5xx api_error."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(error: APIError, *, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type_for(error.status), "message": error.message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_response(error: APIError, *, request_id: str | None) -> JsonResponse:
    """The error as Anthropic answers it; a 503 (retry shortly) becomes its 529 overloaded."""
    status = OVERLOADED_STATUS if error.status == 503 else error.status
    response = JsonResponse(error_body(error, request_id=request_id), status=status)
    for name, value in error.headers.items():
        response[name] = value
    return response
