import pytest

from apps.billing.pricing import call_cost_micros, cents_to_micros, cost_header_value, usd_display
from apps.catalog.builtin import BUILTIN_MODELS

MODELS = {entry.id: entry for entry in BUILTIN_MODELS}
NANO = MODELS["plugsky-nano"]  # 20_000 µ$ in, 40_000 µ$ out per million tokens
EMBED = MODELS["plugsky-embed"]  # 10_000 µ$ per million input tokens


def cost(entry, prompt, completion):  # type: ignore[no-untyped-def]
    return call_cost_micros(entry=entry, prompt_tokens=prompt, completion_tokens=completion)


def test_no_tokens_cost_nothing():
    assert cost(NANO, 0, 0) == 0


def test_any_fraction_of_a_micro_dollar_rounds_up():
    assert cost(NANO, 1, 0) == 1  # 0.02 µ$
    assert cost(NANO, 49, 0) == 1  # 0.98 µ$
    assert cost(NANO, 51, 0) == 2  # 1.02 µ$


def test_an_exact_micro_dollar_is_not_rounded():
    assert cost(NANO, 50, 0) == 1  # exactly 1_000_000 / 1_000_000
    assert cost(NANO, 0, 25) == 1
    assert cost(NANO, 100, 50) == 4  # 2_000_000 + 2_000_000


def test_rounding_happens_once_per_call_not_per_part():
    # 0.02 µ$ + 0.04 µ$ = 0.06 µ$ → 1 µ$ (rounding each part would give 2).
    assert cost(NANO, 1, 1) == 1


def test_large_counts_are_exact_integers():
    assert cost(MODELS["plugsky-pro"], 10**9, 10**9) == 300_000_000
    assert cost(NANO, 10**12 + 1, 0) == 20_000_000_001


def test_embeddings_are_priced_on_input_only():
    assert cost(EMBED, 1_000_000, 0) == 10_000
    assert cost(EMBED, 1_000_000, 999) == 10_000


def test_cost_never_decreases_with_more_tokens():
    costs = [cost(NANO, 7, completion) for completion in range(200)]
    assert costs == sorted(costs)


def test_negative_token_counts_are_refused():
    with pytest.raises(ValueError):
        cost(NANO, -1, 0)


@pytest.mark.parametrize(
    ("micros", "header"),
    [(0, "0.000000"), (1, "0.000001"), (123, "0.000123"), (1_234_567, "1.234567"),
     (5_000_000, "5.000000"), (-2_500, "-0.002500")],
)  # fmt: skip
def test_cost_header_is_dollars_with_six_decimals(micros, header):
    assert cost_header_value(micros) == header


@pytest.mark.parametrize(
    ("micros", "shown"),
    [(5_000_000, "$5.00"), (1_500_000, "$1.50"), (100, "$0.0001"), (0, "$0.00"),
     (-500_000, "-$0.50"), (123_456_789, "$123.456789")],
)  # fmt: skip
def test_usd_display(micros, shown):
    assert usd_display(micros) == shown


def test_cents_to_micros():
    assert cents_to_micros(2_500) == 25_000_000
