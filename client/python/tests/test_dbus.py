"""The blocking D-Bus client against the real daemon."""

import time

import numpy as np
import pytest

import inferd_client
from conftest import (
    CLASSIFIER, EMBED, ENDLESS, LLM, TENSOR, TIMEOUT, check_ops_outputs, cosine, max_abs_diff,
    ops_inputs,
)

QUESTION = [("user", "What is the capital of France?")]


def test_models_and_health_list_the_repository(client):
    models = {m["name"]: m for m in client.models()}
    assert set(models) == {EMBED, LLM, ENDLESS, CLASSIFIER, TENSOR}
    assert all(m["state"] == "ready" for m in models.values()), models
    assert models[EMBED]["kind"] == "embedding" and models[EMBED]["provider"]
    assert isinstance(models[EMBED]["queue_depth"], int)
    h = client.health()
    assert h["status"] == "ok"
    assert h["version"] == client.property("Version")
    assert h["uptime_s"] >= 0 and h["rss_bytes"] > 0
    assert {m["name"] for m in h["models"]} == set(models)
    assert any(p["pool"] == "host" for p in h["memory"])


def test_embeddings_match_python_onnxruntime(client, minilm_reference):
    texts = [c["text"] for c in minilm_reference]
    got = client.embed(EMBED, texts)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float32 and got.shape == (len(texts), 384)
    for row, case in zip(got, minilm_reference):
        assert max_abs_diff(row, case["embedding"]) < 1e-4, case["text"]
        assert cosine(row, case["embedding"]) > 0.9999
    # One text alone is a batch of one, with the same vector.
    one = client.embed(EMBED, texts[0])
    assert one.shape == (1, 384)
    assert max_abs_diff(one[0], got[0]) < 1e-6


def test_embeddings_are_lists_without_numpy(bus_address, client, minilm_reference):
    case = minilm_reference[0]
    with inferd_client.Client(bus_address, timeout=TIMEOUT, use_numpy=False) as plain:
        got = plain.embed(EMBED, [case["text"]])
    assert type(got) is list and type(got[0]) is list and type(got[0][0]) is float
    assert max_abs_diff(got[0], case["embedding"]) < 1e-4


def test_classify_ranks_labels(client):
    rows = client.classify(CLASSIFIER, ["turn on the lights please", "what time is it"])
    assert [r[0][0] for r in rows] == ["lights_on", "time"]
    for row in rows:
        assert len(row) == 7  # every label, top_k = 0
        probs = [p for _, p in row]
        assert probs == sorted(probs, reverse=True)
        assert abs(sum(probs) - 1) < 1e-4
    top = client.classify(CLASSIFIER, "turn on the lights please", top_k=2)
    assert [label for label, _ in top[0]] == [label for label, _ in rows[0][:2]]


def test_complete_gives_transformers_greedy_text(client, greedy_cases):
    for case in greedy_cases:
        r = client.complete(LLM, case["prompt"], max_tokens=case["max_tokens"], temperature=0)
        assert r.text == case["text"]
        assert r.finish_reason == case["finish_reason"]
        assert r.info["prompt_tokens"] == case["prompt_tokens"]
        assert r.info["completion_tokens"] == case["completion_tokens"]
        assert r.info["request_id"].startswith("d")


def test_streamed_deltas_concatenate_to_the_greedy_text(client, greedy_cases):
    for case in greedy_cases:
        stream = client.generate(LLM, case["prompt"], max_tokens=case["max_tokens"], temperature=0)
        deltas = list(stream)
        assert len(deltas) > 1, "streamed in pieces"
        assert {d.channel for d in deltas} == {"content"}
        assert "".join(d.text for d in deltas) == case["text"]
        assert stream.finish_reason == case["finish_reason"]
        assert stream.info["completion_tokens"] == case["completion_tokens"]


def test_chat_stream_is_the_chat_answer_in_pieces(client):
    whole = client.chat_complete(LLM, QUESTION, max_tokens=24, temperature=0)
    assert "Paris" in whole.text and whole.finish_reason == "stop"
    # Dict messages work as well as tuples.
    messages = [{"role": "user", "content": QUESTION[0][1]}]
    with client.chat(LLM, messages, max_tokens=24, temperature=0) as stream:
        c = stream.collect()
    assert (c.text, c.finish_reason) == (whole.text, "stop")
    assert c.info["prompt_tokens"] == whole.info["prompt_tokens"]


def wait_idle(client, model, secs=20):
    deadline = time.monotonic() + secs
    while True:
        row = next(m for m in client.models() if m["name"] == model)
        if row["active"] == 0 and row["queue_depth"] == 0:
            return
        assert time.monotonic() < deadline, f"{model} still busy: {row}"
        time.sleep(0.05)


def test_cancel_ends_the_stream_with_cancelled(client):
    stream = client.generate(ENDLESS, "Once upon a time", max_tokens=50000)
    pieces = []
    for delta in stream:
        pieces.append(delta.text)
        if len(pieces) == 3:
            stream.cancel()
    assert stream.finish_reason == "cancelled"
    assert 3 <= stream.info["completion_tokens"] < 1000
    stream.cancel()  # after the end: nothing to do, no error
    wait_idle(client, ENDLESS)


def test_leaving_a_stream_early_cancels_it(client):
    with client.generate(ENDLESS, "Once upon a time", max_tokens=50000) as stream:
        next(stream)
    assert stream.done
    wait_idle(client, ENDLESS)


def test_errors_are_the_mirrored_classes(client):
    with pytest.raises(inferd_client.ModelNotFound) as e:
        client.embed("no-such-model", ["x"])
    assert e.value.dbus_name == "org.inferd.Inferd1.Error.ModelNotFound"
    assert "no-such-model" in e.value.message and "(request d" in e.value.message
    with pytest.raises(inferd_client.ModelNotFound):
        client.generate("no-such-model", "x")
    with pytest.raises(inferd_client.InvalidInput, match="embedding"):
        client.infer(EMBED, {"x": np.zeros(1, np.float32)})
    with pytest.raises(inferd_client.InvalidInput, match="temprature"):
        client.complete(LLM, "x", temprature=0.5)
    with pytest.raises(inferd_client.InvalidInput, match="truncate"):
        client.embed(EMBED, "x", truncate="yes")


def test_overload_and_a_failed_stream(client):
    """`tiny` runs one sequence and queues one: a second stream waits and fails with Timeout
    (a `Failed` signal, raised while iterating); a third call is refused with Overloaded."""
    running = client.generate(ENDLESS, "Once upon a time", max_tokens=50000)
    try:
        next(running)
        queued = client.generate(ENDLESS, "Hello", max_tokens=4, timeout_ms=1500)
        with pytest.raises(inferd_client.Overloaded):
            client.generate(ENDLESS, "Hello", max_tokens=4)
        with pytest.raises(inferd_client.Timeout):
            list(queued)
        assert queued.finish_reason == "failed"
    finally:
        running.close()
    wait_idle(client, ENDLESS)


def test_infer_round_trips_numpy_tensors_of_every_dtype(client):
    check_ops_outputs(np, client.infer(TENSOR, ops_inputs(np)))
    with pytest.raises(inferd_client.InvalidInput, match='"b"'):
        client.infer(TENSOR, {"a": np.zeros((1, 3), np.float32)})


def test_infer_without_numpy_takes_and_gives_tensors(bus_address):
    T = inferd_client.Tensor
    inputs = {name: T(*tup) for name, tup in {
        "a": ("float32", [1, 3], np.array([1, 2, 3], "<f4").tobytes()),
        "b": ("float16", [1, 3], np.array([0.5, 1, -2], "<f2").tobytes()),
        "c": ("int64", [1], np.array([41], "<i8").tobytes()),
        "d": ("int32", [1, 2], np.array([-4, 5], "<i4").tobytes()),
        "e": ("uint8", [1], b"\xff"),
        "f": ("bool", [1], b"\x01"),
    }.items()}
    with inferd_client.Client(bus_address, timeout=TIMEOUT, use_numpy=False) as plain:
        out = plain.infer(TENSOR, inputs)
    assert all(isinstance(t, T) for t in out.values())
    assert out["a_out"].tolist() == [3.0, 5.0, 7.0] and out["a_out"].shape == (1, 3)
    assert out["c_out"].tolist() == [42] and out["e_out"].tolist() == [0]
    assert out["f_out"].tolist() == [False]


def test_warmup_answers_the_administrator(client):
    # The tests run as the daemon's uid, which may manage it.
    row = client.warmup(EMBED)
    assert (row["name"], row["state"]) == (EMBED, "ready")
