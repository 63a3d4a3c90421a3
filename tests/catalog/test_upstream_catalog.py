"""The built-in upstream models: listed and routed only where their vendor's key is set."""

import pytest
from django.test import override_settings

from apps.catalog import selectors
from apps.catalog.builtin import BUILTIN_MODELS
from apps.catalog.entries import (
    CAPABILITIES,
    UPSTREAM_PROVIDERS,
    CatalogEntry,
    Kind,
    UpstreamRoute,
)
from apps.catalog.selectors import UpstreamAccess, upstream_access
from apps.catalog.upstream_models import UPSTREAM_MODELS, VENDOR_DEFAULTS
from apps.protocol.errors import APIError
from apps.providers import registry
from apps.providers.local_engine import LocalEngineProvider
from apps.providers.upstream.anthropic import AnthropicProvider
from apps.providers.upstream.gemini import GeminiProvider
from apps.providers.upstream.openai import OpenAIProvider
from tests.openapi import validate_response

UPSTREAM = {entry.id: entry for entry in UPSTREAM_MODELS}
LOCAL_IDS = {entry.id for entry in BUILTIN_MODELS}
OPENAI_IDS = {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
              "text-embedding-3-small", "text-embedding-3-large"}  # fmt: skip
ANTHROPIC_IDS = {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"}
GEMINI_IDS = {"gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash", "gemini-embedding-001"}
ENV_NAMES = {route.api_key_env for entry in UPSTREAM_MODELS for route in entry.upstream_routes} | {
    vendor.base_url_env for vendor in VENDOR_DEFAULTS.values()
}


@pytest.fixture(autouse=True)
def vendor_env(monkeypatch):
    """No vendor variable from the machine leaks in; the catalog is reloaded around each test."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    selectors.clear_cache()
    yield monkeypatch
    selectors.clear_cache()


def _set_keys(monkeypatch, *names):
    for name in names:
        monkeypatch.setenv(name, f"test-{name.lower()}")


def _listed_upstream_ids():
    return {entry.id for entry in selectors.catalog_models() if entry.local_route is None}


def _auth(api_key):
    return {"Authorization": f"Bearer {api_key[1]}"}


def test_without_vendor_keys_only_local_models_are_listed():
    listed = [entry.id for entry in selectors.catalog_models()]
    assert "plugsky-nano" in listed
    assert set(listed) <= LOCAL_IDS
    assert selectors.catalog_model("gpt-4o") is None
    assert selectors.catalog_model("claude-haiku-4-5") is None


def test_the_three_vendor_keys_list_their_models_and_the_local_ones(vendor_env):
    local = [entry.id for entry in selectors.catalog_models()]
    _set_keys(vendor_env, "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")
    listed = [entry.id for entry in selectors.catalog_models()]
    assert listed[: len(local)] == local  # the local models first, as before
    assert set(listed[len(local) :]) == OPENAI_IDS | ANTHROPIC_IDS | GEMINI_IDS
    assert len(listed) >= 18


def test_models_endpoint_lists_upstream_models_in_the_spec_shape(vendor_env, client, api_key):
    _set_keys(vendor_env, "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")
    response = client.get("/v1/models", headers=_auth(api_key))
    assert response.status_code == 200
    validate_response("get", "/models", 200, response.json())
    data = {model["id"]: model for model in response.json()["data"]}
    assert len(data) >= 18
    assert data["claude-haiku-4-5"] == {
        "id": "claude-haiku-4-5",
        "object": "model",
        "created": 1767225600,
        "owned_by": "anthropic",
        "kind": "chat",
        "context_length": 200_000,
        "max_output_tokens": 64_000,
        "capabilities": ["chat", "parallel_tool_calls", "stop", "streaming", "tools", "vision"],
        "description": "Anthropic Claude Haiku 4.5: the fastest Claude.",
        "pricing": {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 5.0},
    }


def test_retrieving_a_configured_upstream_model_matches_the_spec(vendor_env, client, api_key):
    _set_keys(vendor_env, "GEMINI_API_KEY")
    response = client.get("/v1/models/gemini-embedding-001", headers=_auth(api_key))
    assert response.status_code == 200
    validate_response("get", "/models/gemini-embedding-001", 200, response.json())
    assert response.json()["owned_by"] == "google"
    assert response.json()["dimensions"] == 3072


def test_an_upstream_model_without_its_key_is_model_not_found(vendor_env, client, api_key):
    _set_keys(vendor_env, "ANTHROPIC_API_KEY", "GEMINI_API_KEY")
    response = client.get("/v1/models/gpt-4o", headers=_auth(api_key))
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `gpt-4o` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    listed = [
        model["id"] for model in client.get("/v1/models", headers=_auth(api_key)).json()["data"]
    ]
    assert "gpt-4o" not in listed and "claude-opus-4-1" in listed


@pytest.mark.parametrize(
    ("missing", "hidden"),
    [
        ("OPENAI_API_KEY", OPENAI_IDS),
        ("ANTHROPIC_API_KEY", ANTHROPIC_IDS),
        ("GEMINI_API_KEY", GEMINI_IDS),
    ],
)
def test_a_missing_key_hides_exactly_that_vendors_models(vendor_env, missing, hidden):
    keys = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"} - {missing}
    _set_keys(vendor_env, *keys)
    assert _listed_upstream_ids() == (OPENAI_IDS | ANTHROPIC_IDS | GEMINI_IDS) - hidden


def test_an_empty_key_counts_as_missing(vendor_env):
    vendor_env.setenv("OPENAI_API_KEY", "  ")
    assert _listed_upstream_ids() == set()


@pytest.mark.parametrize(
    ("key", "ids"),
    [
        ("MISTRAL_API_KEY", {"mistral-large-latest", "mistral-small-latest", "mistral-embed"}),
        ("DEEPSEEK_API_KEY", {"deepseek-chat"}),
        ("GROQ_API_KEY", {"llama-3.3-70b", "llama-3.1-8b-instant"}),
        ("TOGETHER_API_KEY", {"llama-3.3-70b"}),
    ],
)
def test_openai_compatible_vendors_are_listed_by_their_own_key(vendor_env, key, ids):
    _set_keys(vendor_env, key)
    assert _listed_upstream_ids() == ids


@pytest.mark.parametrize(
    ("model_id", "upstream_model", "base_url", "key_env"),
    [
        ("mistral-large-latest", "mistral-large-latest", "https://api.mistral.ai/v1",
         "MISTRAL_API_KEY"),
        ("deepseek-chat", "deepseek-chat", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
        ("llama-3.1-8b-instant", "llama-3.1-8b-instant", "https://api.groq.com/openai/v1",
         "GROQ_API_KEY"),
    ],
)  # fmt: skip
def test_openai_compatible_vendors_route_to_their_base_url(
    vendor_env, model_id, upstream_model, base_url, key_env
):
    vendor_env.setenv(key_env, "secret-of-the-vendor")
    vendor_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # moves OpenAI's API only
    (route,) = UPSTREAM[model_id].routes
    assert isinstance(route, UpstreamRoute)
    assert (route.provider, route.model) == ("openai", upstream_model)
    assert upstream_access(route) == UpstreamAccess(
        base_urls=(base_url,), api_key="secret-of-the-vendor"
    )


def test_llama_falls_back_from_groq_to_together_at_togethers_prices():
    groq, together = UPSTREAM["llama-3.3-70b"].routes
    assert isinstance(groq, UpstreamRoute) and isinstance(together, UpstreamRoute)
    assert (groq.base_urls, groq.api_key_env) == (
        ("https://api.groq.com/openai/v1",),
        "GROQ_API_KEY",
    )
    assert (together.base_urls, together.model) == (
        ("https://api.together.xyz/v1",),
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    )
    assert (groq.input_price_micros_per_mtok, groq.output_price_micros_per_mtok) == (None, None)
    assert (together.input_price_micros_per_mtok, together.output_price_micros_per_mtok) == (
        880_000,
        880_000,
    )


@pytest.mark.parametrize(
    ("model_id", "env", "default", "override", "expected"),
    [
        ("gpt-4o", "OPENAI_API_KEY", "https://api.openai.com/v1", "OPENAI_BASE_URL",
         "http://127.0.0.1:8080/v1"),
        ("claude-opus-4-1", "ANTHROPIC_API_KEY", "https://api.anthropic.com",
         "ANTHROPIC_BASE_URL", "http://127.0.0.1:8081"),
        ("gemini-2.5-pro", "GEMINI_API_KEY", "https://generativelanguage.googleapis.com",
         "GEMINI_BASE_URL", "http://127.0.0.1:8082"),
    ],
)  # fmt: skip
def test_each_vendors_base_url_defaults_and_is_overridden_as_its_sdk_allows(
    vendor_env, model_id, env, default, override, expected
):
    (route,) = UPSTREAM[model_id].routes
    assert isinstance(route, UpstreamRoute)
    vendor_env.setenv(env, "k")
    assert upstream_access(route) == UpstreamAccess(base_urls=(default,), api_key="k")
    vendor_env.setenv(override, expected + "/")
    assert upstream_access(route) == UpstreamAccess(base_urls=(expected,), api_key="k")


def test_a_self_hosted_route_without_key_is_configured_by_its_base_url(vendor_env):
    bare = UpstreamRoute(provider="openai", model="llama")
    pinned = UpstreamRoute(provider="openai", model="llama", base_urls=("http://10.0.0.5/v1",))
    assert upstream_access(bare) is None
    assert upstream_access(pinned) == UpstreamAccess(base_urls=("http://10.0.0.5/v1",), api_key="")
    vendor_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    assert upstream_access(bare) == UpstreamAccess(
        base_urls=("http://127.0.0.1:8000/v1",), api_key=""
    )


def test_local_model_selection_does_not_hide_upstream_models(vendor_env):
    _set_keys(vendor_env, "OPENAI_API_KEY")
    with override_settings(PLUGSKY_LOCAL_MODELS=["plugsky-nano"]):
        selectors.clear_cache()
        configured = {entry.id for entry in selectors.configured_models()}
    assert configured == {"plugsky-nano"} | {entry.id for entry in UPSTREAM_MODELS}


@pytest.mark.parametrize(
    ("model_id", "owned_by", "context_length", "input_price", "output_price"),
    [
        ("gpt-4o", "openai", 128_000, 2_500_000, 10_000_000),
        ("gpt-4o-mini", "openai", 128_000, 150_000, 600_000),
        ("gpt-4.1", "openai", 1_047_576, 2_000_000, 8_000_000),
        ("gpt-4.1-mini", "openai", 1_047_576, 400_000, 1_600_000),
        ("text-embedding-3-small", "openai", 8191, 20_000, 0),
        ("text-embedding-3-large", "openai", 8191, 130_000, 0),
        ("claude-sonnet-4-5", "anthropic", 200_000, 3_000_000, 15_000_000),
        ("claude-haiku-4-5", "anthropic", 200_000, 1_000_000, 5_000_000),
        ("claude-opus-4-1", "anthropic", 200_000, 15_000_000, 75_000_000),
        ("gemini-2.5-flash", "google", 1_048_576, 300_000, 2_500_000),
        ("gemini-2.5-pro", "google", 1_048_576, 1_250_000, 10_000_000),
        ("gemini-2.0-flash", "google", 1_048_576, 100_000, 400_000),
        ("gemini-embedding-001", "google", 2048, 150_000, 0),
        ("deepseek-chat", "deepseek", 128_000, 280_000, 420_000),
        ("llama-3.3-70b", "meta", 131_072, 590_000, 790_000),
    ],
)
def test_vendor_list_prices_and_limits(
    model_id, owned_by, context_length, input_price, output_price
):
    entry = UPSTREAM[model_id]
    assert (entry.owned_by, entry.context_length) == (owned_by, context_length)
    assert entry.input_price_micros_per_mtok == input_price
    assert entry.output_price_micros_per_mtok == output_price


@pytest.mark.parametrize("entry", UPSTREAM_MODELS, ids=lambda entry: entry.id)
def test_every_upstream_entry_is_complete(entry: CatalogEntry):
    assert entry.local_route is None and entry.id not in LOCAL_IDS
    assert entry.owned_by != "plugsky" and entry.description
    assert entry.capabilities <= CAPABILITIES
    assert entry.input_price_micros_per_mtok > 0
    for route in entry.upstream_routes:
        assert route.provider in UPSTREAM_PROVIDERS and route.model and route.api_key_env
    if entry.kind == Kind.EMBEDDING:
        assert entry.capabilities >= {"embeddings"} and entry.dimensions
        assert entry.output_price_micros_per_mtok == 0
    else:
        assert entry.capabilities >= {"chat", "streaming", "tools"}
        assert entry.output_price_micros_per_mtok > entry.input_price_micros_per_mtok


def test_every_upstream_id_is_unique_and_clear_of_local_names():
    names = [name for entry in UPSTREAM_MODELS for name in (entry.id, *entry.aliases)]
    local_names = {name for entry in BUILTIN_MODELS for name in (entry.id, *entry.aliases)}
    assert len(names) == len(set(names)) and not set(names) & local_names


class _Recorded:
    """Stands for a provider class: remembers what the registry built it with."""

    def __init__(self, entry, route, *, base_url, api_key):
        self.name = route.provider
        self.built = (entry.id, route.provider, route.model, base_url, api_key)


@pytest.fixture
def recorded(vendor_env):
    for provider in UPSTREAM_PROVIDERS:
        vendor_env.setitem(registry.PROVIDER_CLASSES, provider, _Recorded)


async def test_route_providers_build_configured_routes_in_order(vendor_env, recorded):
    vendor_env.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    vendor_env.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:8081")
    entry = CatalogEntry(
        id="chain",
        kind=Kind.CHAT,
        routes=(
            UpstreamRoute(provider="openai", model="missing", api_key_env="OPENAI_API_KEY"),
            UpstreamRoute(
                provider="anthropic", model="claude-haiku-4-5", api_key_env="ANTHROPIC_API_KEY"
            ),
            UpstreamRoute(provider="openai", model="open", base_urls=("http://10.0.0.5:8080/v1",)),
        ),
        context_length=8192,
        description="",
    )
    chain = await registry.route_providers(entry)
    assert [provider.built for provider in chain] == [
        ("chain", "anthropic", "claude-haiku-4-5", "http://127.0.0.1:8081", "sk-ant-test"),
        ("chain", "openai", "open", "http://10.0.0.5:8080/v1", ""),
    ]


@pytest.mark.parametrize(
    ("model_id", "env", "provider_class"),
    [
        ("gpt-4.1-mini", "OPENAI_API_KEY", OpenAIProvider),
        ("mistral-embed", "MISTRAL_API_KEY", OpenAIProvider),
        ("claude-sonnet-4-5", "ANTHROPIC_API_KEY", AnthropicProvider),
        ("gemini-2.0-flash", "GEMINI_API_KEY", GeminiProvider),
    ],
)
async def test_route_provider_builds_the_provider_of_the_routes_api(
    vendor_env, model_id, env, provider_class
):
    vendor_env.setenv(env, "test-key")
    entry = UPSTREAM[model_id]
    provider = await registry.route_provider(entry, entry.upstream_routes[0])
    assert type(provider) is provider_class
    assert provider.name == entry.upstream_routes[0].provider and provider.is_available()


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (UpstreamRoute(provider="openai", model="gpt-4o", api_key_env="OPENAI_API_KEY"),
         "x: the openai route to gpt-4o is not configured (set OPENAI_API_KEY)"),
        (UpstreamRoute(provider="gemini", model="gemma"),
         "x: the gemini route to gemma is not configured (set GEMINI_BASE_URL)"),
    ],
)  # fmt: skip
async def test_route_provider_refuses_a_route_without_its_credentials(route, message):
    entry = CatalogEntry(id="x", kind=Kind.CHAT, routes=(route,), context_length=1, description="")
    with pytest.raises(LookupError) as refusal:
        await registry.route_provider(entry, route)
    assert str(refusal.value) == message


async def test_a_route_with_replicas_calls_one_of_them_and_keeps_affinity(recorded):
    replicas = ("http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1", "http://127.0.0.1:11/v1")
    entry = CatalogEntry(
        id="replicated",
        kind=Kind.CHAT,
        routes=(UpstreamRoute(provider="openai", model="llama", base_urls=replicas),),
        context_length=8192,
        description="",
    )
    chosen = [
        (await registry.route_providers(entry, affinity_key="conversation-1"))[0].inner.built[3]
        for _ in range(3)
    ]
    assert chosen[0] in replicas and chosen == [chosen[0]] * 3


async def test_a_local_entry_is_served_by_the_engine_alone():
    nano = next(entry for entry in BUILTIN_MODELS if entry.id == "plugsky-nano")
    (provider,) = await registry.route_providers(nano)
    assert isinstance(provider, LocalEngineProvider)


async def test_a_model_whose_routes_lost_their_keys_is_a_404_not_a_crash(vendor_env):
    # Looked up while configured, called after its key went: OpenAI's model_not_found.
    entry = UPSTREAM["gpt-4.1-mini"]
    with pytest.raises(APIError) as refusal:
        await registry.serving_provider(entry)
    assert (refusal.value.status, refusal.value.code, refusal.value.param) == (
        404,
        "model_not_found",
        "model",
    )
