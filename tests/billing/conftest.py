from __future__ import annotations

import pytest

from apps.catalog.entries import CatalogEntry, Kind, LocalRoute

# 1 µ$ per prompt token and 2 µ$ per completion token: costs are easy to state exactly.
PRICED = CatalogEntry(
    id="test-priced",
    kind=Kind.CHAT,
    routes=(LocalRoute(runtime="llama", weights="none"),),
    context_length=4096,
    description="a model with round prices, for billing tests",
    input_price_micros_per_mtok=1_000_000,
    output_price_micros_per_mtok=2_000_000,
)


@pytest.fixture
def priced_entry() -> CatalogEntry:
    return PRICED
