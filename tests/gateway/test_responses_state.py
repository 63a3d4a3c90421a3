"""Stored responses: store, previous_response_id, GET, input_items, DELETE, and tenancy."""

import httpx
import pytest

from apps.responses.models import StoredResponse
from tests.gateway.test_responses_events import parse_named_events
from tests.openapi import validate_response

pytestmark = pytest.mark.xdist_group("live")


def _create(api, **body):
    request = {"model": "plugsky-nano", "temperature": 0, "max_output_tokens": 16, **body}
    response = api.post("/responses", json=request)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def outsider_api(live_server_url, transactional_db):
    """A client of another organization on the same server."""
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create
    from apps.onboarding.services import user_create

    user = user_create(email="other@example.com", password="another horse battery staple")
    organization = personal_organization_for(user=user)
    _, raw_key = api_key_create(organization=organization, created_by=user, name="other")
    with httpx.Client(
        base_url=f"{live_server_url}/v1",
        timeout=120,
        headers={"Authorization": f"Bearer {raw_key}"},
    ) as client:
        yield client


def test_a_stored_response_is_retrieved_as_it_was_answered(api, live_key):
    organization, _ = live_key
    body = _create(api, input="Say hi.")
    stored = StoredResponse.objects.get(pk=body["id"])
    assert stored.organization_id == organization.pk and stored.model == "plugsky-nano"
    response = api.get(f"/responses/{body['id']}")
    assert response.status_code == 200
    validate_response("get", f"/responses/{body['id']}", 200, response.json())
    assert response.json() == body


def test_a_streamed_response_is_stored_before_its_terminal_event(api):
    request = {
        "model": "plugsky-nano",
        "input": "Say hi.",
        "max_output_tokens": 16,
        "temperature": 0,
        "stream": True,
    }
    with api.stream("POST", "/responses", json=request) as response:
        events = parse_named_events(response.read().decode())
    final = events[-1]["response"]
    assert api.get(f"/responses/{final['id']}").json() == final
    follow_up = _create(api, input="Again.", previous_response_id=final["id"])
    assert follow_up["previous_response_id"] == final["id"]


def test_store_false_keeps_nothing(api):
    body = _create(api, input="Say hi.", store=False)
    assert body["store"] is False
    assert not StoredResponse.objects.filter(pk=body["id"]).exists()
    assert api.get(f"/responses/{body['id']}").status_code == 404
    response = api.post(
        "/responses",
        json={"model": "plugsky-nano", "input": "And?", "previous_response_id": body["id"]},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": f"Previous response with id '{body['id']}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


def test_previous_response_id_continues_the_conversation(api):
    first = _create(api, input="My name is Ada. Reply with one word: OK.")
    second = _create(
        api, input="What is my name?", previous_response_id=first["id"], max_output_tokens=20
    )
    assert second["previous_response_id"] == first["id"]
    # The earlier turn is in the prompt: the same conversation sent whole costs as many tokens.
    replayed = _create(
        api,
        max_output_tokens=20,
        input=[
            {"role": "user", "content": "My name is Ada. Reply with one word: OK."},
            *first["output"],
            {"role": "user", "content": "What is my name?"},
        ],
    )
    assert second["usage"]["input_tokens"] == replayed["usage"]["input_tokens"]
    assert second["output"][0]["content"] == replayed["output"][0]["content"]
    third = _create(api, input="Repeat my name.", previous_response_id=second["id"])
    three_turns = StoredResponse.objects.get(pk=third["id"])
    assert [item["type"] for item in three_turns.prior_items] == ["message"] * 4


def test_instructions_are_not_carried_over(api):
    first = _create(api, input="Hi.", instructions="Always answer in French.")
    second = _create(api, input="Hi again.", previous_response_id=first["id"])
    assert second["instructions"] is None
    prior = StoredResponse.objects.get(pk=second["id"]).prior_items
    assert all(item["role"] != "system" for item in prior)


def test_input_items_are_listed_with_openai_pagination(api):
    items = [{"role": "user", "content": f"Line {number}."} for number in range(5)]
    body = _create(api, input=items)
    path = f"/responses/{body['id']}/input_items"
    listed = api.get(path).json()
    assert listed["object"] == "list" and listed["has_more"] is False
    texts = [item["content"] for item in listed["data"]]
    assert texts == [[{"type": "input_text", "text": f"Line {n}."}] for n in reversed(range(5))]
    assert all(
        item["type"] == "message" and item["status"] == "completed" and item["role"] == "user"
        for item in listed["data"]
    )
    ids = [item["id"] for item in reversed(listed["data"])]  # oldest first
    assert listed["first_id"] == ids[-1] and listed["last_id"] == ids[0]
    page = api.get(path, params={"order": "asc", "limit": 2}).json()
    assert [item["id"] for item in page["data"]] == ids[:2] and page["has_more"] is True
    page = api.get(path, params={"order": "asc", "limit": 2, "after": ids[1]}).json()
    assert [item["id"] for item in page["data"]] == ids[2:4] and page["has_more"] is True
    page = api.get(path, params={"order": "asc", "before": ids[2]}).json()
    assert [item["id"] for item in page["data"]] == ids[:2] and page["has_more"] is False


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "msg_nope"}, "after"),
    ],
)
def test_bad_list_parameters_are_a_400(api, params, param):
    body = _create(api, input="Hi.")
    response = api.get(f"/responses/{body['id']}/input_items", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_delete_removes_the_response(api):
    body = _create(api, input="Hi.")
    response = api.delete(f"/responses/{body['id']}")
    assert response.status_code == 200
    assert response.json() == {"id": body["id"], "object": "response", "deleted": True}
    assert not StoredResponse.objects.filter(pk=body["id"]).exists()
    assert api.get(f"/responses/{body['id']}").status_code == 404
    assert api.delete(f"/responses/{body['id']}").status_code == 404


def test_unknown_ids_are_a_404_in_the_envelope(api):
    for method, path in [
        ("GET", "/responses/resp_nope"),
        ("DELETE", "/responses/resp_nope"),
        ("GET", "/responses/resp_nope/input_items"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "message": "Response with id 'resp_nope' not found.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }


def test_another_organizations_response_is_unknown_to_it(api, outsider_api):
    body = _create(api, input="My secret is 1234.")
    rid = body["id"]
    expected = {
        "error": {
            "message": f"Response with id '{rid}' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    for method, path in [
        ("GET", f"/responses/{rid}"),
        ("GET", f"/responses/{rid}/input_items"),
        ("DELETE", f"/responses/{rid}"),
    ]:
        response = outsider_api.request(method, path)
        assert (response.status_code, response.json()) == (404, expected)
    response = outsider_api.post(
        "/responses", json={"model": "plugsky-nano", "input": "Go on.", "previous_response_id": rid}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "previous_response_not_found"
    assert "1234" not in response.text
    # Nothing changed for the owner.
    assert api.get(f"/responses/{rid}").json() == body
    assert StoredResponse.objects.filter(pk=rid).count() == 1
