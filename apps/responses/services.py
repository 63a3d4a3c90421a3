"""Keeping and deleting stored responses, each within its organization."""

from __future__ import annotations

from typing import Any

from apps.responses.models import StoredResponse


def stored_response_create(
    *,
    organization_id: int,
    response_id: str,
    model: str,
    prior_items: list[dict[str, Any]],
    input_items: list[dict[str, Any]],
    output: list[dict[str, Any]],
    body: dict[str, Any],
) -> StoredResponse:
    """Keep a finished response so that GET and previous_response_id find it."""
    return StoredResponse.objects.create(
        id=response_id,
        organization_id=organization_id,
        model=model,
        prior_items=prior_items,
        input_items=input_items,
        output=output,
        body=body,
    )


def stored_response_delete(*, organization_id: int, response_id: str) -> bool:
    """Delete the organization's response; False if it has none of that id."""
    deleted, _ = StoredResponse.objects.filter(
        organization_id=organization_id, pk=response_id
    ).delete()
    return deleted > 0
