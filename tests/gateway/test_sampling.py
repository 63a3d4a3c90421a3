"""n, logit_bias, seed reproducibility (also under concurrent load) and penalties."""

import threading

import httpx
import pytest

pytestmark = pytest.mark.xdist_group("live")

# Qwen2.5's token ids: "Hi" and "Hello" (read from the engine's logprobs).
HI, HELLO_TOKEN = "13048", "9707"
GREET = [{"role": "user", "content": "hi"}]
POEM = [{"role": "user", "content": "Write a short poem about rivers."}]


def _chat(api, **body):
    response = api.post("/chat/completions", json={"model": "plugsky-mini", **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_logit_bias_forces_a_token(api):
    body = _chat(api, messages=GREET, max_tokens=3, temperature=0, logit_bias={HI: 100})
    assert body["choices"][0]["message"]["content"] == "HiHiHi"


def test_logit_bias_bans_a_token(api):
    free = _chat(api, messages=GREET, max_tokens=2, temperature=0)
    assert free["choices"][0]["message"]["content"].startswith("Hello")
    banned = _chat(api, messages=GREET, max_tokens=2, temperature=0, logit_bias={HELLO_TOKEN: -100})
    assert not banned["choices"][0]["message"]["content"].startswith("Hello")


def test_logit_bias_on_completions(api):
    response = api.post(
        "/completions",
        json={"model": "plugsky-mini", "prompt": "x", "max_tokens": 2, "logit_bias": {HI: 100}},
    )
    assert response.json()["choices"][0]["text"] == "HiHi"


@pytest.mark.parametrize("bias", [{"Hi": 5}, {HI: 101}, {HI: -100.5}])
def test_invalid_logit_bias(api, bias):
    response = api.post(
        "/chat/completions", json={"model": "plugsky-mini", "messages": GREET, "logit_bias": bias}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith("logit_bias")


def test_n_choices_are_independent_with_exact_total_usage(api):
    body = _chat(api, messages=POEM, n=3, max_tokens=12, temperature=1.0, seed=5)
    texts = [choice["message"]["content"] for choice in body["choices"]]
    assert len(set(texts)) == 3
    assert body["usage"]["completion_tokens"] == 36
    single = _chat(api, messages=POEM, max_tokens=12, temperature=1.0, seed=5)
    assert body["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]
    assert texts[0] == single["choices"][0]["message"]["content"]  # choice 0 uses the seed


def test_seed_reproduces_the_output(api):
    request = {"messages": POEM, "max_tokens": 30, "temperature": 1.0, "seed": 42}
    first = _chat(api, **request)["choices"][0]["message"]["content"]
    assert _chat(api, **request)["choices"][0]["message"]["content"] == first
    other = _chat(api, **{**request, "seed": 43})["choices"][0]["message"]["content"]
    assert other != first


def test_seed_reproduces_the_output_beside_other_requests(api, live_server_url, live_key):
    request = {"messages": POEM, "max_tokens": 30, "temperature": 1.0, "seed": 42}
    alone = _chat(api, **request)["choices"][0]["message"]["content"]
    _, raw_key = live_key

    def neighbour(number: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {raw_key}"}, timeout=120) as client:
            client.post(
                f"{live_server_url}/v1/chat/completions",
                json={
                    "model": "plugsky-mini",
                    "messages": [{"role": "user", "content": f"Count to {number + 20}."}],
                    "max_tokens": 30,
                    "temperature": 1.0,
                },
            )

    threads = [threading.Thread(target=neighbour, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    busy = _chat(api, **request)["choices"][0]["message"]["content"]
    for thread in threads:
        thread.join()
    assert busy == alone


def test_frequency_penalty_applies_over_the_whole_output(api):
    # 80 tokens: past llama.cpp's default 64-token penalty window.
    ask = [{"role": "user", "content": "Write the word cat 40 times, separated by spaces."}]
    plain = _chat(api, messages=ask, max_tokens=80, temperature=0)
    penalised = _chat(api, messages=ask, max_tokens=80, temperature=0, frequency_penalty=2.0)
    plain_cats = plain["choices"][0]["message"]["content"].lower().count("cat ")
    penalised_cats = penalised["choices"][0]["message"]["content"].lower().count("cat ")
    assert plain_cats >= 30
    assert penalised_cats < plain_cats / 2


def test_presence_penalty_is_applied(api):
    # A constant 2.0 cannot outweigh a greedy "dog dog dog", but it reshapes sampling: the same
    # seed then draws a different text.
    request = {"messages": POEM, "max_tokens": 30, "temperature": 1.0, "seed": 7}
    plain = _chat(api, **request)["choices"][0]["message"]["content"]
    penalised = _chat(api, **request, presence_penalty=2.0)["choices"][0]["message"]["content"]
    assert penalised != plain
