"""The official `openai` client, unchanged, against a running inferd (started by
tests/tests/http.rs, which passes where it listens). References are independent of inferd:
transformers' greedy SmolLM2 text and Python onnxruntime's MiniLM embeddings, both recorded in
tests/fixtures."""

import base64
import json
import os
import pathlib
import re
import threading
import time

import httpx2
import jsonschema
import numpy as np
import openai
import pytest

URL = os.environ["INFERD_HTTP_URL"]
SOCKET = os.environ["INFERD_HTTP_SOCKET"]
FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
LLM, EMBED, ENDLESS, THINK = "smollm2-fp32", "minilm", "tiny", "think"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def client():
    return openai.OpenAI(base_url=f"{URL}/v1", api_key="unused", max_retries=0)


def health():
    return httpx2.get(f"{URL}/health").json()


def model_row(name):
    return next(m for m in health()["models"] if m["name"] == name)


def wait_until(what, ok, secs=30):
    deadline = time.monotonic() + secs
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {health()}"
        time.sleep(0.05)


def test_models_lists_the_repository(client):
    ids = {m.id for m in client.models.list()}
    assert {LLM, EMBED, ENDLESS} <= ids


def test_completions_give_transformers_greedy_text(client):
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    for case in fx["cases"]:
        prompt = fx["chat_format"].replace("{prompt}", case["prompt"])
        new_ids = case["new_ids"]
        r = client.completions.create(
            model=LLM, prompt=prompt, max_tokens=len(new_ids), temperature=0
        )
        choice = r.choices[0]
        assert choice.text == case["text"].removesuffix("<|im_end|>"), case["prompt"]
        assert choice.finish_reason == ("stop" if new_ids[-1] == 2 else "length")
        assert r.usage.prompt_tokens == len(case["prompt_ids"])
        assert r.usage.completion_tokens == len([i for i in new_ids if i != 2])


def test_streamed_chat_is_the_whole_answer_in_pieces(client):
    whole = client.chat.completions.create(
        model=LLM, messages=QUESTION, max_tokens=30, temperature=0
    )
    text = whole.choices[0].message.content
    assert "Paris" in text
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model=LLM,
            messages=QUESTION,
            max_tokens=30,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_reasoning_comes_in_reasoning_content(client):
    """`think` answers every prompt with a scripted <think>REASONING</think>ANSWER
    (models/testdata/make_think_model.py)."""
    script = json.loads(pathlib.Path(os.environ["INFERD_THINK_SCRIPT"]).read_text())
    r = client.chat.completions.create(model=THINK, messages=QUESTION)
    message = r.choices[0].message
    assert message.content == script["answer"]
    assert message.reasoning_content == script["reasoning"]
    assert r.usage.completion_tokens_details.reasoning_tokens > 0
    chunks = list(client.chat.completions.create(model=THINK, messages=QUESTION, stream=True))
    pieces = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in pieces) == script["reasoning"]
    assert "".join(d.content or "" for d in pieces) == script["answer"]


def test_embeddings_match_python_onnxruntime(client):
    fx = json.loads((FIXTURES / "minilm_reference.json").read_text())
    texts = [c["text"] for c in fx["cases"]]
    r = client.embeddings.create(model=EMBED, input=texts)
    assert [d.index for d in r.data] == list(range(len(texts)))
    for d, case in zip(r.data, fx["cases"]):
        diff = np.abs(np.array(d.embedding) - np.array(case["embedding"])).max()
        assert diff < 1e-4, (case["text"], diff)
    assert r.usage.prompt_tokens == sum(c["tokens"] for c in fx["cases"])
    # base64: little-endian float32, as OpenAI sends it.
    raw = httpx2.post(
        f"{URL}/v1/embeddings",
        json={"model": EMBED, "input": texts[0], "encoding_format": "base64"},
    ).json()
    v = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(v - np.array(fx["cases"][0]["embedding"])).max() < 1e-4
    with pytest.raises(openai.BadRequestError, match="dimensions = 8 is not supported"):
        client.embeddings.create(model=EMBED, input="x", dimensions=8)


def test_a_unix_socket_client():
    transport = httpx2.HTTPTransport(uds=SOCKET)
    c = openai.OpenAI(
        base_url="http://inferd/v1",
        api_key="unused",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )
    r = c.chat.completions.create(model=LLM, messages=QUESTION, max_tokens=30, temperature=0)
    assert "Paris" in r.choices[0].message.content


def test_errors_are_openai_error_objects(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=QUESTION)
    assert e.value.code == "model_not_found"
    for bad in [{"temperature": 1000}, {"n": 2}, {"top_p": 2}]:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=LLM, messages=QUESTION, **bad)
        assert e.value.code == "invalid_input", bad
    with pytest.raises(openai.BadRequestError, match="missing field `messages`"):
        client.post("/chat/completions", body={"model": LLM}, cast_to=object)


def test_overload_is_429_with_retry_after_and_disconnects_cancel(client):
    """`tiny` decodes one sequence and queues one more: a third waits for neither. Closing the
    streams (the client going away) ends their generations."""
    first = client.chat.completions.create(
        model=ENDLESS, messages=QUESTION, max_tokens=50000, stream=True
    )
    next(iter(first))
    wait_until("the first generation", lambda: model_row(ENDLESS)["active"] == 1)
    queued = {}

    def second():
        queued["stream"] = client.chat.completions.create(
            model=ENDLESS, messages=QUESTION, max_tokens=50000, stream=True
        )

    t = threading.Thread(target=second)
    t.start()
    wait_until("the second request queued", lambda: model_row(ENDLESS)["queue_depth"] == 1)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model=ENDLESS, messages=QUESTION, max_tokens=5)
    assert e.value.code == "overloaded"
    assert e.value.response.headers["retry-after"] == "1"
    first.close()
    t.join(timeout=30)
    queued["stream"].close()
    wait_until("both generations cancelled", lambda: model_row(ENDLESS)["active"] == 0)
    # A whole (not streamed) answer whose client gives up is cancelled too.
    gave_up = []

    def impatient():
        c = openai.OpenAI(base_url=f"{URL}/v1", api_key="unused", max_retries=0, timeout=3)
        try:
            c.chat.completions.create(model=ENDLESS, messages=QUESTION, max_tokens=50000)
        except openai.APITimeoutError as e:
            gave_up.append(e)

    t = threading.Thread(target=impatient)
    t.start()
    wait_until("the impatient generation", lambda: model_row(ENDLESS)["active"] == 1)
    t.join(timeout=30)
    assert gave_up, "the client should have timed out"
    wait_until("the abandoned generation cancelled", lambda: model_row(ENDLESS)["active"] == 0)


STRUCTURED = json.loads((FIXTURES / "structured_output.json").read_text())


def json_schema_format():
    return {"type": "json_schema", "json_schema": {"name": "thing", "schema": STRUCTURED["schema"]}}


def test_structured_output_is_schema_valid_for_every_prompt(client):
    for prompt in STRUCTURED["prompts"]:
        r = client.chat.completions.create(
            model=LLM,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=STRUCTURED["max_tokens"],
            temperature=0,
            response_format=json_schema_format(),
        )
        choice = r.choices[0]
        assert choice.finish_reason == "stop", (prompt, choice.message.content)
        jsonschema.validate(json.loads(choice.message.content), STRUCTURED["schema"])
    # Streamed, sampled: still valid.
    chunks = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": STRUCTURED["prompts"][3]}],
        max_tokens=STRUCTURED["max_tokens"],
        temperature=1.0,
        seed=7,
        stream=True,
        response_format=json_schema_format(),
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), STRUCTURED["schema"])
    obj = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": "Describe a dog as JSON."}],
        max_tokens=STRUCTURED["max_tokens"],
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert obj.choices[0].finish_reason == "stop", obj.choices[0].message.content
    assert isinstance(json.loads(obj.choices[0].message.content), dict)


def test_regex_and_grammar_constrain_the_text(client):
    r = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": "Pick a number."}],
        max_tokens=20,
        extra_body={"regex": "[0-9]{3}"},
    )
    assert re.fullmatch("[0-9]{3}", r.choices[0].message.content)
    r = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=20,
        extra_body={"grammar": 'start: "yes" | "no"'},
    )
    assert r.choices[0].message.content in ("yes", "no")


def test_an_invalid_schema_is_refused_before_decoding(client):
    served = model_row(LLM)["served"]
    for bad in [
        {"type": "json_schema", "json_schema": {"schema": {"$ref": "#/nowhere"}}},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "yaml"},
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=LLM, messages=QUESTION, response_format=bad)
        assert e.value.code == "invalid_input", bad
    with pytest.raises(openai.BadRequestError, match="invalid regex"):
        client.chat.completions.create(model=LLM, messages=QUESTION, extra_body={"regex": "(["})
    assert model_row(LLM)["served"] == served, "nothing was decoded"


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time now in a time zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 30}},
                   "required": ["zone"], "additionalProperties": False}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def assert_call(call, tool):
    assert call.type == "function" and call.id
    assert call.function.name == tool["function"]["name"]
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_a_tool_call_round_trip(client):
    r = client.chat.completions.create(
        model=LLM, messages=ASK_WEATHER, tools=[WEATHER, TIME], tool_choice="required",
        max_tokens=100, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name in ("get_weather", "get_time")
    assert_call(call, WEATHER if call.function.name == "get_weather" else TIME)
    # The call and its result go back; the model answers in words.
    back = ASK_WEATHER + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees celsius and sunny"},
    ]
    answer = client.chat.completions.create(
        model=LLM, messages=back, tools=[WEATHER, TIME], tool_choice="none",
        max_tokens=40, temperature=0)
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content
    assert answer.usage.prompt_tokens > r.usage.prompt_tokens


def test_a_named_tool_and_streamed_call_deltas(client):
    chunks = list(client.chat.completions.create(
        model=LLM, messages=ASK_WEATHER, tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=100, temperature=0, stream=True))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1 and deltas[0].index == 0
    assert_call(deltas[0], TIME)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_auto_lets_the_model_choose_and_constrains_its_call(client):
    """SmolLM2's template shows no tools: inferd shows them in a system message and writes the
    earlier call in the same format. Greedy SmolLM2 answers a plain question in words, and
    follows a conversation of calls with a call of its own, whose arguments are constrained
    from the <tool_call> it opened."""
    words = client.chat.completions.create(
        model=LLM, messages=ASK_WEATHER, tools=[WEATHER], max_tokens=30, temperature=0)
    assert words.choices[0].message.tool_calls is None
    assert "<tool_call>" not in words.choices[0].message.content
    earlier = {"role": "assistant", "content": None, "tool_calls": [{
        "id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": "Rome", "unit": "celsius"})}}]}
    messages = [{"role": "user", "content": "What is the weather in Rome?"}, earlier,
                {"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(
        model=LLM, messages=messages, tools=[WEATHER], max_tokens=100, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert_call(choice.message.tool_calls[0], WEATHER)
    streamed = list(client.chat.completions.create(
        model=LLM, messages=messages, tools=[WEATHER], max_tokens=100, temperature=0, stream=True))
    deltas = [d for c in streamed if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert [d.function.arguments for d in deltas] == [choice.message.tool_calls[0].function.arguments]
    with pytest.raises(openai.BadRequestError, match="no tool is named"):
        client.chat.completions.create(
            model=LLM, messages=ASK_WEATHER, tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}})
