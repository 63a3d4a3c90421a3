"""Request schemas of the /v1 surface, mirroring OpenAI's spec (a copy in tests/openapi/).

Unknown fields are tolerated (OpenAI adds fields often); a wrong field becomes a 400 whose
`param` names it, with OpenAI's wording. Responses are built as plain dicts by the serving
modules and validated against the official spec in the tests.

Nothing a client sends reaches the engine or the database unchecked: integers are bounded
(OpenAI's int64 range, token ids to what an engine can take), strings are valid Unicode, and
nesting is bounded so that no recursive consumer (json, jsonschema, copy, llguidance) can run
out of stack. Whether a token id is in a model's vocabulary only the provider knows; it checks.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from apps.protocol import errors

MAX_STOP_SEQUENCES = 4
MAX_EMBEDDING_INPUTS = 2048
MAX_TOOLS = 128  # OpenAI's documented limit of functions per request
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Token ids are int32 in llama.cpp (and in every tokenizer we know); a larger id would be
# truncated to some real token on its way into the engine. The vocabulary bound is the provider's.
MAX_TOKEN_ID = 2**31 - 1
# How deep a body may nest (the body object itself is level 1). The deepest field OpenAI defines
# outside JSON Schemas is 6 levels down (messages[i].content[j].image_url.url); the rest is
# headroom for schemas and unknown fields. Python's json module, pydantic and everything after
# them recurse at least once per level against Python's 1000-frame limit; a body nested
# ~1000 deep made json.loads raise RecursionError (a 500). 64 stays far from that limit.
MAX_JSON_DEPTH = 64
# JSON Schemas get a tighter bound: jsonschema's meta-schema check spends up to ~12 Python frames
# per level (measured: items ~8, properties ~5, anyOf ~4 per JSON level), so 32 levels cost at
# most ~400 frames on top of the ~150 the server already stands on. OpenAI allows 10 levels of
# object nesting in strict schemas (21 JSON levels); $defs with $ref express deeper data.
MAX_SCHEMA_DEPTH = 32


class _InvalidField(ValueError):
    """A failed check that knows its own `param`: across fields, or deeper than a field's loc.

    Raised inside validators, pydantic reports it as a value error with an empty location;
    `parse_body` then answers with this message, param and code as they are.
    """

    def __init__(self, message: str, *, param: str | None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Request(_Tolerant):
    """A whole request body: checked for depth and lone surrogates before its fields are."""

    @model_validator(mode="before")
    @classmethod
    def _sound_document(cls, data: Any) -> Any:
        check_document(data)
        return data


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

    @field_validator("arguments")
    @classmethod
    def _shallow_arguments(cls, value: str) -> str:
        # The gateway parses earlier calls' arguments to render and compare them: JSON nested
        # thousands deep in this string would raise RecursionError there. Non-JSON passes as text.
        try:
            depth = _depth(json.loads(value))
        except RecursionError:
            depth = MAX_JSON_DEPTH + 1
        except ValueError:
            return value
        if depth > MAX_JSON_DEPTH:
            limit = MAX_JSON_DEPTH
            raise ValueError(f"the arguments nest objects and arrays more than {limit} levels deep")
        return value


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

    @field_validator("parameters")
    @classmethod
    def _schema_depth(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _shallow_schema(value)


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

    @field_validator("schema_")
    @classmethod
    def _schema_depth(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _shallow_schema(value)


class ResponseFormat(_Tolerant):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


LogitBias = dict[str, float]


Temperature = Annotated[float, Field(ge=0, le=2)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]


class _SamplingRequest(_Request):
    model: str
    temperature: Temperature | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    # Not OpenAI's: Anthropic's Messages API, vLLM and llama.cpp's server take it. Upstream
    # OpenAI-compatible routes get it as sent (OpenAI itself refuses it with a 400).
    top_k: Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)] | None = None
    n: Annotated[int, Field(ge=1, le=8)] = 1
    stop: str | list[str] | None = None
    seed: Int64 | None = None
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
        """The stop sequences; an empty one is dropped (llama.cpp would stop at once on it)."""
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return [stop for stop in stops if stop]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[Tool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: LogitBias | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: LogitBias | None) -> LogitBias | None:
        return _checked_logit_bias(value)

    @model_validator(mode="after")
    def _contents(self) -> ChatCompletionRequest:
        for index, message in enumerate(self.messages):
            _check_content(message, index)
        return self

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def _check_content(message: ChatMessage, index: int) -> None:
    """Every message has content, as OpenAI requires, but an assistant's that made calls."""
    if message.content is not None:
        return
    extra = message.model_extra or {}
    if message.role == "assistant" and (
        message.tool_calls or any(extra.get(name) for name in ("function_call", "refusal"))
    ):
        return
    param = f"messages[{index}].content"
    if "content" not in message.model_fields_set:
        raise _InvalidField(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    expected = (
        "a string or an array of content parts (or 'tool_calls' on the message)"
        if message.role == "assistant"
        else "a string or an array of content parts"
    )
    raise _InvalidField(
        f"Invalid type for '{param}': expected {expected}, but got null instead.",
        param=param,
        code="invalid_type",
    )


Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(_SamplingRequest):
    prompt: Prompt
    max_tokens: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = 16
    echo: bool | None = False
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    logit_bias: LogitBias | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: LogitBias | None) -> LogitBias | None:
        return _checked_logit_bias(value)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_tokens(cls, value: Any) -> Any:
        return _checked_token_arrays(value, param="prompt")

    @model_validator(mode="after")
    def _prompts_present(self) -> CompletionRequest:
        prompt = self.prompt
        if isinstance(prompt, list) and not prompt:
            raise _InvalidField("'prompt' must not be empty.", param="prompt")
        if any(isinstance(item, list) and not item for item in self.prompts):
            raise _InvalidField("Token prompts must not be empty.", param="prompt")
        return self

    @property
    def prompts(self) -> list[str | list[int]]:
        """The prompts, one per choice group: a string, or a token array."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(item, int) for item in prompt):
            return [list(prompt)]  # type: ignore[arg-type]
        return [item for item in prompt if isinstance(item, str | list)]


def _checked_logit_bias(value: LogitBias | None) -> LogitBias | None:
    """Keys are token ids in ASCII digits ("²".isdigit() is true, int("²") fails), values ±100."""
    for key, bias in (value or {}).items():
        digits = key.lstrip("0") or "0"
        if not (key.isascii() and key.isdigit()) or len(digits) > len(str(MAX_TOKEN_ID)):
            raise _InvalidField(
                f"Invalid 'logit_bias': keys must be token ids (integers from 0 to "
                f"{MAX_TOKEN_ID} as strings), but got {_brief(key)}.",
                param="logit_bias",
            )
        if int(digits) > MAX_TOKEN_ID:
            raise _InvalidField(
                f"Invalid 'logit_bias': token id {key} is above the maximum of {MAX_TOKEN_ID}.",
                param="logit_bias",
            )
        if not -100 <= bias <= 100:  # also refuses NaN
            raise _InvalidField(
                f"Invalid 'logit_bias': the bias of token {key} must be from -100 to 100, "
                f"but got {bias!r}.",
                param="logit_bias",
            )
    return value


def _checked_token_arrays(value: Any, *, param: str) -> Any:
    """A token array, or an array of them, holds JSON integers from 0 to MAX_TOKEN_ID.

    Checked before pydantic's union, which would accept `true` and `1.0` as ids and, for a mix
    of strings and ids, report the string branch's complaint about the first id.
    """
    if not isinstance(value, list) or all(isinstance(item, str) for item in value):
        return value  # text: the union checks it
    is_nested = {isinstance(item, list) for item in value}
    if any(isinstance(item, str) for item in value) or len(is_nested) > 1:
        raise _InvalidField(
            f"Invalid '{param}': an array must hold only strings, only token ids or only token "
            "arrays, not a mix of them.",
            param=param,
        )
    arrays = value if True in is_nested else [value]
    for index, array in enumerate(arrays):
        if not _are_token_ids(array):
            prefix = f"{param}[{index}]" if True in is_nested else param
            position, token = next((i, t) for i, t in enumerate(array) if not _are_token_ids([t]))
            raise _InvalidField(
                f"Invalid '{param}': token ids must be integers from 0 to {MAX_TOKEN_ID}, "
                f"but {prefix}[{position}] is {_brief(token)}.",
                param=param,
            )
    return value


def _are_token_ids(array: list[Any]) -> bool:
    # At C speed: token arrays can hold millions of ids. `type` tells a bool from an int.
    if not _INT_TYPE.issuperset(map(type, array)):
        return False
    return not array or (min(array) >= 0 and max(array) <= MAX_TOKEN_ID)


_INT_TYPE = frozenset({int})


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shallow_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is not None and _depth(schema) > MAX_SCHEMA_DEPTH:
        raise ValueError(
            f"the schema nests objects and arrays more than {MAX_SCHEMA_DEPTH} levels deep; "
            "flatten it, or describe recursive data with $defs and $ref"
        )
    return schema


def _depth(value: Any) -> int:
    """How deeply `value` nests dicts and lists (a scalar is 0), without recursing."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class EmbeddingRequest(_Request):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
    user: Annotated[str, Field(max_length=256)] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input_tokens(cls, value: Any) -> Any:
        return _checked_token_arrays(value, param="input")

    @model_validator(mode="after")
    def _inputs_present(self) -> EmbeddingRequest:
        inputs = self.inputs
        if not inputs:
            raise _InvalidField("'input' must not be empty.", param="input")
        if len(inputs) > MAX_EMBEDDING_INPUTS:
            raise _InvalidField(
                f"'input' has {len(inputs)} items; at most {MAX_EMBEDDING_INPUTS} are allowed.",
                param="input",
            )
        for index, item in enumerate(inputs):
            if len(item) == 0:
                raise _InvalidField(
                    f"'input[{index}]' is empty; every input must contain text or tokens.",
                    param="input",
                )
        return self

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs, one vector each: texts, or token arrays."""
        raw = self.input
        if isinstance(raw, str):
            return [raw]
        one_array = bool(raw) and all(isinstance(item, int) for item in raw)
        items: list[Any] = [raw] if one_array else list(raw)
        return items


# --- Whole-document checks: depth and lone surrogates ----------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALAR_TYPES = frozenset({int, float, bool, type(None)})
Path = tuple[int | str, ...]


def check_document(document: Any) -> None:
    """Raise a 400-bound error for nesting beyond MAX_JSON_DEPTH or a lone surrogate anywhere.

    A JSON string may escape half of a surrogate pair ("\\ud800"); Python decodes that to a str
    that cannot be encoded as UTF-8, so it would fail later in the engine or in PostgreSQL.
    Iterative, so a deep document costs no stack; ASCII strings and arrays of numbers (token
    arrays) are passed over at C speed.
    """
    stack: list[tuple[Any, Path]] = [({"": document}, ())]  # a root, so its value is checked
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:  # path[0] is the root's key, path[1] a body field
            field = str(path[1])  # the full path would be MAX_JSON_DEPTH parts long
            raise _InvalidField(
                f"Invalid '{field}': it nests objects and arrays more than {MAX_JSON_DEPTH} "
                "levels deep.",
                param=field,
            )
        items: Any
        if type(value) is dict:
            for key in value:
                if type(key) is str and not key.isascii() and _SURROGATE.search(key):
                    raise _surrogate_error(key, path, is_key=True)
            items = value.items()
        elif _SCALAR_TYPES.issuperset(map(type, value)):
            continue
        else:
            items = enumerate(value)
        for key, item in items:
            kind = type(item)
            if kind is str:
                if not item.isascii() and _SURROGATE.search(item):
                    raise _surrogate_error(item, (*path, key))
            elif kind is dict or kind is list:
                stack.append((item, (*path, key)))


def _surrogate_error(text: str, path: Path, *, is_key: bool = False) -> _InvalidField:
    found = _SURROGATE.search(text)
    assert found is not None
    param = _dotted(path[1:]) or None  # path[0] is the root's
    subject = f"Invalid '{param}'" if param else "Invalid request body"
    what = "a key" if is_key else "the string"
    return _InvalidField(
        f"{subject}: {what} contains a lone UTF-16 surrogate (U+{ord(found.group()):04X}), "
        "which is not valid Unicode. Send text as UTF-8, and characters outside the Basic "
        "Multilingual Plane as a complete surrogate pair.",
        param=param,
    )


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


# --- Parsing and OpenAI-style validation messages -------------------------------------------

Request = TypeVar("Request", bound=BaseModel)
_UNION_MEMBERS = {"str", "int", "float", "bool", "dict", "function-after"}


_FORM_TYPES = ("multipart/",)


def parse_body(raw: bytes, schema: type[Request], *, content_type: str | None = None) -> Request:
    """Decode and validate a JSON body, or raise APIError 400 naming the offending field.

    The body is read as JSON whatever `content_type` (the request's media type) says, as
    llama.cpp's server and most OpenAI-compatible servers do: `curl -d '{...}'` labels a JSON
    body application/x-www-form-urlencoded, and some clients send text/plain or no type at all.
    Refusing those would break working clients for no gain. Only a multipart body, which is never
    JSON, is refused by its type, so that a form upload learns what to send instead of reading
    that its JSON is invalid.
    """
    if content_type and content_type.lower().startswith(_FORM_TYPES):
        raise errors.invalid_value(
            f"Unsupported content type: '{content_type}'. This API method only accepts "
            f"'application/json' requests, but you specified the header 'Content-Type: "
            f"{content_type}'. Please try again with a supported content type.",
            param=None,
            code="unsupported_content_type",
        )
    return request_validate(_decoded(raw), schema)


def request_validate(document: Any, schema: type[Request]) -> Request:
    """A decoded body as `schema`, or APIError 400 naming the offending field."""
    if not isinstance(document, dict):
        raise errors.invalid_value("The request body must be a JSON object.", param=None)
    try:
        return schema.model_validate(document)
    except ValidationError as failure:
        raise _validation_error(failure) from None


def _decoded(raw: bytes) -> Any:
    try:
        # NaN and Infinity are not JSON, though Python's json module would take them.
        return json.loads(raw, parse_constant=_not_json)
    except RecursionError:  # deeper than Python's stack: far beyond MAX_JSON_DEPTH anyway
        raise errors.invalid_value(
            f"The request body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep.",
            param=None,
            code="invalid_value",
        ) from None
    except ValueError:  # UnicodeDecodeError included
        raise errors.invalid_value(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
            "what was sent was not valid JSON.)",
            param=None,
        ) from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")


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


def _validation_error(failure: ValidationError) -> errors.APIError:
    # Of a union's failed branches, the one that got deepest into the value says most.
    first = max(failure.errors(), key=lambda error: len(error["loc"]))
    invalid = (first.get("ctx") or {}).get("error")
    if isinstance(invalid, _InvalidField):
        return errors.invalid_value(invalid.message, param=invalid.param, code=invalid.code)
    param = _param_path(tuple(first["loc"]))
    kind = first["type"]
    if kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        message = f"Invalid '{param}': {first['msg'].lower()}, but got {first.get('input')!r}."
    elif kind in {"too_short", "too_long", "string_too_short", "string_too_long"}:
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
