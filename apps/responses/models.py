"""Responses kept for their organization (`store: true`), so a later call can continue from one."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.accounts.models import Organization


class StoredResponse(models.Model):
    # OpenAI's own id ("resp_…"), the one clients send back as previous_response_id.
    id = models.CharField(max_length=64, primary_key=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="stored_responses"
    )
    model = models.CharField(max_length=200)
    # The conversation before this response's own input, carried over from previous_response_id.
    prior_items = models.JSONField(default=list)
    # The request's input items, each with its id (GET …/input_items lists them).
    input_items = models.JSONField(default=list)
    output = models.JSONField(default=list)
    # The response object as it was answered (GET /v1/responses/{id}).
    body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return self.id

    @property
    def conversation(self) -> list[dict[str, object]]:
        """Every item a continuation starts from: what came before, the input, the output."""
        return [*self.prior_items, *self.input_items, *self.output]
