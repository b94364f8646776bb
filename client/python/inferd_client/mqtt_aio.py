"""The asyncio MQTT client. paho's network loop stays on its thread; replies cross into the
event loop with `call_soon_threadsafe`."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _mqtt_core as core
from . import tensors
from ._common import Completion, ChatMessage
from .errors import InvalidInput, TransportError
from .streams import AsyncStream


class AsyncMqttClient:
    """inferd over MQTT 5, for asyncio. Create it with `await AsyncMqttClient.connect(url,
    node=...)` or `async with AsyncMqttClient.connect(...) as client:`; the arguments are
    `MqttClient`'s."""

    def __init__(self, conn: core.Connection, timeout: Optional[float], use_numpy: bool) -> None:
        self._conn, self.timeout, self.use_numpy = conn, timeout, use_numpy

    @classmethod
    def connect(
        cls, url: str = "mqtt://127.0.0.1:1883", *, timeout: Optional[float] = None,
        use_numpy: Optional[bool] = None, **connection: Any,
    ) -> "_Connecting":
        return _Connecting(cls, url, timeout, tensors.want_numpy(use_numpy), connection)

    @property
    def node(self) -> Optional[str]:
        return self._conn.node

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._conn.close)

    async def __aenter__(self) -> "AsyncMqttClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _sink(self, deliver):
        """A sink that runs `deliver` on this event loop, from paho's thread."""
        loop = asyncio.get_running_loop()

        def sink(item):
            try:
                loop.call_soon_threadsafe(deliver, item)
            except RuntimeError:  # the loop is closed: nobody waits for this any more
                pass

        return sink

    async def _request(self, model: str, op_input, options: Dict[str, Any]):
        op, input = op_input
        answer = asyncio.get_running_loop().create_future()

        def deliver(reply):
            if not answer.done():
                answer.set_result(reply)

        rid = self._conn.send(model, op, input, options, False, self._sink(deliver))
        try:
            reply = await asyncio.wait_for(answer, self.timeout)
        except asyncio.TimeoutError:
            raise TransportError(f"no answer to {op} on {model} within {self.timeout} s") from None
        finally:
            self._conn.forget(rid)
        return core.result_of(reply)

    def statuses(self) -> Dict[str, Dict[str, Any]]:
        return self._conn.statuses()

    async def health(self, node: Optional[str] = None) -> Dict[str, Any]:
        node = node or self.node
        if not node:
            raise InvalidInput("health needs a node: give node= here or to the client")
        doc = await asyncio.get_running_loop().run_in_executor(
            None, self._conn.status, node, self.timeout or 10.0
        )
        return core.health(doc, node)

    async def models(self, node: Optional[str] = None) -> List[Dict[str, Any]]:
        return (await self.health(node))["models"]

    async def embed(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        result, _ = await self._request(model, core.req_embed(texts), options)
        return core.embeddings(result, self.use_numpy)

    async def classify(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        result, _ = await self._request(model, core.req_classify(texts), options)
        return core.labels(result)

    async def complete(self, model: str, prompt: str, **options: Any) -> Completion:
        return core.completion(*await self._request(model, core.req_generate(prompt), options))

    async def chat_complete(
        self, model: str, messages: Sequence[ChatMessage], **options: Any
    ) -> Completion:
        return core.completion(*await self._request(model, core.req_chat(messages), options))

    async def generate(self, model: str, prompt: str, **options: Any) -> AsyncStream:
        return self._stream(model, core.req_generate(prompt), options)

    async def chat(
        self, model: str, messages: Sequence[ChatMessage], **options: Any
    ) -> AsyncStream:
        return self._stream(model, core.req_chat(messages), options)

    async def infer(self, model: str, inputs: Dict[str, Any]) -> Dict[str, Any]:
        result, _ = await self._request(model, core.req_infer(inputs), {})
        return core.outputs(result, self.use_numpy)

    def _stream(self, model: str, op_input, options: Dict[str, Any]) -> AsyncStream:
        op, input = op_input
        events: "asyncio.Queue" = asyncio.Queue()
        # Reordered on paho's thread, each event then handed to the loop.
        reorder = core.Reorder(self._sink(events.put_nowait))
        rid = self._conn.send(model, op, input, options, True, reorder)

        async def next_event():
            try:
                return await asyncio.wait_for(events.get(), self.timeout)
            except asyncio.TimeoutError:
                raise TransportError(f"no stream event within {self.timeout} s") from None

        async def cancel():
            self._conn.cancel(rid)  # a publish: paho queues it, nothing blocks

        return AsyncStream(next_event, cancel, lambda: self._conn.forget(rid))


class _Connecting:
    """`AsyncMqttClient.connect(...)`: awaitable, and an async context manager."""

    def __init__(self, cls, url: str, timeout, use_numpy: bool, connection: Dict[str, Any]):
        self._args = (cls, url, timeout, use_numpy, connection)
        self._client: Optional[AsyncMqttClient] = None

    async def _open(self) -> AsyncMqttClient:
        cls, url, timeout, use_numpy, connection = self._args
        # The connection waits for CONNACK and SUBACK: off the event loop.
        conn = await asyncio.get_running_loop().run_in_executor(
            None, lambda: core.Connection(url, **{"node": None, **connection})
        )
        return cls(conn, timeout, use_numpy)

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self) -> AsyncMqttClient:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()
