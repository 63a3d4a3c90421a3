"""Uploads the engine decoded for the gateway, kept until their transcription takes them.

The gateway must know an upload's exact duration before it holds credit, and refuse audio that
cannot be decoded before anything is held; decoding a long file takes seconds of CPU and a few
times its samples in memory, which belongs in the engine rather than in every web process.
So the gateway first asks the engine to decode (a probe): the engine keeps the samples under a
probe id and answers their count, the gateway holds, then asks for the transcription of that
id. Kept samples are bounded in time and in total size: a probe whose call never followed (its
hold refused) is dropped after `TTL_S`, and the oldest go first when the total is over
`MAX_BYTES`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict

import numpy as np

__all__ = ["DecodedUploads"]

TTL_S = 300.0
MAX_BYTES = 1 << 30  # about 9 hours of 16 kHz int16 audio waiting for its transcription


class DecodedUploads:
    def __init__(self, *, ttl_s: float = TTL_S, max_bytes: int = MAX_BYTES) -> None:
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._kept: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, samples: np.ndarray) -> str:
        probe_id = uuid.uuid4().hex
        with self._lock:
            self._kept[probe_id] = (time.monotonic() + self._ttl_s, samples)
            self._trim()
        return probe_id

    def take(self, probe_id: str) -> np.ndarray | None:
        """The samples of `probe_id`, once: None if unknown or dropped."""
        with self._lock:
            self._trim()
            kept = self._kept.pop(probe_id, None)
        return None if kept is None else kept[1]

    def _trim(self) -> None:
        now = time.monotonic()
        total = sum(samples.nbytes for _, samples in self._kept.values())
        while self._kept:
            probe_id, (expires_at, samples) = next(iter(self._kept.items()))
            if expires_at > now and total <= self._max_bytes:
                return
            del self._kept[probe_id]
            total -= samples.nbytes
