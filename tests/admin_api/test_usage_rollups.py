"""The usage endpoints read the per-minute rollups up to their watermark and the records after it:
the same figures, exact to the token, before the rollup task ran, after it, and with the watermark
in the middle of a bucket; audio in its own units, on OpenAI's audio usage endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.keys.services import api_key_create
from apps.usage.models import UsageDay, UsageMinute, UsageRecord
from apps.usage.rollups import SETTLE_MARGIN, usage_rollup_advance
from apps.usage.selectors import usage_watermark
from apps.usage.tasks import usage_rollup_recent
from tests.admin_api.calls import DAY, NEXT_DAY, Call, known_calls, settle
from tests.billing.helpers import set_balance

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
TEN = DAY + 10 * HOUR
START = int(DAY.timestamp())
TWO_DAYS = {"start_time": START, "end_time": int(NEXT_DAY.timestamp()) + 86400}


def _at(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture
def keys(organization, owner):  # type: ignore[no-untyped-def]
    """The admin tests' known calls, plus the other completion wire formats and audio."""
    key_a = api_key_create(organization=organization, created_by=owner, name="a")[0]
    key_b = api_key_create(organization=organization, created_by=owner, name="b")[0]
    set_balance(organization, 10_000_000)
    minute = timedelta(minutes=1)
    more = [
        Call(TEN + 5 * minute + timedelta(seconds=30), key_a, "m-chat", 11, 2, 5,
             endpoint="responses", user="alice", cached_tokens=3),
        Call(TEN + 40 * minute + timedelta(seconds=45), key_b, "m-claude", 13, 4, 6,
             endpoint="messages"),
        # Audio: prompt_tokens are the characters spoken, or the seconds heard.
        Call(TEN + 30 * minute, key_a, "hibari", 345, 0, 345, endpoint="audio.speech"),
        Call(TEN + 31 * minute, key_a, "whisper-base", 12, 0, 120,
             endpoint="audio.transcriptions"),
        Call(TEN + 32 * minute, key_b, "whisper-base", 8, 0, 80, endpoint="audio.translations"),
        Call(DAY + 11 * HOUR, None, "hibari", 100, 0, 100, endpoint="audio.speech"),
    ]  # fmt: skip
    for call in [*known_calls(key_a, key_b), *more]:
        settle(organization, call)
    return key_a, key_b


def _queries(key_a: Any, key_b: Any) -> list[tuple[str, dict[str, Any]]]:
    ten, eleven = _at(TEN), _at(TEN + HOUR)
    return [
        ("usage/completions", {**TWO_DAYS}),
        ("usage/completions", {"start_time": ten, "end_time": ten + 4 * 3600,
                               "bucket_width": "1h", "group_by": "model,api_key_id,user"}),
        # Minutes, ending inside the minute of two calls: 10:40:00 counts, 10:40:45 does not.
        ("usage/completions", {"start_time": ten, "end_time": ten + 40 * 60 + 40,
                               "bucket_width": "1m", "group_by": "model"}),
        ("usage/completions", {**TWO_DAYS, "models": "m-chat", "group_by": "api_key_id"}),
        ("usage/embeddings", {**TWO_DAYS, "group_by": "model"}),
        ("usage/audio_speeches", {"start_time": ten, "end_time": ten + 2 * 3600,
                                  "bucket_width": "1h", "group_by": "api_key_id"}),
        ("usage/audio_transcriptions", {"start_time": ten, "end_time": eleven,
                                        "bucket_width": "1m", "group_by": "model",
                                        "api_key_ids": f"key_{key_a.pk},key_{key_b.pk}"}),
    ]  # fmt: skip


def _bodies(as_owner: Any, keys: Any) -> list[Any]:
    responses = [as_owner.get(path, **query) for path, query in _queries(*keys)]
    assert [response.status_code for response in responses] == [200] * len(responses)
    return [response.json() for response in responses]


def _results(body: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [bucket["results"] for bucket in body["data"]]


def test_the_figures_to_the_token_before_the_rollups_ran(as_owner, keys):  # type: ignore[no-untyped-def]
    key_a, key_b = keys
    assert usage_watermark().year == 1970  # nothing rolled up: every figure from the records
    daily, hourly, minutes, chat_by_key, embeddings, speeches, transcriptions = _bodies(
        as_owner, keys
    )
    first_day = _results(daily)[0]
    # chat.completions, responses and messages; not embeddings, not audio.
    assert [(r["input_tokens"], r["input_cached_tokens"], r["output_tokens"],
             r["num_model_requests"]) for r in first_day] == [(181, 63, 34, 6)]  # fmt: skip
    ten = {(r["model"], r["api_key_id"], r["user_id"]): r["num_model_requests"]
           for r in _results(hourly)[0]}  # fmt: skip
    assert ten == {("m-chat", f"key_{key_a.pk}", "alice"): 2,
                   ("m-chat", f"key_{key_a.pk}", "bob"): 1,
                   ("m-claude", f"key_{key_b.pk}", None): 1}  # fmt: skip
    by_minute = {bucket["start_time"]: bucket["results"] for bucket in minutes["data"]}
    assert len(by_minute) == 41 and minutes["data"][-1]["end_time"] == _at(TEN) + 40 * 60 + 40
    assert [(r["model"], r["input_tokens"]) for r in by_minute[_at(TEN) + 5 * 60]] == [
        ("m-chat", 111)
    ]
    assert [(r["model"], r["input_tokens"]) for r in by_minute[_at(TEN) + 40 * 60]] == [
        ("m-chat", 50)  # the Messages call at 10:40:45 is after end_time
    ]
    assert [[r["input_tokens"] for r in day] for day in _results(chat_by_key)] == [
        [161, 0], [1000],
    ]  # fmt: skip
    assert _results(embeddings)[0][0]["input_tokens"] == 42
    assert [
        {r["api_key_id"]: (r["characters"], r["num_model_requests"]) for r in hour}
        for hour in _results(speeches)
    ] == [{f"key_{key_a.pk}": (345, 1)}, {None: (100, 1)}]
    assert speeches["data"][0]["results"][0]["object"] == "organization.usage.audio_speeches.result"
    heard = {b["start_time"]: b["results"] for b in transcriptions["data"] if b["results"]}
    assert {start - _at(TEN): [(r["model"], r["seconds"]) for r in results]
            for start, results in heard.items()} == {
        31 * 60: [("whisper-base", 12)], 32 * 60: [("whisper-base", 8)],
    }  # fmt: skip
    transcription = heard[_at(TEN) + 31 * 60][0]
    assert transcription["object"] == "organization.usage.audio_transcriptions.result"


@pytest.mark.parametrize(
    "watermark_at",
    [
        TEN + timedelta(minutes=20),  # mid-hour: 10:05 rolled up, 10:40 read from its records
        TEN + timedelta(minutes=31),  # between the two transcriptions of one hour
        TEN + timedelta(minutes=41),  # past 10:40:45, whose minute the 1m query cuts in two
        NEXT_DAY + 2 * HOUR,  # mid-day of the second day
    ],
)
def test_the_same_figures_with_the_watermark_in_a_bucket(as_owner, keys, watermark_at):  # type: ignore[no-untyped-def]
    before = _bodies(as_owner, keys)
    usage_rollup_advance(now=watermark_at + SETTLE_MARGIN)
    assert usage_watermark() == watermark_at
    assert UsageMinute.objects.filter(minute__lt=watermark_at).exists()
    assert UsageDay.objects.exists() is (watermark_at > NEXT_DAY)
    assert _bodies(as_owner, keys) == before


def test_the_same_figures_after_the_task_rolled_up_everything(as_owner, keys):  # type: ignore[no-untyped-def]
    before = _bodies(as_owner, keys)
    usage_rollup_recent()
    assert usage_watermark() > NEXT_DAY + 24 * HOUR
    assert _bodies(as_owner, keys) == before


def test_rolled_up_minutes_are_read_from_the_rollups(as_owner, keys):  # type: ignore[no-untyped-def]
    """A record changed behind the rollups' back shows only where the records are read."""
    hourly = {"start_time": _at(TEN), "end_time": _at(TEN + HOUR), "bucket_width": "1h"}
    usage_rollup_advance(now=TEN + timedelta(minutes=20) + SETTLE_MARGIN)
    for at in (TEN + timedelta(minutes=5), TEN + timedelta(minutes=40)):  # before, after 10:20
        UsageRecord.objects.filter(created_at=at).update(prompt_tokens=1_000_000)
    [[result]] = _results(as_owner.get("usage/completions", **hourly).json())
    # 10:05 (100) and 10:05:30 (11) from the rollups; 10:40 changed; 10:40:45 (13) from records.
    assert result["input_tokens"] == 100 + 11 + 1_000_000 + 13


def test_closed_days_are_read_from_the_day_rollups(as_owner, keys):  # type: ignore[no-untyped-def]
    """Day buckets sum the day rows; hour buckets the minute rows (changed here behind them)."""
    usage_rollup_recent()
    UsageMinute.objects.filter(minute=TEN + timedelta(minutes=5)).update(prompt_tokens=0)
    daily = as_owner.get("usage/completions", **TWO_DAYS).json()
    assert _results(daily)[0][0]["input_tokens"] == 181
    hourly = {"start_time": _at(TEN), "end_time": _at(TEN + HOUR), "bucket_width": "1h"}
    [[result]] = _results(as_owner.get("usage/completions", **hourly).json())
    assert result["input_tokens"] == 181 - 7 - 111  # without 10:05's 100 and 10:05:30's 11


def test_a_call_counts_the_moment_it_settles(as_owner, organization, keys):  # type: ignore[no-untyped-def]
    key_a, _ = keys
    usage_rollup_recent()
    now = datetime.now(UTC)
    query = {"start_time": _at(now) - 3600, "bucket_width": "1h", "group_by": "api_key_id"}
    assert [r for b in as_owner.get("usage/completions", **query).json()["data"]
            for r in b["results"]] == []  # fmt: skip
    settle(organization, Call(now, key_a, "m-chat", 321, 9, 77, cached_tokens=21))
    results = [r for b in as_owner.get("usage/completions", **query).json()["data"]
               for r in b["results"]]  # fmt: skip
    assert [(r["api_key_id"], r["input_tokens"], r["input_cached_tokens"], r["output_tokens"],
             r["num_model_requests"]) for r in results] == [
        (f"key_{key_a.pk}", 321, 21, 9, 1),
    ]  # fmt: skip
