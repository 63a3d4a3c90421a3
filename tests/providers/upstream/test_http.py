"""Server-sent events as the upstream transport reads them (apps.providers.upstream.http)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from apps.providers.upstream.http import UpstreamResponse, server_sent_events


class _Arriving:
    """A response body that arrives in the given pieces."""

    def __init__(self, pieces: tuple[bytes, ...]) -> None:
        self._pieces = pieces

    async def pieces(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


async def _events(*pieces: bytes) -> list[tuple[str, str]]:
    response = cast(UpstreamResponse, _Arriving(pieces))
    return [event async for event in server_sent_events(response)]


async def test_events_split_anywhere_across_reads_and_lines_in_either_ending():
    text = (
        'event: delta\r\ndata: {"t": "é ✓"}\r\n\r\n'  # CRLF lines
        ": keep-alive\n\ndata: a\ndata: b\n\ndata: [DONE]"  # LF lines, no final blank line
    )
    raw = text.encode()
    whole = await _events(raw)
    assert whole == [("delta", '{"t": "é ✓"}'), ("", "a\nb"), ("", "[DONE]")]
    # Cut inside the two-byte "é" and the three-byte "✓", and between "\r" and "\n".
    cuts = [raw.index("é".encode()) + 1, raw.index("✓".encode()) + 2, raw.index(b"\r\n\r\n") + 1]
    pieces, start = [], 0
    for cut in sorted(cuts):
        pieces.append(raw[start:cut])
        start = cut
    pieces.append(raw[start:])
    assert await _events(*pieces) == whole
