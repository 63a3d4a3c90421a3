"""Pricing math: integers only, one rounding rule, one place.

Amounts are micro-dollars (1 USD = 1_000_000 micros). Catalog prices are micro-dollars per million
tokens, so the exact cost of a call is a fraction with denominator 1_000_000.

**Rounding rule:** the exact cost of the whole call,
`prompt_tokens * input_price + completion_tokens * output_price`, is divided by one million and
rounded *up* (ceiling) to the next whole micro-dollar, once per call. A call is therefore never
undercharged, and overcharged by less than one micro-dollar ($0.000001). The function is monotonic
in both token counts, so the cost of the actual usage never exceeds the cost of the worst case that
was held before the call.

The `x-plugsky-cost` response header carries the charged cost of the call in US dollars as a
decimal string with exactly six fractional digits (`cost_header_value`): "0.000123" for 123
micros, "0.000000" for a call that was not billed.
"""

from __future__ import annotations

from apps.catalog.entries import AUDIO_KINDS, CatalogEntry, Kind, UpstreamRoute

MICROS_PER_DOLLAR = 1_000_000
MICROS_PER_CENT = 10_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens
CHARACTERS_PER_PRICE_UNIT = 1_000_000  # speech prices are per million characters

COST_HEADER = "x-plugsky-cost"


def call_cost_micros(
    *, entry: CatalogEntry, prompt_tokens: int, completion_tokens: int, route_index: int = 0
) -> int:
    """The cost of one call in micro-dollars, rounded up once per call (see module docstring),
    at the prices of the route that served it (a route may price differently from its entry)."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts cannot be negative")
    if entry.kind in AUDIO_KINDS:  # the meter counts audio units as prompt tokens
        return audio_cost_micros(entry=entry, units=prompt_tokens, route_index=route_index)
    if entry.kind == Kind.EMBEDDING:
        completion_tokens = 0  # embeddings are priced on input only
    input_price, output_price = route_prices(entry, route_index)
    exact_numerator = prompt_tokens * input_price + completion_tokens * output_price
    return -(-exact_numerator // TOKENS_PER_PRICE_UNIT)  # ceiling division on integers


def audio_cost_micros(*, entry: CatalogEntry, units: int, route_index: int = 0) -> int:
    """The cost of an audio call: `units` are whole seconds of audio transcribed, or characters
    of input spoken, at the prices of the route that served it; rounded up once per call like
    every other price."""
    if units < 0:
        raise ValueError("audio units cannot be negative")
    route = entry.routes[route_index] if route_index < len(entry.routes) else None
    upstream = route if isinstance(route, UpstreamRoute) else None
    if entry.kind == Kind.TRANSCRIPTION:
        per_second = entry.input_price_micros_per_audio_second
        if upstream and upstream.input_price_micros_per_audio_second is not None:
            per_second = upstream.input_price_micros_per_audio_second
        return units * per_second
    if entry.kind == Kind.SPEECH:
        per_mchar = entry.input_price_micros_per_mchar
        if upstream and upstream.input_price_micros_per_mchar is not None:
            per_mchar = upstream.input_price_micros_per_mchar
        return -(-units * per_mchar // CHARACTERS_PER_PRICE_UNIT)
    raise ValueError(f"{entry.id} is not an audio model")


def billed_audio_seconds(*, sample_count: int, sample_rate: int) -> int:
    """Seconds of audio a transcription is billed for: the duration rounded up, at least one."""
    return max(1, -(-sample_count // sample_rate))


def worst_case_cost_micros(
    *, entry: CatalogEntry, prompt_tokens: int, completion_tokens: int
) -> int:
    """The most the call can cost on any of the entry's routes: what its hold must cover."""
    return max(
        call_cost_micros(
            entry=entry,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            route_index=index,
        )
        for index in range(max(len(entry.routes), 1))
    )


def route_prices(entry: CatalogEntry, route_index: int) -> tuple[int, int]:
    """(input, output) micro-dollars per million tokens on the entry's route `route_index`."""
    input_price = entry.input_price_micros_per_mtok
    output_price = entry.output_price_micros_per_mtok
    route = entry.routes[route_index] if route_index < len(entry.routes) else None
    if isinstance(route, UpstreamRoute):
        if route.input_price_micros_per_mtok is not None:
            input_price = route.input_price_micros_per_mtok
        if route.output_price_micros_per_mtok is not None:
            output_price = route.output_price_micros_per_mtok
    return input_price, output_price


def cost_header_value(cost_micros: int) -> str:
    """The `x-plugsky-cost` header: dollars with exactly six decimals, e.g. "0.000123"."""
    sign = "-" if cost_micros < 0 else ""
    dollars, micros = divmod(abs(cost_micros), MICROS_PER_DOLLAR)
    return f"{sign}{dollars}.{micros:06d}"


def usd_display(amount_micros: int) -> str:
    """Dollars for people: cents, and more digits only when they matter ("$5.00", "$0.0001")."""
    sign = "-" if amount_micros < 0 else ""
    dollars, micros = divmod(abs(amount_micros), MICROS_PER_DOLLAR)
    fraction = f"{micros:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}${dollars}.{fraction}"


def cents_to_micros(amount_cents: int) -> int:
    """Stripe's minor units (US cents) to micro-dollars; used only at the Stripe boundary."""
    return amount_cents * MICROS_PER_CENT
