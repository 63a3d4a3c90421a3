"""The operator's catalog file: upstream models beside local GGUF ones, read strictly."""

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.catalog import selectors
from apps.catalog.entries import CatalogEntry, Kind, LocalRoute, UpstreamRoute
from apps.catalog.operator_file import load_operator_entries
from apps.catalog.upstream_models import UPSTREAM_MODELS, VENDOR_DEFAULTS
from apps.providers import registry
from tests.live import REPO_ROOT

# The form issue 11 gives, verbatim.
TEAM_LLAMA = {"id": "team-llama", "kind": "chat", "context_length": 8192,
              "input_price_micros_per_mtok": 150000, "output_price_micros_per_mtok": 600000,
              "routes": [{"provider": "openai", "base_url": "http://10.0.0.5:8080/v1",
                          "model": "llama-3.1-8b", "api_key_env": "TEAM_LLAMA_KEY"},
                         {"provider": "anthropic", "model": "claude-haiku-4-5",
                          "api_key_env": "ANTHROPIC_API_KEY"}]}  # fmt: skip
SHA256 = "ab" * 32
ENV_NAMES = {route.api_key_env for entry in UPSTREAM_MODELS for route in entry.upstream_routes} | {
    vendor.base_url_env for vendor in VENDOR_DEFAULTS.values()
}


@pytest.fixture(autouse=True)
def vendor_env(monkeypatch):
    """No vendor variable from the machine leaks in; the catalog is reloaded after each test."""
    for name in (*ENV_NAMES, "TEAM_LLAMA_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    selectors.clear_cache()


@pytest.fixture
def catalog_file(tmp_path):
    """Write a catalog document; return its path."""

    def write(document) -> str:
        path = tmp_path / "catalog.json"
        path.write_text(json.dumps(document))
        return str(path)

    return write


def _models(*models):
    return {"models": list(models)}


def _with(model, **changes):
    return {**model, **changes}


def _with_route(index, **changes):
    routes = [dict(route) for route in TEAM_LLAMA["routes"]]
    routes[index].update(changes)
    return _with(TEAM_LLAMA, routes=routes)


def _without(model, name):
    return {key: value for key, value in model.items() if key != name}


def _refusal(path: str) -> str:
    with pytest.raises(ImproperlyConfigured) as refusal:
        load_operator_entries(path)
    return str(refusal.value)


def _listed_ids(path: str) -> list[str]:
    with override_settings(PLUGSKY_CATALOG_FILE=path):
        selectors.clear_cache()
        return [entry.id for entry in selectors.catalog_models()]


def test_the_issues_upstream_form_loads(catalog_file):
    (entry,) = load_operator_entries(catalog_file(_models(TEAM_LLAMA)))
    assert entry == CatalogEntry(
        id="team-llama",
        kind=Kind.CHAT,
        routes=(
            UpstreamRoute(
                provider="openai",
                model="llama-3.1-8b",
                base_urls=("http://10.0.0.5:8080/v1",),
                api_key_env="TEAM_LLAMA_KEY",
            ),
            UpstreamRoute(
                provider="anthropic", model="claude-haiku-4-5", api_key_env="ANTHROPIC_API_KEY"
            ),
        ),
        context_length=8192,
        description="llama-3.1-8b upstream.",
        owned_by="operator",
        capabilities=frozenset({"chat", "streaming"}),
        input_price_micros_per_mtok=150_000,
        output_price_micros_per_mtok=600_000,
    )


def test_an_operator_upstream_model_is_listed_while_one_of_its_routes_is_configured(
    vendor_env, catalog_file
):
    path = catalog_file(_models(TEAM_LLAMA))
    assert "team-llama" not in _listed_ids(path)
    vendor_env.setenv("ANTHROPIC_API_KEY", "sk-ant-test")  # the fallback route alone
    assert "team-llama" in _listed_ids(path)
    vendor_env.delenv("ANTHROPIC_API_KEY")
    vendor_env.setenv("TEAM_LLAMA_KEY", "team-secret")
    assert "team-llama" in _listed_ids(path)
    assert selectors.catalog_model("team-llama") is not None


class _Recorded:
    """Stands for a provider class: remembers what the registry built it with."""

    def __init__(self, entry, route, *, base_url, api_key):
        self.built = (route.provider, route.model, base_url, api_key)


async def test_an_operator_chain_is_built_in_route_order(vendor_env, catalog_file):
    vendor_env.setenv("TEAM_LLAMA_KEY", "team-secret")
    vendor_env.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    for provider in ("openai", "anthropic"):
        vendor_env.setitem(registry.PROVIDER_CLASSES, provider, _Recorded)
    (entry,) = load_operator_entries(catalog_file(_models(TEAM_LLAMA)))
    chain = await registry.route_providers(entry)
    assert [provider.built for provider in chain] == [
        ("openai", "llama-3.1-8b", "http://10.0.0.5:8080/v1", "team-secret"),
        ("anthropic", "claude-haiku-4-5", "https://api.anthropic.com", "sk-ant-test"),
    ]


def test_a_server_without_auth_is_always_listed(catalog_file):
    model = _with(TEAM_LLAMA, routes=[{"provider": "openai", "base_url": "http://10.0.0.5/v1/",
                                       "model": "llama-3.1-8b"}])  # fmt: skip
    path = catalog_file(_models(model))
    (entry,) = load_operator_entries(path)
    assert entry.routes == (
        UpstreamRoute(provider="openai", model="llama-3.1-8b", base_urls=("http://10.0.0.5/v1",)),
    )
    assert "team-llama" in _listed_ids(path)


def test_replicas_route_prices_and_the_other_fields(catalog_file):
    model = {
        "id": "team-embed",
        "kind": "embedding",
        "context_length": 512,
        "dimensions": 768,
        "description": "Our embedder.",
        "owned_by": "acme",
        "capabilities": ["embeddings", "token_input"],
        "input_price_micros_per_mtok": 10_000,
        "routes": [
            {"provider": "openai", "model": "e5", "base_urls": ["http://10.0.0.5:8080/v1",
                                                               "http://10.0.0.6:8080/v1"]},
            {"provider": "gemini", "model": "gemini-embedding-001", "api_key_env": "GEMINI_API_KEY",
             "input_price_micros_per_mtok": 150_000},
        ],
    }  # fmt: skip
    (entry,) = load_operator_entries(catalog_file(_models(model)))
    assert (entry.kind, entry.dimensions, entry.owned_by, entry.description) == (
        Kind.EMBEDDING, 768, "acme", "Our embedder."
    )  # fmt: skip
    assert entry.capabilities == {"embeddings", "token_input"}
    assert (entry.input_price_micros_per_mtok, entry.output_price_micros_per_mtok) == (10_000, 0)
    assert entry.routes == (
        UpstreamRoute(provider="openai", model="e5",
                      base_urls=("http://10.0.0.5:8080/v1", "http://10.0.0.6:8080/v1")),
        UpstreamRoute(provider="gemini", model="gemini-embedding-001",
                      api_key_env="GEMINI_API_KEY", input_price_micros_per_mtok=150_000),
    )  # fmt: skip


def test_a_completion_model_and_its_output_limit(catalog_file):
    model = _with(TEAM_LLAMA, kind="completion", max_output_tokens=2048)
    (entry,) = load_operator_entries(catalog_file(_models(model)))
    assert (entry.kind, entry.max_output_tokens) == (Kind.COMPLETION, 2048)
    assert entry.capabilities == {"completions", "streaming"}


def test_an_operator_entry_replaces_the_built_in_one_of_the_same_id(vendor_env, catalog_file):
    vendor_env.setenv("OPENAI_API_KEY", "sk-test")  # the built-in gpt-4o's key: not the file's
    path = catalog_file(_models(_with(TEAM_LLAMA, id="gpt-4o")))
    assert "gpt-4o" not in _listed_ids(path)
    vendor_env.setenv("TEAM_LLAMA_KEY", "team-secret")
    with override_settings(PLUGSKY_CATALOG_FILE=path):
        selectors.clear_cache()
        entry = selectors.catalog_model("gpt-4o")
        assert [e.id for e in selectors.configured_models()].count("gpt-4o") == 1
    assert entry is not None and entry.owned_by == "operator"
    assert entry.routes[0] == UpstreamRoute(
        provider="openai", model="llama-3.1-8b", base_urls=("http://10.0.0.5:8080/v1",),
        api_key_env="TEAM_LLAMA_KEY",
    )  # fmt: skip


def test_the_local_gguf_form_still_loads(catalog_file):
    model = {"id": "acme-chat", "kind": "chat", "gguf": "/srv/models/acme.gguf",
             "sha256": SHA256.upper(), "context_length": 2048, "owned_by": "acme"}  # fmt: skip
    (entry,) = load_operator_entries(catalog_file(_models(model)))
    assert entry == CatalogEntry(
        id="acme-chat",
        kind=Kind.CHAT,
        routes=(LocalRoute(runtime="llama", weights="/srv/models/acme.gguf", sha256=SHA256),),
        context_length=2048,
        description="Operator-supplied GGUF model.",
        owned_by="acme",
        capabilities=frozenset({"chat", "completions", "streaming"}),
    )


def test_no_file_adds_nothing():
    assert load_operator_entries("") == ()


LOCAL = {"id": "acme-chat", "gguf": "/srv/acme.gguf", "sha256": SHA256}
WHERE = "models[0] (team-llama)"
KNOWN_ROUTE_FIELDS = ("api_key_env, base_url, base_urls, input_price_micros_per_audio_second, "
                      "input_price_micros_per_mchar, input_price_micros_per_mtok, model, "
                      "output_price_micros_per_mtok or provider")  # fmt: skip
KNOWN_UPSTREAM_FIELDS = ("capabilities, context_length, description, dimensions, id, "
                         "input_price_micros_per_audio_second, input_price_micros_per_mchar, "
                         "input_price_micros_per_mtok, kind, max_output_tokens, "
                         "output_price_micros_per_mtok, owned_by, routes or voices")  # fmt: skip
SECRET = ("secrets are never written in the catalog file: name the environment variable that "
          "holds the key with api_key_env")  # fmt: skip


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "the file must be a JSON object"),
        ({"model": []}, "model: unknown field (expected models)"),
        ({"models": {}}, "models: must be a list"),
        (_models("team-llama"), "models[0]: a model must be a JSON object"),
        (_models(_without(TEAM_LLAMA, "id")), "models[0]: id: required"),
        (_models(_with(TEAM_LLAMA, id=7)), "models[0]: id: must be a non-empty string"),
        (_models(_with(TEAM_LLAMA, id=" ")), "models[0]: id: must be a non-empty string"),
        (_models(_without(TEAM_LLAMA, "routes")),
         f'{WHERE}: gguf: a model has either "gguf" (a local file) or "routes" (upstream)'),
        (_models(_with(TEAM_LLAMA, gguf="/srv/a.gguf")),
         f'{WHERE}: gguf: a model has either "gguf" (a local file) or "routes" (upstream)'),
        (_models(_without(TEAM_LLAMA, "kind")), f"{WHERE}: kind: required"),
        (_models(_with(TEAM_LLAMA, kind="vision")),
         f"{WHERE}: kind: unknown kind 'vision' (expected chat, completion, embedding, speech "
         "or transcription)"),
        (_models(_without(TEAM_LLAMA, "context_length")), f"{WHERE}: context_length: required"),
        (_models(_with(TEAM_LLAMA, context_length="8192")),
         f"{WHERE}: context_length: must be an integer of at least 1"),
        (_models(_with(TEAM_LLAMA, context_length=0)),
         f"{WHERE}: context_length: must be an integer of at least 1"),
        (_models(_with(TEAM_LLAMA, input_price_micros_per_mtok=True)),
         f"{WHERE}: input_price_micros_per_mtok: must be an integer of at least 0"),
        (_models(_with(TEAM_LLAMA, output_price_micros_per_mtok=-1)),
         f"{WHERE}: output_price_micros_per_mtok: must be an integer of at least 0"),
        (_models(_with(TEAM_LLAMA, input_price_micros_per_mtok=0.15)),
         f"{WHERE}: input_price_micros_per_mtok: must be an integer of at least 0"),
        (_models(_without(TEAM_LLAMA, "input_price_micros_per_mtok")),
         f"{WHERE}: input_price_micros_per_mtok: required"),
        (_models(_without(TEAM_LLAMA, "output_price_micros_per_mtok")),
         f"{WHERE}: output_price_micros_per_mtok: required"),
        (_models(_with(TEAM_LLAMA, max_output_tokens=0)),
         f"{WHERE}: max_output_tokens: must be an integer of at least 1"),
        (_models(_with(TEAM_LLAMA, capabilities="chat")),
         f"{WHERE}: capabilities: must be a list of non-empty strings"),
        (_models(_with(TEAM_LLAMA, capabilities=["chat", "telepathy"])),
         f"{WHERE}: capabilities: unknown ['telepathy'] (known: chat, completions, embeddings, "
         "json_mode, json_schema, logit_bias, logprobs, n, parallel_tool_calls, penalties, seed, "
         "speech, stop, streaming, token_input, tools, transcription, translation or vision)"),
        (_models(_with(TEAM_LLAMA, dimensions=768)),
         f"{WHERE}: dimensions: only embedding models have dimensions"),
        (_models(_with(TEAM_LLAMA, context_lenght=8192)),
         f"{WHERE}: context_lenght: unknown field (expected {KNOWN_UPSTREAM_FIELDS})"),
        (_models(_with(TEAM_LLAMA, api_key="sk-live-123")), f"{WHERE}: api_key: {SECRET}"),
        (_models(_with(TEAM_LLAMA, routes=[])), f"{WHERE}: routes: must name at least one route"),
        (_models(_with(TEAM_LLAMA, routes={"provider": "openai"})),
         f"{WHERE}: routes: must be a list"),
        (_models(_with(TEAM_LLAMA, routes=["openai"])),
         f"{WHERE}: routes[0]: a route must be a JSON object"),
        (_models(_with_route(1, provider="azure")),
         f"{WHERE}: routes[1].provider: unknown provider 'azure' "
         "(expected anthropic, gemini or openai)"),
        (_models(_with(TEAM_LLAMA, routes=[{"model": "m"}])),
         f"{WHERE}: routes[0].provider: required"),
        (_models(_with(TEAM_LLAMA, routes=[{"provider": "openai"}])),
         f"{WHERE}: routes[0].model: required"),
        (_models(_with(TEAM_LLAMA, kind="embedding", output_price_micros_per_mtok=0)),
         f"{WHERE}: routes[1].provider: Anthropic's API serves no embedding models"),
        (_models(_with_route(0, api_key="sk-live-123")), f"{WHERE}: routes[0].api_key: {SECRET}"),
        (_models(_with_route(0, authorization="Bearer x")),
         f"{WHERE}: routes[0].authorization: {SECRET}"),
        (_models(_with_route(0, secret_key="x")), f"{WHERE}: routes[0].secret_key: {SECRET}"),
        (_models(_with_route(0, headers={})),
         f"{WHERE}: routes[0].headers: unknown field (expected {KNOWN_ROUTE_FIELDS})"),
        (_models(_with_route(0, api_key_env="sk-live-123")),
         f"{WHERE}: routes[0].api_key_env: must be the name of an environment variable, not a key"),
        (_models(_with_route(0, api_key_env="")),
         f"{WHERE}: routes[0].api_key_env: must be a non-empty string"),
        (_models(_with_route(0, base_url="10.0.0.5:8080/v1")),
         f"{WHERE}: routes[0].base_url: '10.0.0.5:8080/v1' is not an http:// or https:// URL"),
        (_models(_with_route(0, base_url="ftp://10.0.0.5/v1")),
         f"{WHERE}: routes[0].base_url: 'ftp://10.0.0.5/v1' is not an http:// or https:// URL"),
        (_models(_with_route(0, base_url="http://10.0.0.5:99999/v1")),
         f"{WHERE}: routes[0].base_url: 'http://10.0.0.5:99999/v1' is not a URL "
         "(Port out of range 0-65535)"),
        (_models(_with_route(0, base_url="http://team:hunter2@10.0.0.5/v1")),
         f"{WHERE}: routes[0].base_url: credentials in a URL are secrets: name them with "
         "api_key_env"),
        (_models(_with_route(0, base_url="http://10.0.0.5/v1?key=x")),
         f"{WHERE}: routes[0].base_url: 'http://10.0.0.5/v1?key=x': a base URL has no query "
         "or fragment"),
        (_models(_with_route(0, base_url=["http://10.0.0.5/v1"])),
         f"{WHERE}: routes[0].base_url: must be a non-empty string"),
        (_models(_with_route(0, base_urls=["http://10.0.0.6/v1"])),
         f'{WHERE}: routes[0].base_urls: give "base_url" or "base_urls", not both'),
        (_models(_with(TEAM_LLAMA, routes=[{"provider": "openai", "model": "m", "base_urls": []}])),
         f"{WHERE}: routes[0].base_urls: must list one or more distinct URLs"),
        (_models(_with(TEAM_LLAMA, routes=[{"provider": "openai", "model": "m",
                                            "base_urls": ["http://a/v1", "http://a/v1/"]}])),
         f"{WHERE}: routes[0].base_urls: must list one or more distinct URLs"),
        (_models(_with(TEAM_LLAMA, routes=[{"provider": "openai", "model": "m",
                                            "base_urls": "http://a/v1"}])),
         f"{WHERE}: routes[0].base_urls: must be a list of non-empty strings"),
        (_models(_with_route(1, input_price_micros_per_mtok="1")),
         f"{WHERE}: routes[1].input_price_micros_per_mtok: must be an integer of at least 0"),
        (_models(TEAM_LLAMA, _with(TEAM_LLAMA, kind="completion")),
         "models[1] (team-llama): id: duplicate of models[0]"),
        (_models(_without(LOCAL, "sha256")), "models[0] (acme-chat): sha256: required"),
        (_models(_with(LOCAL, sha256="abc")),
         "models[0] (acme-chat): sha256: must be the file's SHA-256, 64 hexadecimal digits"),
        (_models(_with(LOCAL, parallel_slots=0)),
         "models[0] (acme-chat): parallel_slots: must be an integer of at least 1"),
        (_models(_with(LOCAL, kind="embeding")),
         "models[0] (acme-chat): kind: unknown kind 'embeding' (expected chat, completion, "
         "embedding, speech or transcription)"),
        (_models(_with(LOCAL, api_key="x")), f"models[0] (acme-chat): api_key: {SECRET}"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_refused_naming_the_entry_and_the_field(
    catalog_file, document, message
):
    path = catalog_file(document)
    assert _refusal(path) == f"PLUGSKY_CATALOG_FILE {path}: {message}"


def test_a_file_that_cannot_be_read_is_refused(tmp_path):
    missing = str(tmp_path / "absent.json")
    assert _refusal(missing) == (
        f"PLUGSKY_CATALOG_FILE {missing}: [Errno 2] No such file or directory: '{missing}'"
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"models": [')
    assert _refusal(str(broken)) == (
        f"PLUGSKY_CATALOG_FILE {broken}: Expecting value: line 1 column 13 (char 12)"
    )


def test_a_malformed_file_is_refused_when_the_catalog_loads(catalog_file):
    # It used to load, and then every GET /v1/models answered 500.
    path = catalog_file(_models(_with(TEAM_LLAMA, kind="vision")))
    with override_settings(PLUGSKY_CATALOG_FILE=path):
        selectors.clear_cache()
        with pytest.raises(ImproperlyConfigured) as refusal:
            selectors.catalog_load()
    assert str(refusal.value) == (
        f"PLUGSKY_CATALOG_FILE {path}: {WHERE}: kind: unknown kind 'vision' "
        "(expected chat, completion, embedding, speech or transcription)"
    )


def _manage_check(path: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PLUGSKY_CATALOG_FILE": path}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_manage_py_check_stops_on_a_malformed_file_and_passes_a_good_one(catalog_file):
    path = catalog_file(_models(_with_route(0, api_key="sk-live-123")))
    refused = _manage_check(path)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        f"PLUGSKY_CATALOG_FILE {path}: {WHERE}: routes[0].api_key: {SECRET}"
    )
    accepted = _manage_check(catalog_file(_models(TEAM_LLAMA)))
    assert (accepted.returncode, accepted.stdout) == (
        0,
        "System check identified no issues (0 silenced).\n",
    )
