"""Reads for the dashboard pages: one organization's credit, keys, usage, members."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from apps.accounts.models import Invitation, Membership, Organization
from apps.billing.models import EntryKind, LedgerEntry, SpendLimit, TopUp, TopUpStatus
from apps.billing.selectors import credit_account_for, month_start
from apps.keys.models import AdminKey, APIKey
from apps.usage.endpoints import (
    AUDIO_SPEECH_ENDPOINTS,
    AUDIO_TRANSCRIPTION_ENDPOINTS,
    Unit,
    unit_of,
)
from apps.usage.models import UsageRecord
from apps.usage.selectors import UsageBucketRow, usage_buckets

TESTER_LABEL = "Tester"
NO_KEY_LABEL = "Deleted key"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _month_start_dt(now: datetime) -> datetime:
    return _day_start(month_start(now))


# --- Overview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    balance_micros: int
    held_micros: int
    trial_micros: int
    trial_granted_at: datetime | None
    month_spend_micros: int
    requests_7d: int
    tokens_7d: int
    active_keys: int
    has_requests: bool


def overview_for(*, organization: Organization) -> Overview:
    now = timezone.now()
    account = credit_account_for(organization=organization)
    trial = LedgerEntry.objects.filter(
        organization=organization, kind=EntryKind.TRIAL_GRANT
    ).first()
    records = UsageRecord.objects.filter(organization=organization)
    # Audio calls count seconds or characters in prompt_tokens: not tokens.
    is_tokens = ~Q(endpoint__in=[*AUDIO_SPEECH_ENDPOINTS, *AUDIO_TRANSCRIPTION_ENDPOINTS])
    week = records.filter(created_at__gte=now - timedelta(days=7)).aggregate(
        requests=Count("pk"),
        prompt=Sum("prompt_tokens", filter=is_tokens),
        completion=Sum("completion_tokens", filter=is_tokens),
    )
    month = records.filter(created_at__gte=_month_start_dt(now)).aggregate(cost=Sum("cost_micros"))
    return Overview(
        balance_micros=account.balance_micros,
        held_micros=account.held_micros,
        trial_micros=trial.amount_micros if trial else 0,
        trial_granted_at=trial.created_at if trial else None,
        month_spend_micros=month["cost"] or 0,
        requests_7d=week["requests"],
        tokens_7d=(week["prompt"] or 0) + (week["completion"] or 0),
        active_keys=APIKey.objects.filter(organization=organization, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .count(),
        has_requests=week["requests"] > 0 or records.exists(),
    )


# --- Keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    key: APIKey
    monthly_limit_micros: int | None
    month_spend_micros: int

    @property
    def is_active(self) -> bool:
        return self.key.is_usable_at(timezone.now())


def keys_for(*, organization: Organization) -> list[KeyRow]:
    """The organization's keys, newest first, with their limit and this month's spend."""
    keys = list(
        APIKey.objects.filter(organization=organization)
        .select_related("created_by")
        .order_by(F("revoked_at").asc(nulls_first=True), "-created_at")  # active keys first
    )
    limits = dict(
        SpendLimit.objects.filter(organization=organization, api_key__isnull=False).values_list(
            "api_key_id", "monthly_limit_micros"
        )
    )
    spend = dict(
        UsageRecord.objects.filter(
            organization=organization, created_at__gte=_month_start_dt(timezone.now())
        )
        .exclude(api_key__isnull=True)
        .values("api_key_id")
        .annotate(total=Sum("cost_micros"))
        .values_list("api_key_id", "total")
    )
    return [KeyRow(key, limits.get(key.pk), spend.get(key.pk) or 0) for key in keys]


def key_of(*, organization: Organization, key_id: int) -> APIKey | None:
    return APIKey.objects.filter(organization=organization, pk=key_id).first()


# --- Usage ---------------------------------------------------------------------------------------


@dataclass
class Series:
    """Per-day values for each group (a model, or a key), ready for a stacked bar chart.

    Tokens count the token endpoints only; audio calls add their own units (seconds of audio
    transcribed or translated, characters spoken), which are not tokens.
    """

    days: list[date]
    cost_micros: dict[str, list[int]] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    requests: int = 0
    total_cost_micros: int = 0
    total_tokens: int = 0
    audio_seconds: int = 0
    speech_characters: int = 0

    def add(self, day: date, group: str, *, row: UsageBucketRow) -> None:
        index = (day - self.days[0]).days
        if not 0 <= index < len(self.days):
            return
        unit = unit_of(row.endpoint or "")
        tokens = row.prompt_tokens + row.completion_tokens if unit == Unit.TOKENS else 0
        for table, value in ((self.cost_micros, row.cost_micros), (self.tokens, tokens)):
            table.setdefault(group, [0] * len(self.days))[index] += value
        self.requests += row.requests
        self.total_cost_micros += row.cost_micros
        self.total_tokens += tokens
        if unit == Unit.SECONDS:
            self.audio_seconds += row.prompt_tokens
        elif unit == Unit.CHARACTERS:
            self.speech_characters += row.prompt_tokens


def _key_labels(organization: Organization) -> dict[int | None, str]:
    labels: dict[int | None, str] = {None: TESTER_LABEL}
    for pk, name, display in APIKey.objects.filter(organization=organization).values_list(
        "pk", "name", "display"
    ):
        labels[pk] = f"{name} ({display})"
    return labels


def usage_series(*, organization: Organization, days: int, by: str) -> Series:
    """Spend, tokens and audio units per UTC day, by model or by key, over the last `days` days,
    from the usage rollups (exact: the minutes since the last rollup run come from the records)."""
    today = timezone.now().astimezone(UTC).date()
    series = Series(days=[today - timedelta(days=offset) for offset in range(days - 1, -1, -1)])
    labels = _key_labels(organization) if by == "key" else {}
    rows = usage_buckets(
        organization_id=organization.pk,
        start=_day_start(series.days[0]),
        end=_day_start(today + timedelta(days=1)),
        width="day",
        group_by=("api_key_id" if by == "key" else "model", "endpoint"),
    )
    for row in rows:
        group = labels.get(row.api_key_id, NO_KEY_LABEL) if by == "key" else str(row.model)
        series.add(row.bucket_start.astimezone(UTC).date(), group, row=row)
    return series


def recent_requests_for(*, organization: Organization, limit: int = 25) -> QuerySet[UsageRecord]:
    return (
        UsageRecord.objects.filter(organization=organization)
        .select_related("api_key")
        .order_by("-created_at")[:limit]
    )


def usage_records_since(*, organization: Organization, since: datetime) -> Iterator[UsageRecord]:
    """Every record of the organization since `since`, oldest first (for CSV export)."""
    return (
        UsageRecord.objects.filter(organization=organization, created_at__gte=since)
        .select_related("api_key")
        .order_by("created_at")
        .iterator(chunk_size=2000)
    )


# --- Billing -------------------------------------------------------------------------------------


def ledger_for(*, organization: Organization, limit: int = 100) -> QuerySet[LedgerEntry]:
    """The latest ledger entries; usage is summarized per day instead (see usage_debits_by_day)."""
    return (
        LedgerEntry.objects.filter(organization=organization)
        .exclude(kind=EntryKind.USAGE)
        .order_by("-created_at")[:limit]
    )


def usage_debits_by_day(*, organization: Organization, days: int = 30) -> list[tuple[date, int]]:
    """Usage debits summed per UTC day, newest first: the ledger's usage lines, readable."""
    since = timezone.now() - timedelta(days=days)
    totals: dict[date, int] = defaultdict(int)
    for created_at, amount in LedgerEntry.objects.filter(
        organization=organization, kind=EntryKind.USAGE, created_at__gte=since
    ).values_list("created_at", "amount_micros"):
        totals[created_at.astimezone(UTC).date()] += amount
    return sorted(totals.items(), reverse=True)


def receipts_for(*, organization: Organization) -> QuerySet[TopUp]:
    return TopUp.objects.filter(organization=organization, status=TopUpStatus.COMPLETED).order_by(
        "-completed_at"
    )


def receipt_of(*, organization: Organization, topup_id: int) -> TopUp | None:
    return (
        TopUp.objects.select_related("created_by", "organization")
        .filter(organization=organization, pk=topup_id, status=TopUpStatus.COMPLETED)
        .first()
    )


# --- Members -------------------------------------------------------------------------------------


def members_for(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("created_at", "pk")
    )


def member_of(*, organization: Organization, membership_id: int) -> Membership | None:
    return (
        Membership.objects.select_related("user", "organization")
        .filter(organization=organization, pk=membership_id)
        .first()
    )


def open_invitations_for(*, organization: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        organization=organization, accepted_at__isnull=True, revoked_at__isnull=True
    ).order_by("-created_at")


def invitation_of(*, organization: Organization, invitation_id: int) -> Invitation | None:
    return (
        Invitation.objects.select_related("organization")
        .filter(organization=organization, pk=invitation_id)
        .first()
    )


def organizations_of(*, user_id: int) -> QuerySet[Membership]:
    """The user's memberships with their organizations, personal first (for the switcher)."""
    return (
        Membership.objects.filter(user_id=user_id)
        .select_related("organization")
        .order_by("-organization__is_personal", "organization__name")
    )


def admin_keys_for(*, organization: Organization) -> QuerySet[AdminKey]:
    """The organization's live admin keys, newest first."""
    return (
        AdminKey.objects.filter(organization=organization, revoked_at__isnull=True)
        .select_related("created_by")
        .order_by("-created_at", "-pk")
    )


def admin_key_of(*, organization: Organization, admin_key_id: int) -> AdminKey | None:
    return AdminKey.objects.filter(
        organization=organization, pk=admin_key_id, revoked_at__isnull=True
    ).first()
