"""Token tallies of the local engine's generations, and how an unfinished call is settled (no
model needed)."""

import asyncio

import pytest

from apps.gateway.serving.generation import _failure_outcome
from apps.protocol.errors import APIError
from apps.providers.base import Usage
from apps.providers.errors import ProviderError
from apps.providers.local_engine.tally import Tally


def test_tally_counts_each_prompt_once_and_every_sample():
    usage = Usage()
    tally = Tally(usage, samples_per_prompt=2)  # two prompts, two samples each
    tally.observe(0, {"timings": {"prompt_n": 3, "cache_n": 7, "predicted_n": 4}})
    tally.observe(1, {"timings": {"prompt_n": 10, "cache_n": 0, "predicted_n": 5}})
    tally.observe(2, {"usage": {"prompt_tokens": 6, "completion_tokens": 2}})
    tally.observe(3, {"usage": {"prompt_tokens": 6, "completion_tokens": 3}})
    assert usage.prompt_tokens == 10 + 6
    assert usage.cached_tokens == 7  # of the first prompt's 10: llama.cpp's prompt cache
    assert usage.completion_tokens == 4 + 5 + 2 + 3
    assert usage.exact


def test_final_usage_replaces_the_running_count():
    usage = Usage()
    tally = Tally(usage)
    tally.observe(0, {"timings": {"prompt_n": 9, "predicted_n": 7}})
    tally.observe(0, {"usage": {"prompt_tokens": 9, "completion_tokens": 8}})
    assert (usage.prompt_tokens, usage.completion_tokens) == (9, 8)


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (ProviderError("too long", status=400, code="context_length_exceeded"),
         (400, "context_length_exceeded", False)),
        (ProviderError("down", status=503), (503, "provider_error", False)),
        (asyncio.CancelledError(), (499, "client_disconnected", True)),
        (GeneratorExit(), (499, "client_disconnected", True)),
        (RuntimeError("bug"), (500, "internal_error", False)),
        (APIError("no", status=400, code="invalid_value"), (400, "invalid_value", False)),
    ],
)  # fmt: skip
def test_an_unfinished_call_is_settled_by_how_it_ended(failure, outcome):
    assert _failure_outcome(failure) == outcome
