import csv
import io
from datetime import timedelta

from django.utils import timezone

from apps.dashboard.selectors import overview_for, usage_series
from apps.usage.models import UsageMinute, UsageRecord
from apps.usage.services import CallOutcome, usage_record_create
from apps.usage.tasks import usage_rollup_recent


def _record(organization, *, request_id, model="plugsky-nano", api_key=None, cost=123,  # type: ignore[no-untyped-def]
            is_tester=False, created_at=None, endpoint="chat.completions", prompt=10,
            completion=5):  # fmt: skip
    record = usage_record_create(
        outcome=CallOutcome(
            request_id=request_id,
            organization_id=organization.pk,
            api_key_id=api_key.pk if api_key else None,
            endpoint=endpoint,
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=250,
            status=200,
            is_tester=is_tester,
        ),
        cost_micros=cost,
    )
    if created_at is not None:
        UsageRecord.objects.filter(pk=record.pk).update(created_at=created_at)
    return record


def test_the_series_joins_rolled_up_days_with_the_calls_since(organization, api_key):
    key = api_key[0]
    two_days_ago = timezone.now() - timedelta(days=2)
    for number in range(3):
        _record(organization, request_id=f"req_old_{number}", api_key=key, model="plugsky-mini",
                cost=300, prompt=10, completion=5, created_at=two_days_ago)  # fmt: skip
    usage_rollup_recent()
    assert UsageMinute.objects.filter(organization=organization).count() == 1
    _record(organization, request_id="req_a", api_key=key)
    _record(organization, request_id="req_b", is_tester=True, model="plugsky-mini")

    by_model = usage_series(organization=organization, days=7, by="model")
    assert by_model.cost_micros["plugsky-mini"] == [0, 0, 0, 0, 900, 0, 123]
    assert by_model.cost_micros["plugsky-nano"][-1] == 123
    assert (by_model.requests, by_model.total_cost_micros, by_model.total_tokens) == (5, 1146, 75)

    by_key = usage_series(organization=organization, days=7, by="key")
    assert set(by_key.tokens) == {f"test key ({key.display})", "Tester"}
    assert by_key.cost_micros[f"test key ({key.display})"] == [0, 0, 0, 0, 900, 0, 123]


def test_the_usage_page_shows_recent_requests_and_tester_traffic(client, owner, organization):
    _record(organization, request_id="req_tester_1", is_tester=True)
    client.force_login(owner)
    page = client.get(f"/dashboard/{organization.pk}/usage/").content.decode()
    assert 'data-request-id="req_tester_1"' in page
    assert ">Tester<" in page
    assert 'id="usage-chart-data"' in page
    partial = client.get(f"/dashboard/{organization.pk}/usage/requests/").content.decode()
    assert "req_tester_1" in partial and "<html" not in partial


def test_csv_export_holds_the_period_of_this_organization_only(
    client, owner, organization, outsider, api_key
):
    from apps.accounts.selectors import personal_organization_for

    _record(organization, request_id="req_recent", api_key=api_key[0], cost=1_234_567)
    _record(organization, request_id="req_old", created_at=timezone.now() - timedelta(days=40))
    _record(personal_organization_for(user=outsider), request_id="req_someone_else")
    client.force_login(owner)
    response = client.get(f"/dashboard/{organization.pk}/usage/export.csv?days=30")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["request_id"] for row in rows] == ["req_recent"]
    assert rows[0]["cost_usd"] == "1.234567"
    assert rows[0]["api_key"] == f"test key ({api_key[0].display})"
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == ("10", "5")


def test_billing_history_is_shown_to_managers_only(client, owner, member, organization, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_never_called"
    client.force_login(owner)
    page = client.get(f"/billing/?organization={organization.pk}").content.decode()
    assert "Credit history" in page and "Trial grant" in page
    client.force_login(member)
    page = client.get(f"/billing/?organization={organization.pk}").content.decode()
    assert "Credit history" not in page
    assert "Ask an owner or admin" in page


def test_csv_export_neutralises_formulas_in_key_names(client, owner, organization):
    from apps.keys.services import api_key_create

    key, _ = api_key_create(organization=organization, created_by=owner, name="=HYPERLINK(1)")
    _record(organization, request_id="req_formula", api_key=key, cost=5)
    client.force_login(owner)
    response = client.get(f"/dashboard/{organization.pk}/usage/export.csv?days=30")
    [row] = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert row["api_key"] == f"'=HYPERLINK(1) ({key.display})"
    assert row["cost_usd"] == "0.000005"


def _audio_traffic(organization):  # type: ignore[no-untyped-def]
    _record(organization, request_id="req_chat", prompt=10, completion=5)
    _record(organization, request_id="req_heard", endpoint="audio.transcriptions",
            model="whisper-base", prompt=12, completion=0, cost=1_200)  # fmt: skip
    _record(organization, request_id="req_translated", endpoint="audio.translations",
            model="whisper-base", prompt=3, completion=0, cost=300)  # fmt: skip
    _record(organization, request_id="req_spoken", endpoint="audio.speech", model="hibari",
            prompt=1_345, completion=0, cost=1_345)  # fmt: skip


def _cell(page: str, request_id: str) -> str:
    row = page.split(f'data-request-id="{request_id}"', 1)[1].split("</tr>", 1)[0]
    return row.split("data-usage>", 1)[1].split("</td>", 1)[0]


def test_the_usage_page_shows_audio_in_seconds_and_characters_not_tokens(
    client, owner, organization
):
    _audio_traffic(organization)
    client.force_login(owner)
    page = client.get(f"/dashboard/{organization.pk}/usage/").content.decode()
    assert _cell(page, "req_chat") == "10 / 5"
    assert _cell(page, "req_heard") == "12 s"
    assert _cell(page, "req_translated") == "3 s"
    assert _cell(page, "req_spoken") == "1,345 chars"
    series = usage_series(organization=organization, days=7, by="model")
    assert (series.total_tokens, series.audio_seconds, series.speech_characters) == (15, 15, 1345)
    assert series.tokens["hibari"][-1] == 0 and series.cost_micros["hibari"][-1] == 1_345
    audio_card = page.split('data-stat="audio-seconds"', 1)[1].split("</div></div>", 1)[0]
    assert ">15 s<" in audio_card
    speech_card = page.split('data-stat="speech-characters"', 1)[1].split("</div></div>", 1)[0]
    assert ">1,345 characters<" in speech_card
    assert ">15<" in page.split(">Tokens<", 1)[1].split("</div></div>", 1)[0]
    overview = overview_for(organization=organization)
    assert (overview.requests_7d, overview.tokens_7d) == (4, 15)


def test_the_usage_page_without_audio_shows_no_audio_cards(client, owner, organization):
    _record(organization, request_id="req_chat")
    client.force_login(owner)
    page = client.get(f"/dashboard/{organization.pk}/usage/").content.decode()
    assert 'data-stat="audio-seconds"' not in page


def test_the_csv_puts_audio_in_its_own_columns(client, owner, organization):
    _audio_traffic(organization)
    client.force_login(owner)
    response = client.get(f"/dashboard/{organization.pk}/usage/export.csv?days=7")
    reader = csv.DictReader(io.StringIO(response.content.decode()))
    rows = {row["request_id"]: row for row in reader}
    amounts = {
        request_id: (row["prompt_tokens"], row["completion_tokens"], row["audio_seconds"],
                     row["speech_characters"])
        for request_id, row in rows.items()
    }  # fmt: skip
    assert amounts == {
        "req_chat": ("10", "5", "", ""),
        "req_heard": ("", "", "12", ""),
        "req_translated": ("", "", "3", ""),
        "req_spoken": ("", "", "", "1345"),
    }
    assert rows["req_spoken"]["cost_usd"] == "0.001345"
