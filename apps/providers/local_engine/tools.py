"""Function calling on the local engine: tools in the prompt, calls by constrained decoding.

The small built-in models never emit their own tool-call tokens; asked for a call they write JSON
in their text. So the gateway does the whole job itself:

- The tools go into the system prompt, and earlier calls and their results into the
  conversation, in one plain format every chat template accepts (some templates drop
  `tool_calls` and `tool` messages without a word).
- A grammar decides what the model may write: plain text (never opening with "{"), or compact
  call objects `{"name": <tool>, "arguments": <that tool's parameters>}`, one per line. For
  "required" only calls, for a named function only that one, for "none" only text. Arguments
  therefore always parse and match the tool's schema.
- The text is then read back as `tool_calls` deltas, streamed as the tokens arrive: first the
  call's index, id, type and name with empty arguments, then argument fragments.

Small models tend to repeat a call whose result they were just given. In "auto" mode a call
identical (same name, same arguments) to one already answered in the conversation is dropped;
if nothing else was called, the model answers again, constrained to text, and the user gets
that answer. Such calls are held until complete before they are sent; all other calls stream.
Both passes share the choice's `max_tokens`: the second may use only what the first left.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from apps.protocol import errors
from apps.protocol.openai import ChatCompletionRequest, ChatMessage, NamedToolChoice
from apps.providers.local_engine.structured import (
    PROSE_RULE,
    TEXT_RULE,
    JsonAnswer,
    checked_schema,
    closed,
    ensure_compiles,
    guided,
    lark,
)

Chunk = dict[str, Any]
Mode = Literal["none", "auto", "required", "named"]
StartStream = Callable[[dict[str, Any]], AsyncIterator[Chunk]]

MAX_PARALLEL_CALLS = 8
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]
    needs_lenient: bool = False

    def call_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"name": {"const": self.name}, "arguments": self.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }

    def head(self) -> str:
        """How a compact call of this function begins, up to its arguments."""
        return '{"name":' + json.dumps(self.name) + ',"arguments":'


@dataclass(frozen=True)
class ToolPlan:
    """What the request allows: which functions, whether a call is optional, how many."""

    functions: tuple[Function, ...]
    mode: Mode
    is_parallel: bool
    answered: frozenset[tuple[str, str]]  # (name, canonical arguments) already answered

    @property
    def callable(self) -> tuple[Function, ...]:
        return self.functions if self.mode != "named" else self.functions[:1]

    @property
    def holds_repeats(self) -> bool:
        return self.mode == "auto" and bool(self.answered)

    def grammar(self, answer: JsonAnswer | None, *, text_rule: str = TEXT_RULE) -> str:
        answer_rule = answer.rule("answer") if answer else "answer: TEXT\n" + text_rule
        if self.mode == "none":
            return lark("start: answer", answer_rule)
        calls = self._call_rules()
        if self.mode == "auto":
            return lark("start: answer | calls", answer_rule, *calls)
        return lark("start: calls", *calls)

    def text_grammar(self, answer: JsonAnswer | None) -> str:
        """The grammar of a second answer when the first only repeated answered calls."""
        text_only = ToolPlan(self.functions, "none", self.is_parallel, self.answered)
        return text_only.grammar(answer, text_rule=PROSE_RULE)

    def _call_rules(self) -> list[str]:
        schemas = [function.call_schema() for function in self.callable]
        lenient = any(function.needs_lenient for function in self.callable)
        one = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        repeat = f' ("\\n" call){{0,{MAX_PARALLEL_CALLS - 1}}}' if self.is_parallel else ""
        return [f"calls: call{repeat}", f"call: %json {json.dumps(guided(one, lenient=lenient))}"]

    def system_prompt(self) -> str:
        listing = "\n".join(
            json.dumps({"name": f.name, "description": f.description, "parameters": f.parameters})
            for f in self.functions
        )
        several = " For several calls, write one such object per line." if self.is_parallel else ""
        how = (
            'To call a function, reply with only a JSON object {"name": <function name>, '
            f'"arguments": <arguments object>}}.{several}'
        )
        if self.mode == "required":
            rule = f"You must call at least one function. {how}"
        elif self.mode == "named":
            rule = f"You must call the function {self.functions[0].name}. {how}"
        else:
            rule = f"{how} Otherwise, answer in plain text."
        return f"# Tools\n\nYou can call these functions:\n{listing}\n\n{rule}"


def tool_plan(request: ChatCompletionRequest) -> ToolPlan | None:
    """The request's tools checked and compiled, or None when it has none."""
    if not request.tools:
        for name in ("tool_choice", "parallel_tool_calls"):
            if getattr(request, name) is not None:
                raise errors.invalid_value(
                    f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are "
                    "specified.",
                    param=name,
                )
        return None
    functions = _functions(request)
    mode, chosen = _mode(request.tool_choice, functions)
    if chosen is not None:  # the named function first: ToolPlan.callable takes it from there
        functions = (chosen, *(f for f in functions if f is not chosen))
    parallel = request.parallel_tool_calls is not False and mode != "named"
    plan = ToolPlan(functions, mode, parallel, _answered_calls(request.messages))
    ensure_compiles(plan.grammar(None), param="tools")
    return plan


def _functions(request: ChatCompletionRequest) -> tuple[Function, ...]:
    seen: set[str] = set()
    functions = []
    for index, tool in enumerate(request.tools or []):
        spec = tool.function
        if spec.name in seen:
            raise errors.invalid_value(
                f"Invalid 'tools': the function name '{spec.name}' is used more than once.",
                param=f"tools[{index}].function.name",
            )
        seen.add(spec.name)
        param = f"tools[{index}].function.parameters"
        parameters = spec.parameters if spec.parameters is not None else _EMPTY_PARAMETERS
        checked_schema(parameters, param=param)
        function = Function(spec.name, spec.description or "", closed(parameters))
        functions.append(_with_strictness(function, is_strict=bool(spec.strict), param=param))
    return tuple(functions)


def _with_strictness(function: Function, *, is_strict: bool, param: str) -> Function:
    """Compile the call strictly; a non-strict tool that needs it is compiled leniently."""
    call = f"start: %json {json.dumps(guided(function.call_schema(), lenient=False))}"
    try:
        ensure_compiles(lark(call), param=param)
    except errors.APIError:
        if is_strict:
            raise
        return Function(function.name, function.description, function.parameters, True)
    return function


def _mode(
    choice: str | NamedToolChoice | None, functions: tuple[Function, ...]
) -> tuple[Mode, Function | None]:
    if choice is None or choice == "auto":
        return "auto", None
    if choice == "none":
        return "none", None
    if choice == "required":
        return "required", None
    assert isinstance(choice, NamedToolChoice)
    for function in functions:
        if function.name == choice.function.name:
            return "named", function
    raise errors.invalid_value(
        f"Invalid value for 'tool_choice': no function named '{choice.function.name}' was "
        "specified in 'tools'.",
        param="tool_choice",
    )


def _answered_calls(messages: list[ChatMessage]) -> frozenset[tuple[str, str]]:
    answered_ids = {m.tool_call_id for m in messages if m.role == "tool"}
    return frozenset(
        (call.function.name, canonical(call.function.arguments))
        for message in messages
        for call in message.tool_calls or []
        if call.id in answered_ids
    )


def canonical(arguments: str) -> str:
    """Arguments in one spelling, so equal calls compare equal however they were written."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's stack
        return arguments


# --- The conversation as the engine sees it --------------------------------------------------


def render_conversation(
    messages: list[ChatMessage], texts: list[str], plan: ToolPlan | None
) -> list[dict[str, Any]]:
    """Engine messages: plain roles and text, calls and results written out in the text.

    `texts[i]` is the text of `messages[i]` (images already read). Consecutive tool results
    become one user turn, as chat templates expect turns to alternate.
    """
    names = {call.id: call.function.name for m in messages for call in m.tool_calls or []}
    rendered: list[dict[str, Any]] = []
    results: list[str] = []
    for message, text in zip(messages, texts, strict=True):
        if message.role == "tool":
            name = names.get(message.tool_call_id or "", "the function")
            results.append(f"The function {name} returned: {text}")
            continue
        if results:
            rendered.append(_results_turn(results))
            results = []
        rendered.append({"role": message.role, "content": _with_calls(message, text)})
    if results:
        rendered.append(_results_turn(results))
    if plan is not None and plan.mode != "none":
        _add_system_prompt(rendered, plan.system_prompt())
    return rendered


def _results_turn(results: list[str]) -> dict[str, Any]:
    return {"role": "user", "content": "\n".join([*results, "Use these results to answer."])}


def _with_calls(message: ChatMessage, text: str) -> str:
    lines = [text] if text else []
    for call in message.tool_calls or []:
        try:
            arguments: Any = json.loads(call.function.arguments)
        except (ValueError, RecursionError):
            arguments = call.function.arguments
        call_json = {"name": call.function.name, "arguments": arguments}
        lines.append(json.dumps(call_json, separators=(",", ":")))
    return "\n".join(lines)


def _add_system_prompt(messages: list[dict[str, Any]], prompt: str) -> None:
    if messages and messages[0]["role"] in {"system", "developer"}:
        first = messages[0]
        messages[0] = {**first, "content": f"{first['content']}\n\n{prompt}".lstrip()}
    else:
        messages.insert(0, {"role": "system", "content": prompt})


# --- Reading calls back out of the text, as it streams ---------------------------------------


@dataclass
class _Call:
    name: str
    fragments: list[str] = field(default_factory=list)
    is_complete: bool = False

    @property
    def arguments(self) -> str:
        return "".join(self.fragments)


@dataclass
class CallScanner:
    """Splits constrained output into content, or calls and their argument fragments.

    The grammar guarantees the shape: text that never opens with "{", or compact call objects
    separated by newlines whose `name` comes before `arguments`. Until the output has shown
    which, it is held (it can only be the start of a call head).
    """

    functions: tuple[Function, ...]
    is_content: bool | None = None  # None: not decided yet
    pending: str = ""
    state: Literal["between", "head", "arguments", "tail"] = "between"
    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    calls: list[_Call] = field(default_factory=list)

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Events for more output: ("content", text), ("start", name), ("arguments", text),
        ("end", "")."""
        if self.is_content:
            return [("content", text)] if text else []
        if self.is_content is None:
            return self._decide(text)
        events: list[tuple[str, str]] = []
        for char in text:
            self._step(char, events)
        return _merged(events)

    def _decide(self, text: str) -> list[tuple[str, str]]:
        self.pending += text
        heads = [function.head() for function in self.functions]
        if any(self.pending.startswith(head) for head in heads):
            self.is_content = False
            pending, self.pending = self.pending, ""
            return self.feed(pending)
        if not any(head.startswith(self.pending) for head in heads):
            self.is_content = True
            pending, self.pending = self.pending, ""
            return self.feed(pending)
        return []

    def _step(self, char: str, events: list[tuple[str, str]]) -> None:
        if self.state == "between":
            if char == "{":
                self.state, self.pending = "head", char
        elif self.state == "head":
            self.pending += char
            for function in self.functions:
                if self.pending == function.head():
                    self.calls.append(_Call(function.name))
                    events.append(("start", function.name))
                    self.state, self.depth = "arguments", 0
        elif self.state == "arguments":
            self.calls[-1].fragments.append(char)
            events.append(("arguments", char))
            if self._closes_value(char):
                self.state = "tail"
        elif char == "}":
            self.calls[-1].is_complete = True
            events.append(("end", ""))
            self.state = "between"

    def _closes_value(self, char: str) -> bool:
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char == '"':
                self.in_string = False
        elif char == '"':
            self.in_string = True
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1
        return self.depth == 0 and not self.in_string


def _merged(events: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[tuple[str, str]] = []
    for kind, text in events:
        if kind == "arguments" and merged and merged[-1][0] == "arguments":
            merged[-1] = ("arguments", merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


# --- One choice: engine chunks in, OpenAI-shaped chunks out ----------------------------------


@dataclass
class _Shaper:
    """Turns one engine pass into chunks whose deltas carry `tool_calls`."""

    plan: ToolPlan
    sent_calls: int = 0
    scanner: CallScanner = field(init=False)
    held: list[tuple[str, str]] = field(default_factory=list)
    # Token logprobs of text held while undecided, for the content it may turn out to be.
    held_logprobs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scanner = CallScanner(self.plan.callable)
        if self.plan.mode in {"required", "named"}:
            self.scanner.is_content = False

    def shape(self, chunk: Chunk) -> list[Chunk]:
        out: list[Chunk] = []
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content") or ""
            self.held_logprobs.extend((choice.get("logprobs") or {}).get("content") or [])
            for kind, value in self.scanner.feed(text):
                out.extend(self._on_event(kind, value))
            if self.scanner.is_content is not None:
                self.held_logprobs = []
            finish = choice.get("finish_reason")
            if finish:
                if finish == "stop" and self.sent_calls:
                    finish = "tool_calls"
                out.append(_finish_chunk(finish, choice))
        if not out:  # keep what the engine said besides text: usage, timings
            out.append({**chunk, "choices": []})
        else:
            out[-1] = {**chunk, **out[-1]}
        return out

    def _on_event(self, kind: str, value: str) -> list[Chunk]:
        if kind == "content":
            logprobs = {"content": self.held_logprobs} if self.held_logprobs else None
            self.held_logprobs = []
            return [_chunk({"content": value}, logprobs=logprobs)]
        if not self.plan.holds_repeats:
            return self._deltas([(kind, value)])
        self.held.append((kind, value))
        if kind != "end":
            return []
        held, self.held = self.held, []
        call = self.scanner.calls[-1]
        if (call.name, canonical(call.arguments)) in self.plan.answered:
            return []
        return self._deltas(held)

    def _deltas(self, events: list[tuple[str, str]]) -> list[Chunk]:
        out = []
        for kind, value in events:
            if kind == "start":
                call = {
                    "index": self.sent_calls,
                    "id": new_call_id(),
                    "type": "function",
                    "function": {"name": value, "arguments": ""},
                }
                self.sent_calls += 1
                out.append(_chunk({"tool_calls": [call]}))
            elif kind == "arguments":
                call = {"index": self.sent_calls - 1, "function": {"arguments": value}}
                out.append(_chunk({"tool_calls": [call]}))
        return out

    @property
    def repeated_only(self) -> bool:
        """The pass ended with calls, all of them repeats of answered ones."""
        return self.scanner.is_content is False and self.sent_calls == 0


def _chunk(
    delta: dict[str, Any], *, finish_reason: str | None = None, logprobs: Any = None
) -> Chunk:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}
    return {"choices": [choice]}


async def tool_stream(
    start: StartStream, body: dict[str, Any], plan: ToolPlan, answer: JsonAnswer | None
) -> AsyncIterator[Chunk]:
    """One choice of a tools request: calls read from the text, repeats answered again."""
    shaper = _Shaper(plan)
    held: list[Chunk] = []  # the end of a pass that only repeated calls, while its fate is open
    async for chunk in start(body):
        for out in shaper.shape(chunk):
            if held or (plan.holds_repeats and shaper.repeated_only and _finish_of(out) == "stop"):
                held.append(out)
            else:
                yield out
    if not held:
        return
    tokens = max(_completion_tokens(chunk) for chunk in held)
    # The second answer gets what the first left of the choice's max_tokens (the engine body
    # always carries it): both passes together stay within what the call's hold covers.
    budget = int(body["max_tokens"]) - tokens
    if budget < 1:
        for chunk in held:  # nothing left to answer with: the choice ends as cut off
            yield _finished_by_length(chunk)
        return
    retry = {**body, "grammar": plan.text_grammar(answer), "max_tokens": budget}
    async for chunk in start(retry):
        yield _counting_first_pass(chunk, tokens)


def _finished_by_length(chunk: Chunk) -> Chunk:
    if _finish_of(chunk) is None:
        return chunk
    choices = [{**choice, "finish_reason": "length"} for choice in chunk["choices"]]
    return {**chunk, "choices": choices}


def _finish_chunk(finish_reason: str, choice: dict[str, Any]) -> Chunk:
    """The closing chunk, with the stop sequence that ended a text answer (not a call's)."""
    chunk = _chunk({}, finish_reason=finish_reason)
    if finish_reason == "stop" and choice.get("stop_reason"):
        chunk["choices"][0]["stop_reason"] = choice["stop_reason"]
    return chunk


def _finish_of(chunk: Chunk) -> str | None:
    choices = chunk.get("choices") or [{}]
    return choices[0].get("finish_reason")


def _completion_tokens(chunk: Chunk) -> int:
    usage = chunk.get("usage") or {}
    timings = chunk.get("timings") or {}
    return max(int(usage.get("completion_tokens", 0)), int(timings.get("predicted_n", 0)))


def _counting_first_pass(chunk: Chunk, tokens: int) -> Chunk:
    """Bill the discarded first answer's tokens too: they were generated."""
    if not tokens:
        return chunk
    chunk = dict(chunk)
    if chunk.get("usage"):
        usage = dict(chunk["usage"])
        usage["completion_tokens"] = int(usage.get("completion_tokens", 0)) + tokens
        chunk["usage"] = usage
    if chunk.get("timings"):
        timings = dict(chunk["timings"])
        timings["predicted_n"] = int(timings.get("predicted_n", 0)) + tokens
        chunk["timings"] = timings
    return chunk
