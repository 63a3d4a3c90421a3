"""Request schemas of the Responses API (`POST /v1/responses`), mirroring OpenAI's spec.

The same rules as apps.protocol.openai: unknown fields are tolerated, a wrong field is a 400
whose `param` names it (parse_body's messages), whole documents are checked for depth and lone
surrogates. Only function tools exist here: every model behind Plugsky serves the request
through the chat core, which has no hosted tools (web search, file search, ...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from apps.protocol.openai import (
    INT64_MAX,
    MAX_TOOLS,
    FunctionName,
    _InvalidField,
    _Request,
    _shallow_schema,
    _Tolerant,
)

# OpenAI's floor for max_output_tokens (a smaller budget could not hold a reasoning model's answer).
MIN_OUTPUT_TOKENS = 16
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_LENGTH = 64
MAX_METADATA_VALUE_LENGTH = 512


class ContentPart(_Tolerant):
    """A part of a message: text or an image going in, or a replayed assistant's text."""

    type: Literal["input_text", "input_image", "output_text", "refusal"]
    text: str | None = None
    image_url: str | None = None
    detail: Literal["auto", "low", "high", "original"] = "auto"
    refusal: str | None = None


class InputItem(_Tolerant):
    """One item of `input`: a message (its `type` may be left out), a call, or a call's output.

    One tolerant model rather than a tagged union, so that a validation error names the field
    as `input[i].field` (a union's member names would show up in the path).
    """

    type: Literal["message", "function_call", "function_call_output"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[ContentPart] | None = None
    call_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ContentPart] | None = None


# Fields each item type must carry, as OpenAI's InputItem schemas require them.
_REQUIRED_FIELDS = {
    "message": ("role", "content"),
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id", "output"),
}


class FunctionTool(_Tolerant):
    # Chat's FunctionDefinition, flat, with its type first: a wrong type is the error reported.
    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _schema_depth(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _shallow_schema(value)


class FunctionChoice(_Tolerant):
    type: Literal["function"]
    name: str


class TextFormat(_Tolerant):
    type: Literal["text", "json_object", "json_schema"]
    name: FunctionName | None = None
    description: str | None = None
    # `schema` would shadow BaseModel.schema(); the wire name stays "schema".
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _schema_depth(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _shallow_schema(value)

    @model_validator(mode="after")
    def _schema_given(self) -> TextFormat:
        if self.type != "json_schema":
            return self
        for field in ("name", "schema_"):
            if getattr(self, field) is None:
                wire = field.rstrip("_")
                raise _InvalidField(
                    f"Missing required parameter: 'text.format.{wire}'.",
                    param=f"text.format.{wire}",
                    code="missing_required_parameter",
                )
        return self


class TextParam(_Tolerant):
    format: TextFormat | None = None


class ResponsesRequest(_Request):
    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    max_output_tokens: Annotated[int, Field(ge=MIN_OUTPUT_TOKENS, le=INT64_MAX)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    store: bool | None = True
    previous_response_id: str | None = None
    stream: bool | None = False

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _checked_metadata(value)

    @model_validator(mode="after")
    def _items_complete(self) -> ResponsesRequest:
        if isinstance(self.input, list):
            for index, item in enumerate(self.input):
                _check_item(item, index)
        return self

    @property
    def is_stored(self) -> bool:
        return self.store is not False


def _check_item(item: InputItem, index: int) -> None:
    for field in _REQUIRED_FIELDS[item.type]:
        if getattr(item, field) is None:
            raise _InvalidField(
                f"Missing required parameter: 'input[{index}].{field}'.",
                param=f"input[{index}].{field}",
                code="missing_required_parameter",
            )
    for part_index, part in enumerate(item.content if isinstance(item.content, list) else []):
        param = f"input[{index}].content[{part_index}]"
        if part.type == "input_image" and part.image_url is None:
            raise _InvalidField(
                f"Invalid '{param}': an input_image needs an 'image_url' (a URL or a data URL); "
                "uploaded files ('file_id') are not supported.",
                param=f"{param}.image_url",
            )
        if part.type in {"input_text", "output_text"} and part.text is None:
            raise _InvalidField(
                f"Missing required parameter: '{param}.text'.",
                param=f"{param}.text",
                code="missing_required_parameter",
            )


def _checked_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return None
    if len(value) > MAX_METADATA_PAIRS:
        raise _InvalidField(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{MAX_METADATA_PAIRS} properties, but got an object with {len(value)} properties.",
            param="metadata",
        )
    for key, text in value.items():
        if len(key) > MAX_METADATA_KEY_LENGTH or len(text) > MAX_METADATA_VALUE_LENGTH:
            raise _InvalidField(
                f"Invalid 'metadata': keys may have at most {MAX_METADATA_KEY_LENGTH} characters "
                f"and values at most {MAX_METADATA_VALUE_LENGTH}; '{key[:64]}' is longer.",
                param="metadata",
            )
    return value
