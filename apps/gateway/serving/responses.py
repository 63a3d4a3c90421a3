"""POST /v1/responses on every model: a translation onto the chat serving core.

The request becomes a chat completion request (validated as one, so every chat rule applies),
`chat.create` runs and bills it, and its answer or chunk stream is turned back into a response
object or the Responses events. Stored responses (`store`, true by default) live in
apps.responses for their organization; `previous_response_id` prepends one's conversation.
"""

from __future__ import annotations

from typing import Any

from apps.gateway.serving import chat
from apps.gateway.serving.common import CallContext, Priced
from apps.gateway.serving.response_output import (
    EventStream,
    Item,
    new_item_id,
    output_of,
    response_events,
    usage_of,
)
from apps.protocol import errors
from apps.protocol.openai import ChatCompletionRequest, request_validate
from apps.protocol.responses import ContentPart, InputItem, ResponsesRequest
from apps.responses.selectors import stored_response_for
from apps.responses.services import stored_response_create
from plugsky_site.db import db_call

ENDPOINT = "responses"  # as the call is recorded (UsageRecord.endpoint)
# Chat's names for what the Responses API calls otherwise, for errors the chat core raises.
_PARAM_RENAMES = (
    ("max_completion_tokens", "max_output_tokens"),
    ("response_format.json_schema", "text.format"),
    ("response_format", "text.format"),
)


async def create(request: ResponsesRequest, ctx: CallContext) -> Priced | EventStream:
    prior = await _prior_items(request, ctx)
    own_items = input_resources(request)
    chat_request = chat_request_for(request, [*prior, *own_items])
    try:
        result = await chat.create(chat_request, ctx, endpoint=ENDPOINT)
    except errors.APIError as failure:
        raise _renamed(failure) from None
    record = _Record(request=request, ctx=ctx, prior=prior, own_items=own_items)
    if isinstance(result, Priced):
        status, output = output_of(result.body)
        body = record.response(status, output, usage_of(result.body["usage"]), None)
        await record.store(body)
        return Priced(body, result.cost_micros)
    return response_events(result, build=record.response, on_finished=record.store)


def response_id_of(ctx: CallContext) -> str:
    return "resp_" + ctx.request_id.removeprefix("req_")


async def _prior_items(request: ResponsesRequest, ctx: CallContext) -> list[Item]:
    if request.previous_response_id is None:
        return []
    stored = await db_call(
        stored_response_for,
        organization_id=ctx.organization_id,
        response_id=request.previous_response_id,
    )
    if stored is None:  # unknown, another organization's, deleted, or sent with store: false
        raise errors.APIError(
            f"Previous response with id '{request.previous_response_id}' not found.",
            status=400,
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return stored.conversation


def input_resources(request: ResponsesRequest) -> list[Item]:
    """The request's input as items to store and list: a string input is one user message."""
    if isinstance(request.input, str):
        return [_item_resource(InputItem(type="message", role="user", content=request.input))]
    return [_item_resource(item) for item in request.input]


def _item_resource(item: InputItem) -> Item:
    """An input item as it is stored and listed: with its id, content always a list of parts."""
    if item.type == "message":
        parts = item.content if isinstance(item.content, list) else None
        kind = "output_text" if item.role == "assistant" else "input_text"
        content = (
            [_part_resource(part) for part in parts]
            if parts is not None
            else [{"type": kind, "text": item.content or ""}]
        )
        return {"id": item.id or new_item_id("msg"), "type": "message", "role": item.role,
                "status": "completed", "content": content}  # fmt: skip
    resource = item.model_dump(exclude_none=True, include={"call_id", "name", "arguments"})
    if item.type == "function_call_output":
        resource["output"] = _output_text(item.output)
    prefix = "fc" if item.type == "function_call" else "fco"
    return {"id": item.id or new_item_id(prefix), "type": item.type, **resource,
            "status": "completed"}  # fmt: skip


def _part_resource(part: ContentPart) -> Item:
    resource = part.model_dump(exclude_none=True)
    if part.type != "input_image":
        resource.pop("detail")  # a default of the image fields only
    return resource


def _output_text(output: str | list[ContentPart] | None) -> str:
    if isinstance(output, list):
        return "".join(part.text or "" for part in output)
    return output or ""


def chat_request_for(request: ResponsesRequest, items: list[Item]) -> ChatCompletionRequest:
    """The chat request that answers `request`, `items` being its whole conversation."""
    messages = [{"role": "system", "content": request.instructions}] if request.instructions else []
    document: dict[str, Any] = {"model": request.model, "messages": messages + _messages(items)}
    for name in ("temperature", "top_p", "user", "parallel_tool_calls"):
        if getattr(request, name) is not None:
            document[name] = getattr(request, name)
    if request.max_output_tokens is not None:
        document["max_completion_tokens"] = request.max_output_tokens
    if request.tools:
        document["tools"] = [
            _chat_tool(tool.model_dump(exclude_none=True)) for tool in request.tools
        ]
    if request.tool_choice is not None:
        document["tool_choice"] = _chat_tool_choice(request.tool_choice)
    if request.text is not None and request.text.format is not None:
        document["response_format"] = _chat_format(request.text.format.model_dump(by_alias=True))
    if request.stream:
        # Usage on the last chunk: the terminal event carries it.
        document.update(stream=True, stream_options={"include_usage": True})
    try:
        return request_validate(document, ChatCompletionRequest)
    except errors.APIError as failure:
        raise _renamed(failure) from None


def _messages(items: list[Item]) -> list[dict[str, Any]]:
    """Chat messages of Responses items: consecutive calls join the assistant turn before them."""
    messages: list[dict[str, Any]] = []
    for item in items:
        if item["type"] == "message":
            messages.append({"role": item["role"], "content": _chat_content(item)})
        elif item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}  # fmt: skip
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    return messages


def _chat_content(item: Item) -> str | list[dict[str, Any]]:
    parts = item["content"]
    if item["role"] == "assistant" or all(part["type"] != "input_image" for part in parts):
        return "".join(part.get("text") or part.get("refusal") or "" for part in parts)
    return [_chat_part(part) for part in parts]


def _chat_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "input_image":
        # Chat knows no "original" detail; "high" reads the image at its full resolution too.
        detail = "high" if part.get("detail") == "original" else part.get("detail", "auto")
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": detail}}
    return {"type": "text", "text": part.get("text") or ""}


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {key: value for key, value in tool.items() if key != "type"}
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice.name}}


def _chat_format(text_format: dict[str, Any]) -> dict[str, Any]:
    if text_format["type"] != "json_schema":
        return {"type": text_format["type"]}
    fields = ("name", "schema", "strict", "description")
    schema = {key: text_format[key] for key in fields if text_format.get(key) is not None}
    return {"type": "json_schema", "json_schema": schema}


def _renamed(failure: errors.APIError) -> errors.APIError:
    """The chat core's error with the Responses API's names for its fields."""
    param, message = failure.param, failure.message
    for old, new in _PARAM_RENAMES:
        if param is not None and (param == old or param.startswith((old + ".", old + "["))):
            param = new + param[len(old) :]
            message = message.replace(old, new)
            break
    if param is not None and param.startswith("messages"):
        param = "input"  # messages and input items are not numbered alike
    if param is not None and param.startswith("tools[") and ".function" in param:
        param = param.replace(".function", "", 1)
    failure.param, failure.message = param, message
    return failure


class _Record:
    """Builds the response object of one call, and keeps it when the request says to."""

    def __init__(
        self,
        *,
        request: ResponsesRequest,
        ctx: CallContext,
        prior: list[Item],
        own_items: list[Item],
    ) -> None:
        self.request, self.ctx, self.prior, self.own_items = request, ctx, prior, own_items

    def response(
        self,
        status: str,
        output: list[Item],
        usage: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> Item:
        request = self.request
        is_incomplete = status == "incomplete"
        body = {
            "id": response_id_of(self.ctx),
            "object": "response",
            "created_at": self.ctx.created,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if is_incomplete else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": None,
            "model": request.model,
            "output": [dict(item) for item in output],
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": request.is_stored,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "text": {"format": self._text_format(), "verbosity": "medium"},
            "tool_choice": self._tool_choice(),
            "tools": [self._tool(tool.model_dump()) for tool in request.tools or []],
            "top_logprobs": 0,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "truncation": "disabled",
            "metadata": request.metadata or {},
        }
        # Both are non-null in the spec: left out until known (usage) or when not sent (user).
        if usage is not None:
            body["usage"] = usage
        if request.user is not None:
            body["user"] = request.user
        return body

    async def store(self, body: Item) -> None:
        if not self.request.is_stored:
            return
        await db_call(
            stored_response_create,
            organization_id=self.ctx.organization_id,
            response_id=body["id"],
            model=body["model"],
            prior_items=self.prior,
            input_items=self.own_items,
            output=body["output"],
            body=body,
        )

    def _text_format(self) -> dict[str, Any]:
        text = self.request.text
        if text is None or text.format is None:
            return {"type": "text"}
        return text.format.model_dump(by_alias=True, exclude_none=True)

    def _tool_choice(self) -> Any:
        choice = self.request.tool_choice
        if choice is None:
            return "auto"
        return choice if isinstance(choice, str) else choice.model_dump()

    @staticmethod
    def _tool(tool: dict[str, Any]) -> dict[str, Any]:
        keys = ("type", "name", "description", "parameters", "strict")
        return {key: tool.get(key) for key in keys}
