"""The MQTT clients (blocking and asyncio) against the real daemon, through mosquitto."""

import asyncio

import numpy as np
import pytest

import inferd_client
from conftest import (
    CLASSIFIER, EMBED, ENDLESS, LLM, TENSOR, TIMEOUT, check_ops_outputs, max_abs_diff, ops_inputs,
)


def test_health_is_the_retained_status(mqtt, client):
    h = mqtt.health()
    assert h["state"] == "online" and h["status"] == "ok"
    assert h["version"] == client.health()["version"]
    names = {m["name"] for m in mqtt.models()}
    assert names == {m["name"] for m in client.models()}
    assert mqtt.node in mqtt.statuses()


def test_embeddings_equal_the_dbus_ones_and_the_reference(mqtt, client, minilm_reference):
    texts = [c["text"] for c in minilm_reference]
    got = mqtt.embed(EMBED, texts)
    assert got.dtype == np.float32 and got.shape == (len(texts), 384)
    np.testing.assert_allclose(got, client.embed(EMBED, texts), atol=1e-6)
    for row, case in zip(got, minilm_reference):
        assert max_abs_diff(row, case["embedding"]) < 1e-4


def test_classify(mqtt, client):
    got = mqtt.classify(CLASSIFIER, "turn on the lights please", top_k=2)
    want = client.classify(CLASSIFIER, "turn on the lights please", top_k=2)
    assert [label for label, _ in got[0]] == [label for label, _ in want[0]]
    assert got[0][0][0] == "lights_on"
    assert abs(got[0][0][1] - want[0][0][1]) < 1e-6


def test_complete_and_stream_give_the_greedy_text(mqtt, greedy_cases):
    for case in greedy_cases[:2]:
        opts = dict(max_tokens=case["max_tokens"], temperature=0)
        whole = mqtt.complete(LLM, case["prompt"], **opts)
        assert (whole.text, whole.finish_reason) == (case["text"], case["finish_reason"])
        assert whole.info["completion_tokens"] == case["completion_tokens"]
        stream = mqtt.generate(LLM, case["prompt"], **opts)
        deltas = list(stream)
        assert len(deltas) > 1
        assert "".join(d.text for d in deltas) == case["text"]
        assert stream.finish_reason == case["finish_reason"]


def test_chat_takes_openai_style_messages(mqtt, client):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    over_dbus = client.chat_complete(LLM, messages, max_tokens=24, temperature=0)
    with mqtt.chat(LLM, messages, max_tokens=24, temperature=0) as stream:
        got = stream.collect()
    assert (got.text, got.finish_reason) == (over_dbus.text, over_dbus.finish_reason)


def test_cancel_ends_the_stream_with_cancelled(mqtt):
    stream = mqtt.generate(ENDLESS, "Once upon a time", max_tokens=50000)
    n = 0
    for _ in stream:
        n += 1
        if n == 3:
            stream.cancel()
    assert stream.finish_reason == "cancelled"
    assert 3 <= stream.info["completion_tokens"] < 1000


def test_error_replies_are_the_mirrored_classes(mqtt):
    with pytest.raises(inferd_client.ModelNotFound, match="no-such-model"):
        mqtt.embed("no-such-model", "x")
    # A stream's error arrives as its reply, raised while iterating.
    stream = mqtt.generate("no-such-model", "x")
    with pytest.raises(inferd_client.ModelNotFound):
        next(stream)
    assert stream.finish_reason == "failed"
    with pytest.raises(inferd_client.InvalidInput, match="temprature"):
        mqtt.complete(LLM, "x", temprature=0.5)
    # MQTT requests are background; a topic without a grant may not claim more.
    with pytest.raises(inferd_client.AccessDenied, match="interactive"):
        mqtt.embed(EMBED, "x", priority="interactive")
    with pytest.raises(inferd_client.InvalidInput, match="topic level"):
        mqtt.embed("a/b", "x")


def test_infer_round_trips_numpy_tensors(mqtt):
    check_ops_outputs(np, mqtt.infer(TENSOR, ops_inputs(np)))


def test_the_pool_answers_and_cannot_cancel(mqtt_url, minilm_reference):
    with inferd_client.MqttClient(mqtt_url, timeout=TIMEOUT) as pool:
        got = pool.embed(EMBED, minilm_reference[0]["text"])
        assert max_abs_diff(got[0], minilm_reference[0]["embedding"]) < 1e-4
        with pytest.raises(inferd_client.InvalidInput, match="node"):
            pool.health()
        with pool.generate(LLM, "Hi", max_tokens=2) as stream:
            with pytest.raises(inferd_client.InvalidInput, match="node"):
                stream.cancel()
            next(stream)
        # Leaving early cannot cancel on the pool, and says nothing about it.
        assert stream.done


def test_asyncio_client(mqtt_url, mqtt_node, greedy_cases):
    case = greedy_cases[0]

    async def main():
        async with inferd_client.AsyncMqttClient.connect(
            mqtt_url, node=mqtt_node, timeout=TIMEOUT
        ) as c:
            h, vectors = await asyncio.gather(c.health(), c.embed(EMBED, ["a", "b"]))
            assert h["status"] == "ok" and vectors.shape == (2, 384)
            opts = dict(max_tokens=case["max_tokens"], temperature=0)
            stream = await c.generate(LLM, case["prompt"], **opts)
            text = "".join([d.text async for d in stream])
            assert (text, stream.finish_reason) == (case["text"], case["finish_reason"])
            endless = await c.generate(ENDLESS, "Once upon a time", max_tokens=50000)
            n = 0
            async for _ in endless:
                n += 1
                if n == 2:
                    await endless.cancel()
            assert endless.finish_reason == "cancelled"
            with pytest.raises(inferd_client.ModelNotFound):
                await c.classify("no-such-model", "x")
            check_ops_outputs(np, await c.infer(TENSOR, ops_inputs(np)))

    asyncio.run(main())


def test_no_broker_is_a_transport_error():
    with pytest.raises(inferd_client.TransportError):
        inferd_client.MqttClient("mqtt://127.0.0.1:1", node="n1")
