"""Message content as the text a local chat model takes: text parts joined, images read.

Images (`image_url` parts of user messages) are accepted only by models with the "vision"
capability. Each is fetched (or decoded from its data: URL), read by the image reader, and
replaced by what the reader saw, in place. Every other part type (input_audio, file, …) is a
400 naming `messages[i].content[j].type`, before anything is fetched or billed.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from django.conf import settings

from apps.catalog.entries import CatalogEntry
from apps.gateway.serving.common import api_error_from
from apps.protocol import errors
from apps.protocol.openai import ChatMessage, ContentPart
from apps.providers.errors import ProviderError
from apps.providers.registry import provider_for
from apps.providers.vision import (
    FetchedImage,
    FetchPolicy,
    ImageError,
    ImageReading,
    decode_data_url,
    fetch_image,
)

MAX_IMAGES = 8


@dataclass(frozen=True)
class _ImagePart:
    param: str
    url: str
    detail: str


async def message_texts(messages: list[ChatMessage], entry: CatalogEntry) -> list[str]:
    """The text of each message, images replaced by what the image reader saw in them."""
    images = _image_parts(messages, entry)
    readings = await _read_all(images, entry) if images else {}
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


def _image_parts(messages: list[ChatMessage], entry: CatalogEntry) -> list[_ImagePart]:
    images = []
    for index, message in enumerate(messages):
        if isinstance(message.content, list):
            for part_index, part in enumerate(message.content):
                param = f"messages[{index}].content[{part_index}]"
                image = _checked_part(part, message.role, param, entry)
                if image is not None:
                    images.append(image)
    if len(images) > MAX_IMAGES:
        raise errors.invalid_value(
            f"Too many images: at most {MAX_IMAGES} are accepted per request.", param="messages"
        )
    return images


def _checked_part(
    part: ContentPart, role: str, param: str, entry: CatalogEntry
) -> _ImagePart | None:
    if part.type == "text":
        if part.text is None:
            raise errors.invalid_value(
                f"Missing required parameter: '{param}.text'.",
                param=f"{param}.text",
                code="missing_required_parameter",
            )
        return None
    if part.type != "image_url":
        # input_audio, file, refusal, …: OpenAI's types this server cannot take.
        raise errors.invalid_value(
            f"Invalid value: '{part.type}'. Supported values are: 'text' and 'image_url'.",
            param=f"{param}.type",
            code="invalid_value",
        )
    if role != "user":
        raise errors.invalid_value(
            f"Image content parts are only allowed in user messages, not in '{role}' messages.",
            param=param,
        )
    if "vision" not in entry.capabilities:
        raise errors.invalid_value(
            f"Invalid content type. image_url is only supported by models with vision; "
            f"`{entry.id}` reads text only.",
            param=param,
            code="image_not_supported",
        )
    if part.image_url is None:
        raise errors.invalid_value(
            f"Missing required parameter: '{param}.image_url'.",
            param=f"{param}.image_url",
            code="missing_required_parameter",
        )
    return _ImagePart(param, part.image_url.url, part.image_url.detail)


async def _read_all(images: list[_ImagePart], entry: CatalogEntry) -> dict[str, ImageReading]:
    fetched = await asyncio.gather(*(_fetched(image) for image in images))
    provider = provider_for(entry)  # the image reader runs where the model runs
    readings = {}
    for image, data in zip(images, fetched, strict=True):
        try:
            reading = await provider.read_image(data.data, detail=image.detail)
        except ImageError as failure:
            raise errors.invalid_value(
                failure.message, param=f"{image.param}.image_url", code="invalid_image"
            ) from None
        except ProviderError as failure:  # the reader is not installed, the engine is down
            raise api_error_from(failure) from None
        readings[image.param] = reading
    return readings


async def _fetched(image: _ImagePart) -> FetchedImage:
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
