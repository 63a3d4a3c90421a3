import json
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

ARTIFACTS = Path(__file__).parent / "artifacts"


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_when_database_and_redis_answer(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": True, "redis": True, "engine": True}


@pytest.mark.parametrize(
    "backend",
    ["plugsky_site.redis_pool.SharedPoolRedisCache", "django.core.cache.backends.redis.RedisCache"],
)
def test_readyz_is_503_when_redis_does_not_answer(client, db, backend):
    dead = {"default": {"BACKEND": backend, "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=dead):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": True, "redis": False, "engine": True},
    }


def test_readyz_is_503_when_the_engine_does_not_answer(client, db, tmp_path):
    with override_settings(PLUGSKY_ENGINE_URL=f"unix:{tmp_path}/no-engine.sock"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": True, "redis": True, "engine": False},
    }


def test_suite_runs_on_real_postgresql_and_redis(db):
    """CI (.ci/run) refuses a run that did not leave this record."""
    assert connection.vendor == "postgresql"
    info = redis.Redis.from_url(settings.REDIS_URL).info("server")
    assert info["redis_version"]
    ARTIFACTS.mkdir(exist_ok=True)
    record = {"database": connection.vendor, "redis_version": info["redis_version"]}
    (ARTIFACTS / "backends.json").write_text(json.dumps(record))
