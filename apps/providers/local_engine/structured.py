"""Constrained decoding on the local engine: JSON Schemas and choices compiled to one grammar.

llama.cpp here runs llguidance, whose Lark dialect can inline a JSON Schema (`%json {...}`) next
to ordinary rules. That lets one grammar say "plain text, or a call of one of these tools", or
"exactly this schema", and the engine then cannot produce anything else.

llama.cpp silently drops a grammar it fails to compile and generates unconstrained text, so every
grammar is compiled here first (with the llguidance Python package) and a bad schema becomes a
400 before the model runs.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema
from llguidance import LLMatcher

from apps.protocol import errors
from apps.protocol.openai import ResponseFormat

# Compact JSON: small models given free whitespace can pad an object with newlines until
# max_tokens and never close it.
_COMPACT = {"whitespace_flexible": False}
# Plain text that cannot be mistaken for JSON: it does not open with "{" or whitespace.
TEXT_RULE = "TEXT: /[^{\\s](.|\\n)*/"
# Stricter, for a model that has just tried to repeat a call: no code fence either, and no
# call-shaped JSON anywhere in the text.
PROSE_RULE = 'TEXT: /[^{\\s`](?s:.*)/ & ~/(?s:.*)"(name|arguments)"(?s:.*)/'
_ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}
# Keywords whose values are one subschema, a list of them, or a name -> subschema map.
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties")  # fmt: skip
_MANY = ("anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


@dataclass(frozen=True)
class JsonAnswer:
    """The JSON a response must be: a schema, compiled strictly or leniently."""

    schema: dict[str, Any]
    is_strict: bool

    def rule(self, name: str) -> str:
        return f"{name}: %json {json.dumps(guided(self.schema, lenient=not self.is_strict))}"


def json_answer(response_format: ResponseFormat | None) -> JsonAnswer | None:
    """The JSON the request asks for in `response_format`, or None for plain text.

    A strict schema is enforced exactly or refused with a 400; a non-strict one is compiled
    leniently (keywords llguidance cannot enforce are ignored), as OpenAI treats it as a hint.
    """
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return JsonAnswer(schema=_ANY_JSON_OBJECT, is_strict=True)
    spec = response_format.json_schema
    if spec is None:
        raise errors.invalid_value(
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
            code="missing_required_parameter",
        )
    schema = spec.schema_ if spec.schema_ is not None else {}
    param = "response_format.json_schema.schema"
    checked_schema(schema, param=param)
    answer = JsonAnswer(schema=closed(schema), is_strict=bool(spec.strict))
    ensure_compiles(lark("start: answer", answer.rule("answer")), param=param)
    return answer


def checked_schema(schema: dict[str, Any], *, param: str) -> None:
    """400 unless `schema` is a valid JSON Schema (checked against the 2020-12 meta-schema)."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as failure:
        location = "/".join(str(part) for part in failure.path)
        where = f" at '{location}'" if location else ""
        raise errors.invalid_value(
            f"Invalid schema for '{param}'{where}: {failure.message}", param=param
        ) from None


def ensure_compiles(grammar: str, *, param: str) -> str:
    """`grammar`, or a 400 naming `param` if the engine could not enforce it."""
    message = LLMatcher.validate_grammar(grammar)
    if message:
        problem = _first_paragraph(message)
        raise errors.invalid_value(
            f"Invalid schema for '{param}': it cannot be enforced: {problem}", param=param
        )
    return grammar


def _first_paragraph(message: str) -> str:
    """llguidance's explanation, without the grammar listing it appends."""
    lines: list[str] = []
    for line in message.strip().splitlines():
        if re.match(r"\s+\d+ \|", line) or (lines and not line.strip()):
            break
        lines.append(line.strip())
    text = " ".join(line for line in lines if line and set(line) != {"^"})
    return re.sub(r"^at \d+\(\d+\): ", "", text)


def lark(*rules: str) -> str:
    """A llguidance grammar from Lark rules, the first being `start`."""
    return "%llguidance {}\n" + "\n".join(rules) + "\n"


def guided(schema: dict[str, Any], *, lenient: bool) -> dict[str, Any]:
    """`schema` with llguidance's options: compact JSON, and lenient if asked."""
    options = {**_COMPACT, "lenient": True} if lenient else dict(_COMPACT)
    return {**schema, "x-guidance": options}


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy in which objects with declared properties allow no others.

    Everything that matches the result matches `schema` too: it only stops a small model from
    inventing keys. Schemas under `allOf` stay open, since closing the parts of an intersection
    would make it unsatisfiable.
    """
    copied = copy.deepcopy(schema)
    _close(copied)
    return copied


def _close(schema: Any) -> None:
    if not isinstance(schema, dict) or "allOf" in schema:
        return
    if "properties" in schema and not {
        "additionalProperties", "patternProperties", "unevaluatedProperties"
    } & schema.keys():  # fmt: skip
        schema["additionalProperties"] = False
    for key in _ONE:
        _close(schema.get(key))
    for key in _MANY:
        for item in schema.get(key) or []:
            _close(item)
    for key in _MAP:
        for item in (schema.get(key) or {}).values():
            _close(item)
