"""Admission control: calls in flight per process (503) and per organization (429), released when
the call really ends; an unavailable database or Redis answers 503, never 500."""

import asyncio
import json
import os
import socket
import threading
import time

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError
from django.test import override_settings

from apps.gateway.admission import Admission, in_flight_count, organization_slots_key
from plugsky_site.redis_pool import redis_client
from tests.live import run_server

SERVICE_UNAVAILABLE = {
    "message": "The server is temporarily unable to handle your request. Please retry shortly.",
    "type": "server_error",
    "param": None,
    "code": "service_unavailable",
}


def _get(client, raw_key, path="/v1/models"):
    return client.get(path, headers={"Authorization": f"Bearer {raw_key}"})


def _slots(organization_id):
    return redis_client().zcard(organization_slots_key(organization_id))


def _rate_limit_headers(response):
    return {name: value for name, value in response.items() if name.startswith("x-ratelimit-")}


def test_a_full_process_answers_503_before_any_work(client, api_key):
    _, raw_key = api_key
    held = [Admission() for _ in range(2)]
    base = in_flight_count()
    with override_settings(GATEWAY_MAX_IN_FLIGHT=base + 2):
        for admission in held:
            admission.take_process_slot()
        refused = _get(client, raw_key)
        async_to_sync(held[0].release)()
        admitted = _get(client, raw_key)
        async_to_sync(held[1].release)()
    assert refused.status_code == 503
    assert refused["Content-Type"] == "application/json"
    assert refused["Retry-After"] == "1"
    assert refused.json() == {
        "error": {
            "message": "The server is currently overloaded with other requests. "
            "Please retry your request shortly.",
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }
    }
    # Refused before authentication: no limit counted it, no header claims one did.
    assert _rate_limit_headers(refused) == {}
    assert admitted.status_code == 200
    assert admitted["x-ratelimit-remaining-requests"] == "599"  # only the admitted call counted
    assert in_flight_count() == base


def test_a_full_organization_answers_429_with_its_request_headers(
    client, api_key, organization, outsider
):
    from apps.accounts.selectors import personal_organization_for
    from apps.keys.services import api_key_create

    _, raw_key = api_key
    other_organization = personal_organization_for(user=outsider)
    _, other_key = api_key_create(organization=other_organization, created_by=outsider, name="o")
    elsewhere = Admission()
    with override_settings(RATE_LIMIT_CONCURRENT_PER_ORG=1):
        async_to_sync(elsewhere.take_organization_slot)(
            organization_id=organization.pk, slot_id="req_elsewhere"
        )
        refused = _get(client, raw_key)
        other_organization_call = _get(client, other_key)
        async_to_sync(elsewhere.release)()
        admitted = _get(client, raw_key)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "1"
    assert refused.json() == {
        "error": {
            "message": "Too many concurrent requests for your organization: limit 1 in flight. "
            "Please try again when one of them has finished.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert _rate_limit_headers(refused) == {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "599",
        "x-ratelimit-reset-requests": refused["x-ratelimit-reset-requests"],
    }
    assert other_organization_call.status_code == 200
    assert admitted.status_code == 200
    assert _slots(organization.pk) == 0


def test_every_call_gives_its_slots_back(client, api_key, organization):
    _, raw_key = api_key
    base = in_flight_count()
    with override_settings(RATE_LIMIT_CONCURRENT_PER_ORG=1, GATEWAY_MAX_IN_FLIGHT=base + 1):
        statuses = [
            _get(client, raw_key, path).status_code
            for path in ["/v1/models", "/v1/models/nope", "/v1/models", "/v1/models/nope"]
        ]
    assert statuses == [200, 404, 200, 404]
    assert in_flight_count() == base
    assert _slots(organization.pk) == 0


def test_a_slot_left_by_a_dead_process_expires(client, api_key, organization):
    _, raw_key = api_key
    key = organization_slots_key(organization.pk)
    # A process that died mid-call left its slot; its deadline has passed.
    redis_client().zadd(key, {"req_dead": int(time.time() * 1000) - 1})
    with override_settings(RATE_LIMIT_CONCURRENT_PER_ORG=1):
        assert _get(client, raw_key).status_code == 200
    assert redis_client().zscore(key, "req_dead") is None


def test_an_organization_slot_carries_a_deadline(db, organization):
    admission = Admission()
    before_ms = int(time.time() * 1000)
    with override_settings(RATE_LIMIT_CONCURRENT_SLOT_TTL_S=900):
        async_to_sync(admission.take_organization_slot)(
            organization_id=organization.pk, slot_id="req_one"
        )
    after_ms = int(time.time() * 1000)
    key = organization_slots_key(organization.pk)
    deadline_ms = redis_client().zscore(key, "req_one")
    assert before_ms + 900_000 <= deadline_ms <= after_ms + 900_000
    # The set itself expires with its last slot: an idle organization leaves nothing behind.
    assert 0 < redis_client().pttl(key) <= 900_000
    async_to_sync(admission.release)()
    assert _slots(organization.pk) == 0


@pytest.mark.urls("tests.gateway.admission_urls")
@pytest.mark.parametrize("what", ["database", "redis"])
def test_an_unavailable_backend_after_authentication_is_a_503(client, api_key, what):
    _, raw_key = api_key
    response = _get(client, raw_key, f"/v1/_test/fail?what={what}")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json() == {"error": SERVICE_UNAVAILABLE}
    assert response["x-ratelimit-limit-requests"] == "600"
    assert response["x-ratelimit-remaining-requests"] == "599"


def test_a_database_failure_during_authentication_is_a_503(client, db, monkeypatch):
    def unavailable(digest):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr("apps.keys.authentication._load_identity", unavailable)
    base = in_flight_count()
    response = _get(client, "sk-live-" + "A" * 43)
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json() == {"error": SERVICE_UNAVAILABLE}
    assert _rate_limit_headers(response) == {}
    assert in_flight_count() == base


def test_redis_down_for_the_rate_limit_is_a_503(client, api_key):
    _, raw_key = api_key
    assert _get(client, raw_key).status_code == 200  # the key's identity is cached
    base = in_flight_count()
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = _get(client, raw_key)
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json() == {"error": SERVICE_UNAVAILABLE}
    assert in_flight_count() == base


def test_redis_down_for_the_key_cache_is_a_503(client, api_key):
    _, raw_key = api_key
    dead = {
        "default": {
            "BACKEND": "plugsky_site.redis_pool.SharedPoolRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with override_settings(CACHES=dead):
        response = _get(client, raw_key)
    assert response.status_code == 503
    assert response.json() == {"error": SERVICE_UNAVAILABLE}


# --- Streams hold their slots until their body ends ------------------------------------------


def _scope(path, query, raw_key):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {raw_key}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def _run_asgi(scope, *, organization_id, leave_while_sending):
    """Run one request through the real ASGI application; the client leaves after one chunk.

    Returns (status, calls in flight, organization slots) as seen while the first chunk was sent.
    """
    from plugsky_site.asgi import application

    left = asyncio.Event()
    seen = {}
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        elif message.get("body") and not left.is_set():
            seen["in_flight"] = in_flight_count()
            seen["slots"] = await asyncio.to_thread(_slots, organization_id)
            left.set()
            if leave_while_sending:
                await asyncio.sleep(30)  # cancelled by Django when it sees the disconnect

    await asyncio.wait_for(application(scope, receive, send), timeout=30)
    return seen


@pytest.mark.urls("tests.gateway.admission_urls")
@pytest.mark.parametrize("leave_while_sending", [False, True])
async def test_a_client_leaving_mid_stream_gives_the_slots_back(live_key, leave_while_sending):
    organization, raw_key = live_key
    base = in_flight_count()
    scope = _scope("/v1/_test/stream", b"n=1000&delay=0.01", raw_key)
    seen = await _run_asgi(
        scope, organization_id=organization.pk, leave_while_sending=leave_while_sending
    )
    assert seen["status"] == 200
    assert (seen["in_flight"], seen["slots"]) == (base + 1, 1)  # held while streaming
    assert in_flight_count() == base
    assert await asyncio.to_thread(_slots, organization.pk) == 0


@pytest.mark.urls("tests.gateway.admission_urls")
async def test_a_stream_holds_its_slots_until_its_body_ends(async_client, live_key):
    organization, raw_key = live_key
    base = in_flight_count()
    response = await async_client.get(
        "/v1/_test/stream?n=3", headers={"Authorization": f"Bearer {raw_key}"}
    )
    assert response.status_code == 200
    assert (in_flight_count(), await asyncio.to_thread(_slots, organization.pk)) == (base + 1, 1)
    body = b"".join([part async for part in response.streaming_content])
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert in_flight_count() == base
    assert await asyncio.to_thread(_slots, organization.pk) == 0


# --- On a live server: connections stay bounded however many calls pass ---------------------

# Unique per test process: other runs of this module may count at the same time.
LIVE_NAME = f"plugsky-admission-{os.getpid()}"
POOL_MAX = 4
REDIS_MAX = 8


@pytest.fixture(scope="module")
def bounded_server(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    from django.conf import settings

    yield from run_server(
        {
            "DJANGO_SETTINGS_MODULE": "tests.gateway.admission_settings",
            # Names the server's connections in pg_stat_activity and CLIENT LIST.
            "PGAPPNAME": LIVE_NAME,
            "REDIS_URL": f"{settings.REDIS_URL}?client_name={LIVE_NAME}",
            "DATABASE_POOL_MIN_SIZE": "1",
            "DATABASE_POOL_MAX_SIZE": str(POOL_MAX),
            "DATABASE_POOL_TIMEOUT_S": "1",
            "REDIS_MAX_CONNECTIONS": str(REDIS_MAX),
            "GATEWAY_MAX_IN_FLIGHT": "1000",
            "RATE_LIMIT_CONCURRENT_PER_ORG": "1000",
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
            "ALLOWED_HOSTS": "127.0.0.1",
        }
    )


def _database_connections(cursor) -> int:
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [LIVE_NAME])
    return int(cursor.fetchone()[0])


def _redis_connections() -> int:
    return sum(1 for entry in redis_client().client_list() if entry.get("name") == LIVE_NAME)


class _PeakSampler:
    """Samples the server's PostgreSQL and Redis connections until stopped; keeps the peaks."""

    def __init__(self):
        self.peak = {"database": 0, "redis": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        import psycopg
        from django.conf import settings

        database = settings.DATABASES["default"]
        with psycopg.connect(
            host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"],
            password=database["PASSWORD"] or None, dbname="postgres", autocommit=True,
        ) as connection, connection.cursor() as cursor:  # fmt: skip
            while not self._stop.is_set():
                self.peak["database"] = max(self.peak["database"], _database_connections(cursor))
                self.peak["redis"] = max(self.peak["redis"], _redis_connections())
                self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


def _load(base_url, raw_key, path, *, count, concurrency):
    """`count` GETs of `path`, `concurrency` at a time: their responses, in order."""

    async def run():
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        headers = {"Authorization": f"Bearer {raw_key}"}
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=120
        ) as client:

            async def one():
                async with gate:
                    return await client.get(path)

            return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(run())


@pytest.mark.xdist_group("live")
def test_150_concurrent_calls_use_at_most_the_pool_of_database_connections(
    bounded_server, live_key
):
    _, raw_key = live_key
    with _PeakSampler() as sampler:
        responses = _load(
            bounded_server, raw_key, "/v1/_test/slow?s=0.05", count=150, concurrency=150
        )
    statuses = [response.status_code for response in responses]
    # Calls that found no free connection within the pool timeout are told to retry: never a 500.
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= POOL_MAX
    for response in responses:
        if response.status_code == 503:
            assert response.json() == {"error": SERVICE_UNAVAILABLE}
            assert response.headers["Retry-After"] == "2"
    assert 1 <= sampler.peak["database"] <= POOL_MAX


@pytest.mark.xdist_group("live")
def test_a_pool_timeout_is_a_503_with_the_request_headers(bounded_server, live_key):
    _, raw_key = live_key
    assert (
        _load(bounded_server, raw_key, "/v1/models", count=1, concurrency=1)[0].status_code == 200
    )
    # One more call than the pool has connections, each holding one for 3 s; the pool waits 1 s.
    responses = _load(
        bounded_server, raw_key, "/v1/_test/slow?s=3", count=POOL_MAX + 1, concurrency=POOL_MAX + 1
    )
    assert sorted(response.status_code for response in responses) == [200] * POOL_MAX + [503]
    refused = next(response for response in responses if response.status_code == 503)
    assert refused.json() == {"error": SERVICE_UNAVAILABLE}
    assert refused.headers["Retry-After"] == "2"
    assert refused.headers["x-ratelimit-limit-requests"] == "100000"


@pytest.mark.xdist_group("live")
def test_300_calls_use_a_bounded_number_of_redis_connections(bounded_server, live_key):
    _, raw_key = live_key
    _load(bounded_server, raw_key, "/v1/models", count=1, concurrency=1)
    before = _redis_connections()
    with _PeakSampler() as sampler:
        responses = _load(bounded_server, raw_key, "/v1/models", count=300, concurrency=50)
    after = _redis_connections()
    assert [response.status_code for response in responses] == [200] * 300
    # Two pools (the event loop's and the threads', plugsky_site/redis_pool.py), each bounded.
    assert 1 <= before <= 2 * REDIS_MAX
    assert sampler.peak["redis"] <= 2 * REDIS_MAX
    assert after <= 2 * REDIS_MAX


@pytest.mark.xdist_group("live")
def test_a_client_leaving_a_live_stream_gives_its_organization_slot_back(bounded_server, live_key):
    organization, raw_key = live_key
    headers = {"Authorization": f"Bearer {raw_key}"}
    with (
        httpx.Client(base_url=bounded_server, headers=headers, timeout=30) as client,
        client.stream("GET", "/v1/_test/stream?n=1000&delay=0.05") as response,
    ):
        chunks = response.iter_bytes()  # kept: dropping it would close the connection
        first = next(chunks)
        held = _slots(organization.pk)
    assert response.status_code == 200
    assert first.startswith(b"data: 0")
    assert held == 1
    deadline = time.monotonic() + 20
    while _slots(organization.pk) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _slots(organization.pk) == 0


def _raw_request(base_url, target: bytes, host: bytes = b"127.0.0.1"):
    """Send one HTTP/1.0 request with exactly this target; return (status, headers, body)."""
    address = base_url.removeprefix("http://").split(":")
    with socket.create_connection((address[0], int(address[1])), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.0\r\nHost: " + host + b"\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


# Daphne itself answers a bare 400 to raw non-ASCII bytes in the request line and drops request
# lines over 16 KiB, before any application sees them; everything it passes on is answered here.
@pytest.mark.xdist_group("live")
@pytest.mark.parametrize(
    ("target", "host", "status", "code"),
    [
        (b"/v1/%00", b"127.0.0.1", 404, "unknown_url"),
        (b"/v1/%ZZ%", b"127.0.0.1", 404, "unknown_url"),
        (b"/v1/%FF%FE", b"127.0.0.1", 404, "unknown_url"),
        (b"/v1/models/%C3%28", b"127.0.0.1", 401, "invalid_api_key"),
        (b"/v1//models", b"127.0.0.1", 404, "unknown_url"),
        (b"/v1/chat/completions/", b"127.0.0.1", 404, "unknown_url"),
        (b"/v1/..%2F..%2Fadmin/", b"127.0.0.1", 404, "unknown_url"),
        (b"/v1/" + b"a" * 8000, b"127.0.0.1", 404, "unknown_url"),
        (b"/v1/models", b"evil.example", 400, None),
        (b"/v1/chat/completions", b"evil.example", 400, None),
    ],
)
def test_malformed_v1_requests_get_json_from_the_live_server(
    bounded_server, db, target, host, status, code
):
    answered, headers, body = _raw_request(bounded_server, target, host)
    assert answered == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
