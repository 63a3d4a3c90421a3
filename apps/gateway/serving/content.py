"""The checks of message content every provider relies on, made before anything is billed.

Images (`image_url` parts of user messages) are accepted only by models with the "vision"
capability, at most MAX_IMAGES per request. Every other part type (input_audio, file, …) is a
400 naming `messages[i].content[j].type`.
"""

from __future__ import annotations

from apps.catalog.entries import CatalogEntry
from apps.protocol import errors
from apps.protocol.openai import ChatMessage, ContentPart

MAX_IMAGES = 8


def content_check(messages: list[ChatMessage], entry: CatalogEntry) -> None:
    images = 0
    for index, message in enumerate(messages):
        if isinstance(message.content, list):
            for part_index, part in enumerate(message.content):
                param = f"messages[{index}].content[{part_index}]"
                images += _is_checked_image(part, message.role, param, entry)
    if images > MAX_IMAGES:
        raise errors.invalid_value(
            f"Too many images: at most {MAX_IMAGES} are accepted per request.", param="messages"
        )


def _is_checked_image(part: ContentPart, role: str, param: str, entry: CatalogEntry) -> bool:
    if part.type == "text":
        if part.text is None:
            raise errors.invalid_value(
                f"Missing required parameter: '{param}.text'.",
                param=f"{param}.text",
                code="missing_required_parameter",
            )
        return False
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
    return True


def check_tool_messages(messages: list[ChatMessage]) -> None:
    """Every tool message answers an earlier assistant call, as OpenAI requires."""
    called: set[str] = set()
    for index, message in enumerate(messages):
        called.update(call.id for call in message.tool_calls or [])
        if message.role != "tool":
            continue
        if not message.tool_call_id:
            raise errors.invalid_value(
                f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                param=f"messages[{index}].tool_call_id",
                code="missing_required_parameter",
            )
        if message.tool_call_id not in called:
            raise errors.invalid_value(
                f"Invalid parameter: messages with role 'tool' must be a response to a preceding "
                f"message with 'tool_calls' (no call has the id '{message.tool_call_id}').",
                param=f"messages[{index}].tool_call_id",
            )
