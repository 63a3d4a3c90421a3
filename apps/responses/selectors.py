"""Reading stored responses: always within one organization."""

from __future__ import annotations

from apps.responses.models import StoredResponse


def stored_response_for(*, organization_id: int, response_id: str) -> StoredResponse | None:
    """The organization's stored response `response_id`, or None (another's counts as none)."""
    return StoredResponse.objects.filter(organization_id=organization_id, pk=response_id).first()
