"""Client libraries' helpers against the built-in models: openai's .stream() and .parse(),
LangChain's ChatOpenAI (bind_tools, with_structured_output) and LlamaIndex's OpenAILike."""

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.xdist_group("live")

MODEL = "plugsky-mini"
PARIS = [{"role": "user", "content": "What's the weather in Paris?"}]


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


class Pet(BaseModel):
    name: str = Field(max_length=20)
    species: Literal["cat", "dog", "fish"]
    age_years: int = Field(ge=0, le=30)


PET_QUESTION = "Invent a pet: give its name, its species (cat, dog or fish) and its age."


@pytest.fixture
def client(live_server_url, live_key):
    _, raw_key = live_key
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw_key, max_retries=0)


@pytest.fixture
def base_url(live_server_url):
    return f"{live_server_url}/v1"


def test_openai_stream_helper_with_tools(client):
    with client.chat.completions.stream(
        model=MODEL,
        messages=PARIS,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    kinds = [event.type for event in events]
    assert "tool_calls.function.arguments.delta" in kinds
    assert "tool_calls.function.arguments.done" in kinds
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    [call] = message.tool_calls
    assert call.function.name == "GetWeather"
    parsed = call.function.parsed_arguments
    assert isinstance(parsed, GetWeather) and parsed.city == "Paris"


def test_openai_parse_with_a_pydantic_response_format(client):
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": PET_QUESTION}],
        response_format=Pet,
        temperature=0,
        max_tokens=60,
    )
    pet = completion.choices[0].message.parsed
    assert isinstance(pet, Pet) and pet.name


def test_openai_stream_helper_with_a_pydantic_response_format(client):
    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": PET_QUESTION}],
        response_format=Pet,
        temperature=0.8,
        seed=4,
        max_tokens=60,
    ) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Pet)


def test_openai_parse_with_strict_tools(client):
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=PARIS,
        tools=[openai.pydantic_function_tool(GetWeather)],
        temperature=0,
        max_tokens=60,
    )
    [call] = completion.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, GetWeather)


def test_langchain_bind_tools(base_url, live_key):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL, base_url=base_url, api_key=live_key[1], temperature=0, max_tokens=60
    )
    message = llm.bind_tools([GetWeather], tool_choice="required").invoke(PARIS)
    [call] = message.tool_calls
    assert call["name"] == "GetWeather" and call["args"]["city"] == "Paris"
    assert call["id"].startswith("call_")

    chunks = list(llm.bind_tools([GetWeather], tool_choice="GetWeather").stream(PARIS))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.tool_calls[0]["name"] == "GetWeather"
    GetWeather.model_validate(merged.tool_calls[0]["args"])


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_with_structured_output(base_url, live_key, method):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL, base_url=base_url, api_key=live_key[1], temperature=0, max_tokens=80
    )
    # JSON mode sends no schema: as with OpenAI, the prompt must name the keys.
    keys = " Reply in JSON with the keys name, species and age_years."
    question = PET_QUESTION + (keys if method == "json_mode" else "")
    pet = llm.with_structured_output(Pet, method=method).invoke(question)
    assert isinstance(pet, Pet)


def test_langchain_tool_loop(base_url, live_key):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL, base_url=base_url, api_key=live_key[1], temperature=0, max_tokens=60
    )
    with_tools = llm.bind_tools([GetWeather])
    history = [HumanMessage("What's the weather in Paris?")]
    reply = with_tools.invoke(history)
    [call] = reply.tool_calls
    history += [reply, ToolMessage(json.dumps({"temperature": 21}), tool_call_id=call["id"])]
    final = with_tools.invoke(history)
    assert not final.tool_calls and "21" in final.content


def _llama_index_llm(base_url, raw_key):
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=MODEL,
        api_base=base_url,
        api_key=raw_key,
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=4096,
        temperature=0,
        max_tokens=60,
        max_retries=0,
    )


def test_llama_index_openai_like_chat_and_complete(base_url, live_key):
    from llama_index.core.llms import ChatMessage

    llm = _llama_index_llm(base_url, live_key[1])
    answer = llm.chat([ChatMessage(role="user", content="What is 2+2? Answer with a number.")])
    assert "4" in answer.message.content
    streamed = "".join(part.delta for part in llm.stream_complete("Say hello."))
    assert streamed


def test_llama_index_openai_like_tools_and_structured_output(base_url, live_key):
    from llama_index.core.prompts import PromptTemplate
    from llama_index.core.tools import FunctionTool

    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return f"21 degrees in {city}"

    llm = _llama_index_llm(base_url, live_key[1])
    tool = FunctionTool.from_defaults(fn=get_weather)
    response = llm.chat_with_tools([tool], user_msg="What's the weather in Paris?")
    [selection] = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    assert selection.tool_name == "get_weather" and selection.tool_kwargs["city"] == "Paris"

    pet = llm.structured_predict(Pet, PromptTemplate(PET_QUESTION))
    assert isinstance(pet, Pet)
