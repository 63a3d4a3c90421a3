"""GET /v1/models with the three vendors' keys set (their base URLs at the loopback fakes):
the local models and every built-in upstream model of those vendors, 18 or more."""

from __future__ import annotations

import pytest

from apps.catalog.upstream_models import UPSTREAM_MODELS
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import API_KEY as GEMINI_KEY
from tests.fakes.gemini_api import GeminiFake
from tests.fakes.openai_api import FakeOpenAI, Stream, openai_usage
from tests.gateway.upstream.conftest import HELLO, call, served

pytestmark = pytest.mark.xdist_group("live")

VENDOR_KEYS = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"}
VENDOR_MODEL_IDS = {
    entry.id
    for entry in UPSTREAM_MODELS
    if any(route.api_key_env in VENDOR_KEYS for route in entry.upstream_routes)
}


def _listed(answer) -> list[str]:
    assert answer.status == 200, answer.body
    assert answer.body["object"] == "list"
    return [model["id"] for model in answer.body["data"]]


async def test_the_three_vendor_keys_list_their_models_next_to_the_local_ones(
    async_client, live_key, servers, vendor_env
):
    _, raw_key = live_key
    local_ids = _listed(await call(async_client, raw_key, "/models", {}, method="GET"))
    assert not set(local_ids) & VENDOR_MODEL_IDS
    openai = FakeOpenAI(api_key="sk-openai-fake")
    openai.reply = Stream(texts=("Hi",), usage=openai_usage(prompt=9, completion=1))
    vendor_env.setenv("OPENAI_API_KEY", "sk-openai-fake")
    vendor_env.setenv("OPENAI_BASE_URL", served(servers, openai) + "/v1")
    vendor_env.setenv("ANTHROPIC_API_KEY", FakeAnthropic().api_key)
    vendor_env.setenv("ANTHROPIC_BASE_URL", served(servers, FakeAnthropic()))
    vendor_env.setenv("GEMINI_API_KEY", GEMINI_KEY)
    vendor_env.setenv("GEMINI_BASE_URL", served(servers, GeminiFake()))
    listed = _listed(await call(async_client, raw_key, "/models", {}, method="GET"))
    assert sorted(listed) == sorted([*local_ids, *VENDOR_MODEL_IDS])
    assert len(listed) == len(set(listed)) >= 18
    # Listed means served: a call to one of them reaches the vendor's base URL.
    answer = await call(async_client, raw_key, "/chat/completions",
                        {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 5})  # fmt: skip
    assert answer.status == 200, answer.body
    assert answer.body["choices"][0]["message"]["content"] == "Hi"
    assert openai.received[0].body["model"] == "gpt-4o-mini"
