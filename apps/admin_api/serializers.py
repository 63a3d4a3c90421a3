"""Request and response shapes of the admin API, in OpenAI's style; the OpenAPI document is
generated from these, and the views render every answer through them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts.models import Role

_ROLES = [role.value for role in Role]


def _constant(value: str) -> serializers.CharField:
    """A field that always holds `value` (an object's type): one-value enum in the document."""
    documented = extend_schema_field({"type": "string", "enum": [value]})
    return documented(type("Constant", (serializers.CharField,), {}))(default=value)


class CommaListField(serializers.ListField):
    """A query list sent as `x=a&x=b`, `x[]=a` or `x=a,b`: what clients of OpenAI's API send."""

    def get_value(self, dictionary: Any) -> Any:
        values: list[str] = []
        for name in (self.field_name, f"{self.field_name}[]"):
            if hasattr(dictionary, "getlist"):
                values.extend(dictionary.getlist(name))
        if not values:
            return serializers.empty
        return [part for value in values for part in value.split(",") if part]


# --- Shared --------------------------------------------------------------------------------------


class AmountSerializer(serializers.Serializer):
    value = serializers.FloatField()
    currency = _constant("usd")


class DeletedSerializer(serializers.Serializer):
    object = serializers.CharField()
    id = serializers.CharField()
    deleted = serializers.BooleanField()


class ListQuerySerializer(serializers.Serializer):
    after = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)


class _ListSerializer(serializers.Serializer):
    object = _constant("list")
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


# --- API keys ------------------------------------------------------------------------------------


class OwnerUserSerializer(serializers.Serializer):
    id = serializers.CharField()
    email = serializers.CharField()
    name = serializers.CharField(allow_null=True)


class OwnerSerializer(serializers.Serializer):
    type = _constant("user")
    user = OwnerUserSerializer()


class ApiKeySerializer(serializers.Serializer):
    object = _constant("organization.api_key")
    id = serializers.CharField()
    name = serializers.CharField()
    redacted_value = serializers.CharField()
    created_at = serializers.IntegerField()
    last_used_at = serializers.IntegerField(allow_null=True)
    allowed_models = serializers.ListField(child=serializers.CharField())
    monthly_spend_limit = AmountSerializer(allow_null=True)
    owner = OwnerSerializer(allow_null=True)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    value = serializers.CharField(help_text="The full key: shown this once, never again.")


class ApiKeyListSerializer(_ListSerializer):
    data = ApiKeySerializer(many=True)


class SpendLimitInputSerializer(serializers.Serializer):
    value = serializers.DecimalField(
        max_digits=15, decimal_places=6, min_value=Decimal(0), coerce_to_string=False
    )
    currency = serializers.ChoiceField(choices=["usd"], default="usd")


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, default=list, max_length=100
    )
    monthly_spend_limit = SpendLimitInputSerializer(required=False, allow_null=True, default=None)


class ApiKeyUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, max_length=100
    )
    monthly_spend_limit = SpendLimitInputSerializer(required=False, allow_null=True)


# --- Users and invites ---------------------------------------------------------------------------


class UserSerializer(serializers.Serializer):
    object = _constant("organization.user")
    id = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    email = serializers.CharField()
    role = serializers.ChoiceField(choices=_ROLES)
    added_at = serializers.IntegerField()


class UserListSerializer(_ListSerializer):
    data = UserSerializer(many=True)


class UserRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=_ROLES)


class InviteSerializer(serializers.Serializer):
    object = _constant("organization.invite")
    id = serializers.CharField()
    email = serializers.CharField()
    role = serializers.ChoiceField(choices=_ROLES)
    status = serializers.ChoiceField(choices=["accepted", "expired", "pending", "revoked"])
    created_at = serializers.IntegerField()
    expires_at = serializers.IntegerField(allow_null=True)
    accepted_at = serializers.IntegerField(allow_null=True)


class InviteListSerializer(_ListSerializer):
    data = InviteSerializer(many=True)


class InviteCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=_ROLES, default=Role.MEMBER.value)


# --- Usage and costs -----------------------------------------------------------------------------


class _BucketQuerySerializer(serializers.Serializer):
    start_time = serializers.IntegerField(min_value=0)
    end_time = serializers.IntegerField(min_value=0, required=False)
    page = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1)
    api_key_ids = CommaListField(child=serializers.CharField(), required=False, default=list)


class UsageQuerySerializer(_BucketQuerySerializer):
    bucket_width = serializers.ChoiceField(choices=["1m", "1h", "1d"], default="1d")
    group_by = CommaListField(
        child=serializers.ChoiceField(choices=["model", "api_key_id", "user_id", "user"]),
        required=False,
        default=list,
    )
    models = CommaListField(child=serializers.CharField(), required=False, default=list)


class CostsQuerySerializer(_BucketQuerySerializer):
    bucket_width = serializers.ChoiceField(choices=["1d"], default="1d")
    group_by = CommaListField(
        child=serializers.ChoiceField(choices=["line_item", "api_key_id"]),
        required=False,
        default=list,
    )


class _GroupedSerializer(serializers.Serializer):
    project_id = serializers.CharField(allow_null=True)
    api_key_id = serializers.CharField(allow_null=True)


class UsageCompletionsResultSerializer(_GroupedSerializer):
    object = _constant("organization.usage.completions.result")
    input_tokens = serializers.IntegerField()
    input_cached_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    input_audio_tokens = serializers.IntegerField()
    output_audio_tokens = serializers.IntegerField()
    num_model_requests = serializers.IntegerField()
    user_id = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    batch = serializers.BooleanField(allow_null=True)


class UsageEmbeddingsResultSerializer(_GroupedSerializer):
    object = _constant("organization.usage.embeddings.result")
    input_tokens = serializers.IntegerField()
    num_model_requests = serializers.IntegerField()
    user_id = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)


class UsageAudioSpeechesResultSerializer(_GroupedSerializer):
    object = _constant("organization.usage.audio_speeches.result")
    characters = serializers.IntegerField()
    num_model_requests = serializers.IntegerField()
    user_id = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)


class UsageAudioTranscriptionsResultSerializer(_GroupedSerializer):
    object = _constant("organization.usage.audio_transcriptions.result")
    seconds = serializers.IntegerField()
    num_model_requests = serializers.IntegerField()
    user_id = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)


class CostsResultSerializer(_GroupedSerializer):
    object = _constant("organization.costs.result")
    amount = AmountSerializer()
    line_item = serializers.CharField(allow_null=True)
    quantity = serializers.FloatField(allow_null=True)
    quantity_unit = serializers.CharField(allow_null=True)


def _page_of(result: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    bucket = type(
        f"{name}Bucket",
        (serializers.Serializer,),
        {
            "object": _constant("bucket"),
            "start_time": serializers.IntegerField(),
            "end_time": serializers.IntegerField(),
            "results": result(many=True),
        },
    )
    return type(
        f"{name}Page",
        (serializers.Serializer,),
        {
            "object": _constant("page"),
            "data": bucket(many=True),
            "has_more": serializers.BooleanField(),
            "next_page": serializers.CharField(allow_null=True),
        },
    )


UsageCompletionsPageSerializer = _page_of(UsageCompletionsResultSerializer, "UsageCompletions")
UsageEmbeddingsPageSerializer = _page_of(UsageEmbeddingsResultSerializer, "UsageEmbeddings")
UsageAudioSpeechesPageSerializer = _page_of(
    UsageAudioSpeechesResultSerializer, "UsageAudioSpeeches"
)
UsageAudioTranscriptionsPageSerializer = _page_of(
    UsageAudioTranscriptionsResultSerializer, "UsageAudioTranscriptions"
)
CostsPageSerializer = _page_of(CostsResultSerializer, "Costs")


# --- Credits -------------------------------------------------------------------------------------


class CreditHoldSerializer(serializers.Serializer):
    object = _constant("organization.credit_hold")
    id = serializers.CharField(help_text="The request id of the call in flight.")
    api_key_id = serializers.CharField(allow_null=True)
    amount = AmountSerializer()
    created_at = serializers.IntegerField()
    expires_at = serializers.IntegerField()


class CreditGrantSerializer(serializers.Serializer):
    object = _constant("organization.credit_grant")
    id = serializers.CharField()
    kind = serializers.CharField()
    amount = AmountSerializer()
    description = serializers.CharField()
    created_at = serializers.IntegerField()


class CreditsSerializer(serializers.Serializer):
    object = _constant("organization.credits")
    balance = AmountSerializer()
    held = AmountSerializer()
    available = AmountSerializer()
    active_holds = CreditHoldSerializer(many=True, allow_null=True)
    grants = CreditGrantSerializer(many=True, allow_null=True)


class ErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
