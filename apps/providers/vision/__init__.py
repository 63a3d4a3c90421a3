"""Images for the built-in vision model: fetched safely, then read by real image models.

- ``fetch_image`` / ``decode_data_url``: an image URL's bytes, refusing private addresses
  (checked after DNS and on every redirect), oversized and slow downloads, non-images.
- ``read_image``: the image's text (PP-OCRv4 on onnxruntime), size and main colours, as text a
  chat model can take. It cannot recognise objects, people or scenes. It runs in the engine
  process; importing it here is deferred so that web processes never load Pillow's decoders
  or onnxruntime (they fetch images and hand the bytes to the engine).
"""

from typing import TYPE_CHECKING, Any

from apps.providers.vision.fetch import (
    FetchedImage,
    FetchPolicy,
    ImageError,
    decode_data_url,
    fetch_image,
    is_allowed,
)
from apps.providers.vision.reading import ImageReading

if TYPE_CHECKING:
    from apps.providers.vision.reader import is_reader_installed, read_image

__all__ = [
    "FetchPolicy",
    "FetchedImage",
    "ImageError",
    "ImageReading",
    "decode_data_url",
    "fetch_image",
    "is_allowed",
    "is_reader_installed",
    "read_image",
]


def __getattr__(name: str) -> Any:
    if name in {"read_image", "is_reader_installed"}:
        from apps.providers.vision import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
