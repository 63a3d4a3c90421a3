"""Decoded uploads kept between the gateway's probe and its transcription: taken once, and
bounded in time and in total size."""

import numpy as np

from apps.providers.audio import uploads
from apps.providers.audio.uploads import DecodedUploads


def test_samples_are_taken_once():
    kept = DecodedUploads()
    probe_id = kept.put(np.arange(10, dtype="<i2"))
    assert kept.take(probe_id).tolist() == list(range(10))
    assert kept.take(probe_id) is None
    assert kept.take("unknown") is None


def test_a_probe_whose_call_never_came_is_dropped_after_its_ttl(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(uploads.time, "monotonic", lambda: now[0])
    kept = DecodedUploads(ttl_s=60)
    old = kept.put(np.zeros(4, dtype="<i2"))
    now[0] += 61
    assert kept.take(old) is None


def test_the_oldest_go_first_over_the_size_bound():
    kept = DecodedUploads(max_bytes=20)  # room for one of these 16-byte uploads
    first = kept.put(np.zeros(8, dtype="<i2"))
    second = kept.put(np.zeros(8, dtype="<i2"))
    assert kept.take(first) is None
    assert kept.take(second) is not None
