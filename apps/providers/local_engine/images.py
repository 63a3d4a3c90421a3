"""Message content as the text a local chat model takes: text parts joined, images read.

The local models read no pixels: each image (already checked by the gateway: a user message's
`image_url` part on a vision model) is fetched or decoded from its data: URL, read by the
engine's image reader (OCR, size, colours), and replaced in place by what the reader saw.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from apps.protocol import errors
from apps.protocol.openai import ChatMessage
from apps.providers.vision import (
    FetchedImage,
    FetchPolicy,
    ImageError,
    ImageReading,
    decode_data_url,
    fetch_image,
)


class ImageReader(Protocol):
    async def read_image(self, data: bytes, *, detail: str = "auto") -> ImageReading: ...


@dataclass(frozen=True)
class _Image:
    param: str
    url: str
    detail: str


def has_images(messages: list[ChatMessage]) -> bool:
    return bool(_images(messages))


async def message_texts(messages: list[ChatMessage], *, reader: ImageReader) -> list[str]:
    """The text of each message, images replaced by what the image reader saw in them."""
    images = _images(messages)
    readings = await _read_all(images, reader) if images else {}
    numbers = {image.param: number for number, image in enumerate(images, start=1)}
    texts = []
    for index, message in enumerate(messages):
        if message.content is None or isinstance(message.content, str):
            texts.append(message.content or "")
            continue
        pieces = []
        for part_index, part in enumerate(message.content):
            param = f"messages[{index}].content[{part_index}]"
            if part.type == "text":
                pieces.append(part.text or "")
            else:
                pieces.append(readings[param].describe(numbers[param]))
        texts.append("\n".join(pieces))
    return texts


def _images(messages: list[ChatMessage]) -> list[_Image]:
    images = []
    for index, message in enumerate(messages):
        parts = message.content if isinstance(message.content, list) else []
        for part_index, part in enumerate(parts):
            if part.type == "image_url" and part.image_url is not None:
                param = f"messages[{index}].content[{part_index}]"
                images.append(_Image(param, part.image_url.url, part.image_url.detail))
    return images


async def _read_all(images: list[_Image], reader: ImageReader) -> dict[str, ImageReading]:
    fetched = await asyncio.gather(*(_fetched(image) for image in images))
    readings = {}
    for image, data in zip(images, fetched, strict=True):
        try:
            readings[image.param] = await reader.read_image(data.data, detail=image.detail)
        except ImageError as failure:
            raise errors.invalid_value(
                failure.message, param=f"{image.param}.image_url", code="invalid_image"
            ) from None
    return readings


async def _fetched(image: _Image) -> FetchedImage:
    policy = fetch_policy()
    try:
        if image.url.startswith("data:"):
            return decode_data_url(image.url, policy)
        return await fetch_image(image.url, policy)
    except ImageError as failure:
        raise errors.invalid_value(
            failure.message, param=f"{image.param}.image_url.url", code="invalid_image_url"
        ) from None


def fetch_policy() -> FetchPolicy:
    """Limits from settings; PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS is for tests only."""
    networks = getattr(settings, "PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS", ())
    return FetchPolicy(
        max_bytes=getattr(settings, "PLUGSKY_IMAGE_MAX_BYTES", 10 * 1024 * 1024),
        timeout_s=getattr(settings, "PLUGSKY_IMAGE_FETCH_TIMEOUT_S", 10.0),
        allowed_networks=tuple(ipaddress.ip_network(network) for network in networks),
    )
