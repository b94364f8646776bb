"""The asyncio D-Bus client against the real daemon (pytest-asyncio is not needed: each test
runs its own event loop)."""

import asyncio

import numpy as np
import pytest

import inferd_client
from conftest import EMBED, ENDLESS, LLM, TENSOR, TIMEOUT, check_ops_outputs, max_abs_diff
from conftest import ops_inputs


def run(bus_address, body):
    async def main():
        async with inferd_client.AsyncClient.connect(bus_address, timeout=TIMEOUT) as c:
            return await body(c)

    return asyncio.run(main())


def test_health_models_and_embeddings(bus_address, minilm_reference):
    async def body(c):
        h, models, vectors = await asyncio.gather(
            c.health(), c.models(), c.embed(EMBED, [x["text"] for x in minilm_reference])
        )
        assert h["status"] == "ok"
        assert EMBED in {m["name"] for m in models}
        assert vectors.shape == (len(minilm_reference), 384)
        for row, case in zip(vectors, minilm_reference):
            assert max_abs_diff(row, case["embedding"]) < 1e-4

    run(bus_address, body)


def test_concurrent_streams_give_the_greedy_text(bus_address, greedy_cases):
    """Two streams at once on one connection (continuous batching): each gets its own text."""

    async def one(c, case):
        opts = dict(max_tokens=case["max_tokens"], temperature=0)
        stream = await c.generate(LLM, case["prompt"], **opts)
        pieces = [d.text async for d in stream]
        return "".join(pieces), stream.finish_reason

    async def body(c):
        cases = greedy_cases[:2]
        results = await asyncio.gather(*(one(c, case) for case in cases))
        for (text, reason), case in zip(results, cases):
            assert text == case["text"]
            assert reason == case["finish_reason"]
        opts = dict(max_tokens=cases[0]["max_tokens"], temperature=0)
        whole = await c.complete(LLM, cases[0]["prompt"], **opts)
        assert whole.text == cases[0]["text"]

    run(bus_address, body)


def test_chat_and_cancel(bus_address):
    async def body(c):
        question = [("user", "What is the capital of France?")]
        chat = await c.chat(LLM, question, max_tokens=24, temperature=0)
        answer = await chat.collect()
        assert "Paris" in answer.text and answer.finish_reason == "stop"
        stream = await c.generate(ENDLESS, "Once upon a time", max_tokens=50000)
        n = 0
        async for _ in stream:
            n += 1
            if n == 2:
                await stream.cancel()
        assert stream.finish_reason == "cancelled"
        assert stream.info["completion_tokens"] < 1000

    run(bus_address, body)


def test_errors_and_infer(bus_address):
    async def body(c):
        with pytest.raises(inferd_client.ModelNotFound):
            await c.classify("no-such-model", "x")
        with pytest.raises(inferd_client.ModelNotFound):
            await c.chat("no-such-model", [("user", "x")])
        with pytest.raises(inferd_client.InvalidInput, match="max_tokens"):
            await c.complete(LLM, "x", max_tokens="many")
        check_ops_outputs(np, await c.infer(TENSOR, ops_inputs(np)))

    run(bus_address, body)


def test_no_bus_is_a_transport_error(bus_address):
    """Nothing listens there: the client's TransportError, not one of inferd's errors."""

    async def main():
        with pytest.raises(inferd_client.TransportError):
            await inferd_client.AsyncClient.connect("unix:path=/nonexistent/bus")

    asyncio.run(main())
