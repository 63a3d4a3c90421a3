"""Views of the admin API that read money and tokens: usage, costs and credits, in OpenAI's
bucket shapes. Usage comes from the rollups (exact against the UsageRecords: the minutes after the
rollups' watermark are summed from the records), costs from the ledger's debits."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from apps.admin_api import buckets, ids, presenters
from apps.admin_api import serializers as shapes
from apps.admin_api.base import AdminAPIView, documented, render, responses
from apps.billing.selectors import (
    CostBucketRow,
    active_holds_for,
    credit_account_for,
    credit_grants_for,
    usage_debits_buckets,
)
from apps.protocol.errors import invalid_value
from apps.usage.endpoints import (
    AUDIO_SPEECH_ENDPOINTS,
    AUDIO_TRANSCRIPTION_ENDPOINTS,
    COMPLETIONS_ENDPOINTS,
    EMBEDDINGS_ENDPOINTS,
)
from apps.usage.selectors import UsageBucketRow, usage_buckets


def _key_pks(public_ids: list[str]) -> list[int]:
    pks = [ids.pk_of(ids.API_KEY, public_id) for public_id in public_ids]
    if None in pks:
        raise invalid_value(
            "`api_key_ids` takes ids such as key_12.", param="api_key_ids", code="invalid_value"
        )
    return [pk for pk in pks if pk is not None]


def _group_by(names: list[str]) -> list[str]:
    # `user` is the name for OpenAI's `user_id`; both group by the request's `user`.
    return list(dict.fromkeys("user_id" if name == "user" else name for name in names))


def _grouped(row: Any, group_by: list[str]) -> dict[str, Any]:
    """The group columns of a result: the value when grouped by it, else null (as OpenAI)."""
    return {
        "project_id": None,
        "api_key_id": presenters.key_public_id(row.api_key_id)
        if "api_key_id" in group_by
        else None,
        "model": row.model if "model" in group_by else None,
        "user_id": (row.user_id or None) if "user_id" in group_by else None,
    }


def _completions_result(row: UsageBucketRow, group_by: list[str]) -> dict[str, Any]:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": row.prompt_tokens,
        "input_cached_tokens": row.cached_tokens,
        "output_tokens": row.completion_tokens,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": row.requests,
        "batch": None,
        **_grouped(row, group_by),
    }


def _embeddings_result(row: UsageBucketRow, group_by: list[str]) -> dict[str, Any]:
    return {
        "object": "organization.usage.embeddings.result",
        "input_tokens": row.prompt_tokens,
        "num_model_requests": row.requests,
        **_grouped(row, group_by),
    }


# The audio endpoints record their billed units as prompt_tokens (apps/usage/endpoints.py).
def _audio_speeches_result(row: UsageBucketRow, group_by: list[str]) -> dict[str, Any]:
    return {
        "object": "organization.usage.audio_speeches.result",
        "characters": row.prompt_tokens,
        "num_model_requests": row.requests,
        **_grouped(row, group_by),
    }


def _audio_transcriptions_result(row: UsageBucketRow, group_by: list[str]) -> dict[str, Any]:
    return {
        "object": "organization.usage.audio_transcriptions.result",
        "seconds": row.prompt_tokens,
        "num_model_requests": row.requests,
        **_grouped(row, group_by),
    }


class _UsageView(AdminAPIView):
    """One family of endpoints in OpenAI's usage buckets, from the rollups (exact to the token)."""

    endpoints: tuple[str, ...] = ()
    present: Any = None
    page_serializer: Any = None

    def get(self, request: Request) -> Response:
        query = self.validated(shapes.UsageQuerySerializer, request.query_params)
        width = buckets.USAGE_WIDTHS[query["bucket_width"]]
        window = buckets.window_for(query=query, width=width)
        group_by = _group_by(query["group_by"])
        rows = usage_buckets(
            organization_id=self.identity.organization_id,
            start=window.start_moment,
            end=window.end_moment,
            width=width.trunc,
            endpoints=self.endpoints,
            group_by=group_by,
            models=query["models"],
            api_key_ids=_key_pks(query["api_key_ids"]),
        )
        present = type(self).present
        body = buckets.page(
            window=window, rows=rows, start_of=lambda row: row.bucket_start,
            result=lambda row: present(row, group_by),
        )  # fmt: skip
        return render(self.page_serializer, body)


class UsageCompletionsView(_UsageView):
    endpoints = COMPLETIONS_ENDPOINTS
    present = _completions_result
    page_serializer = shapes.UsageCompletionsPageSerializer

    @documented(
        operation_id="usage-completions",
        parameters=[shapes.UsageQuerySerializer],
        responses=responses(200, shapes.UsageCompletionsPageSerializer),
    )
    def get(self, request: Request) -> Response:
        return super().get(request)


class UsageEmbeddingsView(_UsageView):
    endpoints = EMBEDDINGS_ENDPOINTS
    present = _embeddings_result
    page_serializer = shapes.UsageEmbeddingsPageSerializer

    @documented(
        operation_id="usage-embeddings",
        parameters=[shapes.UsageQuerySerializer],
        responses=responses(200, shapes.UsageEmbeddingsPageSerializer),
    )
    def get(self, request: Request) -> Response:
        return super().get(request)


class UsageAudioSpeechesView(_UsageView):
    endpoints = AUDIO_SPEECH_ENDPOINTS
    present = _audio_speeches_result
    page_serializer = shapes.UsageAudioSpeechesPageSerializer

    @documented(
        operation_id="usage-audio-speeches",
        parameters=[shapes.UsageQuerySerializer],
        responses=responses(200, shapes.UsageAudioSpeechesPageSerializer),
    )
    def get(self, request: Request) -> Response:
        return super().get(request)


class UsageAudioTranscriptionsView(_UsageView):
    endpoints = AUDIO_TRANSCRIPTION_ENDPOINTS
    present = _audio_transcriptions_result
    page_serializer = shapes.UsageAudioTranscriptionsPageSerializer

    @documented(
        operation_id="usage-audio-transcriptions",
        parameters=[shapes.UsageQuerySerializer],
        responses=responses(200, shapes.UsageAudioTranscriptionsPageSerializer),
    )
    def get(self, request: Request) -> Response:
        return super().get(request)


def _costs_result(row: CostBucketRow, group_by: list[str]) -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": presenters.amount(row.amount_micros),
        "line_item": row.model if "line_item" in group_by else None,
        "project_id": None,
        "api_key_id": presenters.key_public_id(row.api_key_id)
        if "api_key_id" in group_by
        else None,
        "quantity": None,
        "quantity_unit": None,
    }


class CostsView(AdminAPIView):
    @documented(
        operation_id="usage-costs",
        parameters=[shapes.CostsQuerySerializer],
        responses=responses(200, shapes.CostsPageSerializer),
    )
    def get(self, request: Request) -> Response:
        query = self.validated(shapes.CostsQuerySerializer, request.query_params)
        window = buckets.window_for(query=query, width=buckets.COSTS_WIDTHS["1d"])
        group_by = list(dict.fromkeys(query["group_by"]))
        rows = usage_debits_buckets(
            organization_id=self.identity.organization_id,
            start=window.start_moment,
            end=window.end_moment,
            group_by=group_by,
            api_key_ids=_key_pks(query["api_key_ids"]),
        )
        body = buckets.page(
            window=window, rows=rows, start_of=lambda row: row.day_start,
            result=lambda row: _costs_result(row, group_by),
        )  # fmt: skip
        return render(shapes.CostsPageSerializer, body)


class CreditsView(AdminAPIView):
    @documented(operation_id="retrieve-credits", responses=responses(200, shapes.CreditsSerializer))
    def get(self, request: Request) -> Response:
        identity = self.identity
        account = credit_account_for(organization=identity.membership.organization)
        body: dict[str, Any] = {
            "object": "organization.credits",
            "balance": presenters.amount(account.balance_micros),
            "held": presenters.amount(account.held_micros),
            "available": presenters.amount(account.available_micros),
            # As on the billing page: members see the balance, managers the movements too.
            "active_holds": None,
            "grants": None,
        }
        if identity.is_manager:
            holds = active_holds_for(organization_id=identity.organization_id)
            grants = credit_grants_for(organization_id=identity.organization_id)
            body["active_holds"] = [presenters.hold(hold) for hold in holds]
            body["grants"] = [presenters.grant(entry) for entry in grants]
        return render(shapes.CreditsSerializer, body)
