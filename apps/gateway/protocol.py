"""Request schemas of the /v1 surface, mirroring OpenAI's spec (../shared/openai-spec/).

Unknown fields are tolerated (OpenAI adds fields often); a wrong field becomes a 400 whose
`param` names it, with OpenAI's wording. Responses are built as plain dicts by the serving
modules and validated against the official spec in the tests.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apps.gateway import errors

MAX_STOP_SEQUENCES = 4
MAX_EMBEDDING_INPUTS = 2048


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class StreamOptions(_Tolerant):
    include_usage: bool = False


class ImageURL(_Tolerant):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class ContentPart(_Tolerant):
    type: str
    text: str | None = None
    image_url: ImageURL | None = None


FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class ToolCallFunction(_Tolerant):
    name: str
    arguments: str


class ToolCall(_Tolerant):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Tolerant):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(_Tolerant):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Tolerant):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Tolerant):
    name: str


class NamedToolChoice(_Tolerant):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(_Tolerant):
    name: FunctionName
    description: str | None = None
    # `schema` would shadow BaseModel.schema(); the wire name stays "schema".
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Tolerant):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


LogitBias = dict[str, Annotated[float, Field(ge=-100, le=100)]]


Temperature = Annotated[float, Field(ge=0, le=2)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
PositiveInt = Annotated[int, Field(ge=1)]


class _SamplingRequest(_Tolerant):
    model: str
    temperature: Temperature | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=8)] = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        return value

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: LogitBias | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: LogitBias | None) -> LogitBias | None:
        return _checked_logit_bias(value)

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(_SamplingRequest):
    prompt: Prompt
    max_tokens: Annotated[int, Field(ge=0)] | None = 16
    echo: bool | None = False
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    logit_bias: LogitBias | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: LogitBias | None) -> LogitBias | None:
        return _checked_logit_bias(value)


def _checked_logit_bias(value: LogitBias | None) -> LogitBias | None:
    for key in value or {}:
        if not key.isdigit():
            raise ValueError(f"keys must be token ids (integers as strings), but got {key!r}")
    return value


class EmbeddingRequest(_Tolerant):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
    user: str | None = None


# --- Parsing and OpenAI-style validation messages -------------------------------------------

Request = TypeVar("Request", bound=BaseModel)
_UNION_MEMBERS = {"str", "int", "float", "bool", "dict", "function-after"}


def parse_body(raw: bytes, schema: type[Request]) -> Request:
    """Decode and validate a JSON body, or raise APIError 400 naming the offending field."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid_value(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
            "what was sent was not valid JSON.)",
            param=None,
        ) from None
    if not isinstance(document, dict):
        raise errors.invalid_value("The request body must be a JSON object.", param=None)
    try:
        return schema.model_validate(document)
    except ValidationError as failure:
        raise _validation_error(failure, document) from None


def _param_path(location: tuple[int | str, ...]) -> str:
    # pydantic puts union member names ("str", "list[str]", "NamedToolChoice") in the location;
    # drop them. OpenAI's field names are snake_case, so a capitalised part is a model's name.
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part in _UNION_MEMBERS or part[:1].isupper():
            continue
        else:
            path += f".{part}" if path else part
    return path


def _validation_error(failure: ValidationError, document: dict[str, Any]) -> errors.APIError:
    # Of a union's failed branches, the one that got deepest into the value says most.
    first = max(failure.errors(), key=lambda error: len(error["loc"]))
    param = _param_path(tuple(first["loc"]))
    kind = first["type"]
    if kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        message = f"Invalid '{param}': {first['msg'].lower()}, but got {first.get('input')!r}."
    elif kind in {"too_short", "too_long"}:
        message = f"Invalid '{param}': {first['msg'].lower()}."
    elif kind == "literal_error":
        message = f"Invalid value for '{param}': {first['msg']}."
    elif kind == "value_error":
        message = f"Invalid '{param}': {str(first['msg']).removeprefix('Value error, ')}."
    else:
        message = f"Invalid type for '{param}': {_lower_first(first['msg'])}."
    return errors.invalid_value(message, param=param or None, code=_code_for(kind))


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _code_for(kind: str) -> str | None:
    if kind == "missing":
        return "missing_required_parameter"
    if kind.endswith("_type") or kind in {"model_type", "union_tag_invalid"}:
        return "invalid_type"
    return "invalid_value"
