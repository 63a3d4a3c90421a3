"""A long mixed load on a live server and the server's resident memory along the way.

Shared by the RSS regression in tests/faults/test_memory.py and the soak benchmark in bench/.
Each kind of call has the one answer a healthy server gives it, so the load checks itself.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CHAT = {
    "model": "plugsky-nano",
    "messages": [{"role": "user", "content": "Name a fruit."}],
    "max_tokens": 4,
    "temperature": 0,
}
# kind: (weight, method, path, body or raw bytes, use a valid key, the expected status)
CALLS: dict[str, tuple[int, str, str, object, bool, int]] = {
    "models": (3, "GET", "/v1/models", None, True, 200),
    "model": (1, "GET", "/v1/models/plugsky-nano", None, True, 200),
    "chat": (4, "POST", "/v1/chat/completions", CHAT, True, 200),
    "chat_stream": (2, "POST", "/v1/chat/completions", {**CHAT, "stream": True}, True, 200),
    "embedding": (3, "POST", "/v1/embeddings",
                  {"model": "plugsky-embed", "input": ["soak one", "soak two"]}, True, 200),
    "bad_key": (1, "GET", "/v1/models", None, False, 401),
    "unknown_model": (1, "POST", "/v1/chat/completions", {**CHAT, "model": "nope"}, True, 404),
    "bad_json": (1, "POST", "/v1/chat/completions", b"{not json", True, 400),
    "invalid": (1, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": -1}, True, 400),
    "unknown_path": (1, "GET", "/v1/nowhere", None, True, 404),
}  # fmt: skip
SERVER_ENV = {
    "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
    "RATE_LIMIT_TOKENS_PER_MINUTE": "1000000000",
    "PLUGSKY_LOCAL_MODELS": "plugsky-nano,plugsky-embed",
}


def server_pid(base_url: str) -> int:
    """The pid of the Daphne process serving `base_url` (started by tests.live.run_server)."""
    from tests.live import PIDS

    try:
        return PIDS[base_url]
    except KeyError:
        raise LookupError(f"no server started at {base_url}") from None


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` in MiB (Linux: VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for pid {pid}")


@dataclass
class Soak:
    base_url: str
    key: str
    seed: int
    concurrency: int = 4
    weights: dict[str, int] = field(default_factory=lambda: {k: c[0] for k, c in CALLS.items()})
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)

    @property
    def unexpected(self) -> dict[tuple[str, int], int]:
        return {(k, s): n for (k, s), n in self.answers.items() if s != CALLS[k][5]}

    async def run(self, requests: int, *, every: int = 0, probe: Callable[[int], None] = print):
        """Send `requests` calls, `concurrency` at a time; `probe(done)` every `every` calls."""
        rng = random.Random(self.seed + sum(self.answers.values()))
        kinds = rng.choices(list(self.weights), weights=list(self.weights.values()), k=requests)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for kind in kinds:
            queue.put_nowait(kind)
        done = 0
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as client:

            async def worker() -> None:
                nonlocal done
                while not queue.empty():
                    kind = queue.get_nowait()
                    self.answers[kind, await self._call(client, kind)] += 1
                    done += 1
                    if every and done % every == 0:
                        probe(done)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _call(self, client: httpx.AsyncClient, kind: str) -> int:
        _, method, path, body, is_keyed, _ = CALLS[kind]
        headers = {"Authorization": f"Bearer {self.key if is_keyed else 'sk-live-wrong'}"}
        if isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
            response = await client.request(method, path, content=body, headers=headers)
        else:
            response = await client.request(method, path, json=body, headers=headers)
        return response.status_code


def write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
