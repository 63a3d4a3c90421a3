"""Operator-added models, from the JSON file named by PLUGSKY_CATALOG_FILE.

    {"models": [{"id": "my-llama", "kind": "chat", "gguf": "/srv/models/my.gguf",
                 "sha256": "<64 hex>", "context_length": 4096, "owned_by": "acme",
                 "input_price_micros_per_mtok": 100000, "output_price_micros_per_mtok": 200000}]}

A local model is a GGUF file and its pinned SHA-256: the engine refuses to load it on mismatch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from apps.catalog.entries import CatalogEntry, Kind, LocalRoute

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def load_operator_entries(path: str) -> tuple[CatalogEntry, ...]:
    if not path:
        return ()
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ImproperlyConfigured(f"PLUGSKY_CATALOG_FILE {path}: {error}") from error
    return tuple(_entry(item, path) for item in document.get("models", []))


def _entry(item: dict[str, Any], path: str) -> CatalogEntry:
    model_id = item.get("id")
    sha256 = str(item.get("sha256", "")).lower()
    if not model_id or not item.get("gguf") or not _SHA256.match(sha256):
        raise ImproperlyConfigured(
            f"PLUGSKY_CATALOG_FILE {path}: every model needs an id, a gguf path and a sha256"
        )
    kind = Kind(item.get("kind", "chat"))
    return CatalogEntry(
        id=model_id,
        kind=kind,
        routes=(
            LocalRoute(
                runtime="llama",
                weights=str(item["gguf"]),
                sha256=sha256,
                parallel_slots=int(item.get("parallel_slots", 4)),
            ),
        ),
        context_length=int(item.get("context_length", 4096)),
        description=str(item.get("description", "Operator-supplied GGUF model.")),
        owned_by=str(item.get("owned_by", "operator")),
        capabilities=frozenset(item.get("capabilities", ["chat", "completions", "streaming"])),
        input_price_micros_per_mtok=int(item.get("input_price_micros_per_mtok", 0)),
        output_price_micros_per_mtok=int(item.get("output_price_micros_per_mtok", 0)),
    )
