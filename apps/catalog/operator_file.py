"""Operator-added models, from the JSON file named by PLUGSKY_CATALOG_FILE.

A local model is a GGUF file and its pinned SHA-256 (the engine refuses to load it on mismatch):

    {"models": [{"id": "my-llama", "kind": "chat", "gguf": "/srv/models/my.gguf",
                 "sha256": "<64 hex>", "context_length": 4096, "owned_by": "acme",
                 "input_price_micros_per_mtok": 100000, "output_price_micros_per_mtok": 200000}]}

An upstream model is served by other model servers, its routes in order of preference (an
audio model, kind "transcription" or "speech", on OpenAI-compatible routes, priced by
"input_price_micros_per_audio_second" or "input_price_micros_per_mchar", a speech model with
its "voices"):

    {"models": [{"id": "team-llama", "kind": "chat", "context_length": 8192,
                 "input_price_micros_per_mtok": 150000, "output_price_micros_per_mtok": 600000,
                 "routes": [{"provider": "openai", "base_url": "http://10.0.0.5:8080/v1",
                             "model": "llama-3.1-8b", "api_key_env": "TEAM_LLAMA_KEY"},
                            {"provider": "anthropic", "model": "claude-haiku-4-5",
                             "api_key_env": "ANTHROPIC_API_KEY"}]}]}

A route names "base_url", or "base_urls" (replicas of one server), or neither (the vendor's own
API, or its SDK's *_BASE_URL variable); "api_key_env" names the variable holding its key (none:
a server without auth) and it may have prices of its own. Secrets are never written in the file.

The file is read strictly, since a model that is silently misread is billed wrongly: an unknown
field, a wrong type, a missing field, a secret, a duplicate id or a bad URL stops start-up with
ImproperlyConfigured naming the entry (index and id) and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from apps.catalog.entries import (
    AUDIO_KINDS,
    CAPABILITIES,
    UPSTREAM_PROVIDERS,
    CatalogEntry,
    Kind,
    LocalRoute,
    UpstreamRoute,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Field names an operator might put a key under, to point them at api_key_env instead.
_SECRET_NAME = re.compile(r"(^|_)(api_?key|key|secret|token|password|authorization|bearer)($|_)")

_COMMON_FIELDS = {"id", "kind", "context_length", "description", "owned_by", "capabilities",
                  "input_price_micros_per_mtok", "output_price_micros_per_mtok"}  # fmt: skip
_LOCAL_FIELDS = _COMMON_FIELDS | {"gguf", "sha256", "parallel_slots"}
_AUDIO_PRICE_FIELDS = {"input_price_micros_per_audio_second", "input_price_micros_per_mchar"}
_UPSTREAM_FIELDS = _COMMON_FIELDS | _AUDIO_PRICE_FIELDS | {
    "routes", "dimensions", "max_output_tokens", "voices"}  # fmt: skip
_ROUTE_FIELDS = {"provider", "model", "base_url", "base_urls", "api_key_env",
                 "input_price_micros_per_mtok", "output_price_micros_per_mtok",
                 *_AUDIO_PRICE_FIELDS}  # fmt: skip

_DEFAULT_CAPABILITIES = {
    Kind.CHAT: ["chat", "streaming"],
    Kind.COMPLETION: ["completions", "streaming"],
    Kind.EMBEDDING: ["embeddings"],
    Kind.TRANSCRIPTION: ["transcription"],
    Kind.SPEECH: ["speech"],
}
_NOT_AUDIO_FIELDS = {"input_price_micros_per_mtok", "output_price_micros_per_mtok", "dimensions",
                     "max_output_tokens"}  # fmt: skip
# What an audio model's price is per, by kind: the field that must be given.
_AUDIO_PRICE = {
    Kind.TRANSCRIPTION: "input_price_micros_per_audio_second",
    Kind.SPEECH: "input_price_micros_per_mchar",
}


def load_operator_entries(path: str) -> tuple[CatalogEntry, ...]:
    if not path:
        return ()
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ImproperlyConfigured(f"PLUGSKY_CATALOG_FILE {path}: {error}") from error
    top = _Fields(document, where=f"PLUGSKY_CATALOG_FILE {path}", name="the file")
    top.only({"models"})
    entries = tuple(
        _entry(item, where=f"PLUGSKY_CATALOG_FILE {path}: models[{index}]")
        for index, item in enumerate(top.objects("models"))
    )
    _unique_check(entries, path=path)
    return entries


def _entry(item: Any, *, where: str) -> CatalogEntry:
    fields = _Fields(item, where=where, name="a model")
    model_id = fields.text("id")
    fields = _Fields(item, where=f"{where} ({model_id})", name="a model")
    if ("gguf" in item) == ("routes" in item):
        fields.fail("gguf", 'a model has either "gguf" (a local file) or "routes" (upstream)')
    return _local_entry(fields, model_id) if "gguf" in item else _upstream_entry(fields, model_id)


def _local_entry(fields: _Fields, model_id: str) -> CatalogEntry:
    fields.only(_LOCAL_FIELDS)
    sha256 = fields.text("sha256").lower()
    if not _SHA256.match(sha256):
        fields.fail("sha256", "must be the file's SHA-256, 64 hexadecimal digits")
    parallel_slots = fields.integer("parallel_slots", default=4, minimum=1)
    route = LocalRoute(
        runtime="llama", weights=fields.text("gguf"), sha256=sha256, parallel_slots=parallel_slots
    )
    kind = _kind(fields, default=Kind.CHAT)
    if kind in AUDIO_KINDS:
        fields.fail("kind", "a GGUF file is a text model; audio models are served by routes")
    return CatalogEntry(
        id=model_id,
        kind=kind,
        routes=(route,),
        context_length=fields.integer("context_length", default=4096, minimum=1),
        description=fields.text("description", default="Operator-supplied GGUF model."),
        owned_by=fields.text("owned_by", default="operator"),
        capabilities=_capabilities(fields, default=["chat", "completions", "streaming"]),
        input_price_micros_per_mtok=fields.integer("input_price_micros_per_mtok", default=0),
        output_price_micros_per_mtok=fields.integer("output_price_micros_per_mtok", default=0),
    )


def _upstream_entry(fields: _Fields, model_id: str) -> CatalogEntry:
    fields.only(_UPSTREAM_FIELDS)
    kind = _kind(fields, default=None)
    routes = tuple(
        _route(_Fields(item, where=fields.where, name="a route", prefix=f"routes[{index}]."), kind)
        for index, item in enumerate(fields.objects("routes"))
    )
    if not routes:
        fields.fail("routes", "must name at least one route")
    if kind in AUDIO_KINDS:
        return _upstream_audio_entry(fields, model_id, kind, routes)
    for name in sorted(_AUDIO_PRICE_FIELDS | {"voices"}):
        if name in fields.data:
            fields.fail(name, f"only audio models have {name}")
    # Prices are required: a paid upstream billed at a forgotten default of 0 is given away.
    return CatalogEntry(
        id=model_id,
        kind=kind,
        routes=routes,
        context_length=fields.integer("context_length", minimum=1),
        description=fields.text("description", default=f"{routes[0].model} upstream."),
        owned_by=fields.text("owned_by", default="operator"),
        capabilities=_capabilities(fields, default=_DEFAULT_CAPABILITIES[kind]),
        dimensions=_embedding_dimensions(fields, kind),
        max_output_tokens=fields.optional_integer("max_output_tokens", minimum=1),
        input_price_micros_per_mtok=fields.integer("input_price_micros_per_mtok"),
        output_price_micros_per_mtok=fields.integer(
            "output_price_micros_per_mtok", default=0 if kind == Kind.EMBEDDING else None
        ),
    )


def _upstream_audio_entry(
    fields: _Fields, model_id: str, kind: Kind, routes: tuple[UpstreamRoute, ...]
) -> CatalogEntry:
    """A transcription or speech model on OpenAI-compatible routes, priced per second of audio
    or per million characters (required, as every upstream price is)."""
    price = _AUDIO_PRICE[kind]
    for name in sorted(_NOT_AUDIO_FIELDS | (_AUDIO_PRICE_FIELDS - {price})):
        if name in fields.data:
            fields.fail(name, f"a {kind.value} model is priced by {price}")
    voices = tuple(fields.texts("voices")) if kind == Kind.SPEECH else ()
    if kind != Kind.SPEECH and "voices" in fields.data:
        fields.fail("voices", "only speech models have voices")
    if kind == Kind.SPEECH and not voices:
        fields.fail("voices", "a speech model names at least one voice")
    return CatalogEntry(
        id=model_id,
        kind=kind,
        routes=routes,
        # Seconds of audio, or characters of input (OpenAI's limits).
        context_length=fields.integer(
            "context_length", default=3600 if kind == Kind.TRANSCRIPTION else 4096, minimum=1
        ),
        description=fields.text("description", default=f"{routes[0].model} upstream."),
        owned_by=fields.text("owned_by", default="operator"),
        capabilities=_capabilities(fields, default=_DEFAULT_CAPABILITIES[kind]),
        voices=voices,
        input_price_micros_per_audio_second=(
            fields.integer(price) if kind == Kind.TRANSCRIPTION else 0
        ),
        input_price_micros_per_mchar=fields.integer(price) if kind == Kind.SPEECH else 0,
    )


def _route(fields: _Fields, kind: Kind) -> UpstreamRoute:
    fields.only(_ROUTE_FIELDS)
    provider = fields.text("provider")
    if provider not in UPSTREAM_PROVIDERS:
        fields.fail(
            "provider", f"unknown provider {provider!r} (expected {_listed(UPSTREAM_PROVIDERS)})"
        )
    if provider == "anthropic" and kind == Kind.EMBEDDING:
        fields.fail("provider", "Anthropic's API serves no embedding models")
    if provider != "openai" and kind in AUDIO_KINDS:
        fields.fail("provider", "audio models are served by OpenAI-compatible routes only")
    for name in sorted(_AUDIO_PRICE_FIELDS):
        if name in fields.data and kind not in AUDIO_KINDS:
            fields.fail(name, f"only audio models have {name}")
    api_key_env = fields.text("api_key_env", default="")
    if "api_key_env" in fields.data and not _ENV_NAME.match(api_key_env):
        fields.fail("api_key_env", "must be the name of an environment variable, not a key")
    return UpstreamRoute(
        provider=provider,
        model=fields.text("model"),
        base_urls=_base_urls(fields),
        api_key_env=api_key_env,
        input_price_micros_per_mtok=fields.optional_integer("input_price_micros_per_mtok"),
        output_price_micros_per_mtok=fields.optional_integer("output_price_micros_per_mtok"),
        input_price_micros_per_audio_second=fields.optional_integer(
            "input_price_micros_per_audio_second"
        ),
        input_price_micros_per_mchar=fields.optional_integer("input_price_micros_per_mchar"),
    )


def _base_urls(fields: _Fields) -> tuple[str, ...]:
    if "base_url" in fields.data and "base_urls" in fields.data:
        fields.fail("base_urls", 'give "base_url" or "base_urls", not both')
    if "base_url" in fields.data:
        return (_url(fields, "base_url", fields.text("base_url")),)
    if "base_urls" not in fields.data:
        return ()
    urls = tuple(_url(fields, "base_urls", url) for url in fields.texts("base_urls"))
    if not urls or len(set(urls)) != len(urls):
        fields.fail("base_urls", "must list one or more distinct URLs")
    return urls


def _url(fields: _Fields, name: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsed only to refuse a malformed port
    except ValueError as error:
        fields.fail(name, f"{url!r} is not a URL ({error})")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        fields.fail(name, f"{url!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        fields.fail(name, "credentials in a URL are secrets: name them with api_key_env")
    if parts.query or parts.fragment:
        fields.fail(name, f"{url!r}: a base URL has no query or fragment")
    return url.rstrip("/")


# The kinds an operator can add (audio models on upstream routes only: the engine's audio
# runtimes serve the built-in weights).
_OPERATOR_KINDS = {kind.value for kind in Kind}


def _kind(fields: _Fields, *, default: Kind | None) -> Kind:
    value = fields.text("kind", default=default.value if default else None)
    if value not in _OPERATOR_KINDS:
        fields.fail("kind", f"unknown kind {value!r} (expected {_listed(_OPERATOR_KINDS)})")
    return Kind(value)


def _capabilities(fields: _Fields, *, default: list[str]) -> frozenset[str]:
    words = fields.texts("capabilities", default=default)
    unknown = sorted(set(words) - CAPABILITIES)
    if unknown:
        fields.fail("capabilities", f"unknown {unknown} (known: {_listed(CAPABILITIES)})")
    return frozenset(words)


def _embedding_dimensions(fields: _Fields, kind: Kind) -> int | None:
    if kind != Kind.EMBEDDING and "dimensions" in fields.data:
        fields.fail("dimensions", "only embedding models have dimensions")
    return fields.optional_integer("dimensions", minimum=1)


def _unique_check(entries: tuple[CatalogEntry, ...], *, path: str) -> None:
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry.id in first_index:
            raise ImproperlyConfigured(
                f"PLUGSKY_CATALOG_FILE {path}: models[{index}] ({entry.id}): id: "
                f"duplicate of models[{first_index[entry.id]}]"
            )
        first_index[entry.id] = index


def _listed(words: set[str] | frozenset[str]) -> str:
    ordered = sorted(words)
    return ", ".join(ordered[:-1]) + f" or {ordered[-1]}" if len(ordered) > 1 else ordered[0]


class _Fields:
    """One JSON object of the file, read field by field; an error names where it is."""

    def __init__(self, data: Any, *, where: str, name: str, prefix: str = "") -> None:
        self.where = where  # the file, and the entry by index and id
        self.prefix = prefix  # the path of the object inside the entry, e.g. "routes[1]."
        if not isinstance(data, dict):
            inside = f"{prefix.rstrip('.')}: " if prefix else ""
            raise ImproperlyConfigured(f"{where}: {inside}{name} must be a JSON object")
        self.data: dict[str, Any] = data

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ImproperlyConfigured(f"{self.where}: {self.prefix}{field}: {problem}")

    def only(self, allowed: set[str]) -> None:
        for name in sorted(set(self.data) - allowed):
            if _SECRET_NAME.search(name):
                self.fail(name, "secrets are never written in the catalog file: name the "
                          "environment variable that holds the key with api_key_env")  # fmt: skip
            self.fail(name, f"unknown field (expected {_listed(allowed)})")

    def _value(self, name: str, default: Any) -> Any:
        if name in self.data:
            return self.data[name]
        if default is None:
            self.fail(name, "required")
        return default

    def text(self, name: str, *, default: str | None = None) -> str:
        value = self._value(name, default)
        if not isinstance(value, str) or (name in self.data and not value.strip()):
            self.fail(name, "must be a non-empty string")
        return value.strip()

    def texts(self, name: str, *, default: list[str] | None = None) -> list[str]:
        value = self._value(name, default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(name, "must be a list of non-empty strings")
        return value

    def integer(self, name: str, *, default: int | None = None, minimum: int = 0) -> int:
        value = self._value(name, default)
        # bool is an int in Python, never in this file.
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(name, f"must be an integer of at least {minimum}")
        return value

    def optional_integer(self, name: str, *, minimum: int = 0) -> int | None:
        return self.integer(name, minimum=minimum) if name in self.data else None

    def objects(self, name: str) -> list[Any]:
        value = self._value(name, None)
        if not isinstance(value, list):
            self.fail(name, "must be a list")
        return value
