"""Usage series as the JSON the page's Chart.js charts read (json_script, no inline code)."""

from __future__ import annotations

from typing import Any

from apps.billing.pricing import MICROS_PER_DOLLAR
from apps.dashboard.selectors import Series

# The top groups by spend get their own colour; the rest are summed into "Other".
_MAX_GROUPS = 7
OTHER = "Other"


def _top_groups(series: Series) -> list[str]:
    totals = {
        group: sum(series.cost_micros[group]) * 1_000_000 + sum(series.tokens[group])
        for group in series.cost_micros
    }
    return sorted(totals, key=lambda group: (-totals[group], group))


def _folded(table: dict[str, list[int]], groups: list[str], width: int) -> dict[str, list[int]]:
    kept = {group: table[group] for group in groups[:_MAX_GROUPS]}
    rest = groups[_MAX_GROUPS:]
    if rest:
        kept[OTHER] = [sum(table[group][day] for group in rest) for day in range(width)]
    return kept


def chart_payload(series: Series) -> dict[str, Any]:
    groups = _top_groups(series)
    width = len(series.days)
    cost = _folded(series.cost_micros, groups, width)
    tokens = _folded(series.tokens, groups, width)
    return {
        "labels": [day.strftime("%b %-d") for day in series.days],
        "cost": [
            {"label": group, "data": [value / MICROS_PER_DOLLAR for value in values]}
            for group, values in cost.items()
        ],
        "tokens": [{"label": group, "data": values} for group, values in tokens.items()],
    }
