"""The asyncio D-Bus client, on jeepney's asyncio router: the same methods as `Client`, as
coroutines, and streams as async iterators."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Sequence, Union

from jeepney.io.asyncio import DBusRouter, open_dbus_connection

from . import _dbus_wire as wire
from . import tensors
from ._common import Completion, ChatMessage
from .errors import InferdError, TransportError
from .streams import AsyncStream


class AsyncClient:
    """inferd over D-Bus, for asyncio. Create it with `await AsyncClient.connect(bus)` or
    `async with AsyncClient.connect(bus) as client:`; the arguments are `Client`'s."""

    def __init__(self, conn, router, timeout: Optional[float], use_numpy: bool) -> None:
        self._conn, self._router = conn, router
        self.timeout, self.use_numpy = timeout, use_numpy
        self._dispatch = wire.Dispatch()
        self._router.filter(wire.SIGNALS, queue=self._dispatch)

    @classmethod
    def connect(
        cls,
        bus: str = "session",
        *,
        timeout: Optional[float] = None,
        use_numpy: Optional[bool] = None,
    ) -> "_Connecting":
        return _Connecting(cls, bus, timeout, tensors.want_numpy(use_numpy))

    @property
    def unique_name(self) -> str:
        return self._router.unique_name

    async def close(self) -> None:
        try:
            await self._router.__aexit__(None, None, None)
        finally:
            await self._conn.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _send(self, msg):
        try:
            reply = await asyncio.wait_for(self._router.send_and_get_reply(msg), self.timeout)
        except asyncio.TimeoutError as e:
            raise TransportError(f"no answer from inferd within {self.timeout} s") from e
        except Exception as e:  # the router stopped: the bus went away
            raise TransportError(f"D-Bus: {e}") from e
        return wire.unwrap(reply)

    async def _run(self, op) -> Any:
        msg, decode = op
        return decode(await self._send(msg))

    async def models(self) -> List[Dict[str, Any]]:
        return await self._run(wire.op_list_models())

    async def health(self) -> Dict[str, Any]:
        return await self._run(wire.op_health())

    async def property(self, name: str) -> Any:
        return await self._run(wire.op_property(name))

    async def embed(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        return await self._run(wire.op_embed(model, texts, options, self.use_numpy))

    async def classify(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        return await self._run(wire.op_classify(model, texts, options))

    async def complete(self, model: str, prompt: str, **options: Any) -> Completion:
        return await self._run(wire.op_complete(model, prompt, options))

    async def chat_complete(
        self, model: str, messages: Sequence[ChatMessage], **options: Any
    ) -> Completion:
        return await self._run(wire.op_chat_complete(model, messages, options))

    async def generate(self, model: str, prompt: str, **options: Any) -> AsyncStream:
        return await self._stream(model, prompt, options, chat=False)

    async def chat(
        self, model: str, messages: Sequence[ChatMessage], **options: Any
    ) -> AsyncStream:
        return await self._stream(model, messages, options, chat=True)

    async def infer(self, model: str, inputs: Dict[str, Any]) -> Dict[str, Any]:
        return await self._run(wire.op_infer(model, inputs, self.use_numpy))

    async def load_model(self, name: str) -> None:
        await self._run(wire.admin_op("LoadModel", name))

    async def unload_model(self, name: str) -> None:
        await self._run(wire.admin_op("UnloadModel", name))

    async def reload(self) -> None:
        await self._run(wire.admin_op("Reload"))

    async def warmup(self, name: str) -> Dict[str, Any]:
        return await self._run(wire.admin_op("Warmup", name))

    async def _stream(self, model: str, prompt, options: Dict[str, Any], chat: bool):
        token = wire.new_token()
        path = wire.request_path(self.unique_name, token)
        events: "asyncio.Queue" = asyncio.Queue()  # unbounded: a full queue would drop signals
        self._dispatch.add(path, events)
        try:
            await self._send(wire.op_stream(model, prompt, options, token, chat))
        except TransportError:
            # No reply in time, but the generation may have started: stop it (best effort).
            try:
                await self._send(wire.cancel_call(path))
            except InferdError:
                pass
            self._dispatch.remove(path)
            raise
        except BaseException:
            self._dispatch.remove(path)
            raise

        async def next_event():
            while True:
                try:
                    msg = await asyncio.wait_for(events.get(), self.timeout)
                except asyncio.TimeoutError:
                    raise TransportError(f"no stream event within {self.timeout} s") from None
                event = wire.event_of(msg)
                if event is not None:
                    return event

        async def cancel():
            try:
                await self._send(wire.cancel_call(path))
            except TransportError as e:
                if e.dbus_name not in wire.GONE:
                    raise

        return AsyncStream(next_event, cancel, lambda: self._dispatch.remove(path))


class _Connecting:
    """`AsyncClient.connect(...)`: awaitable (the client) and an async context manager (closes
    it on exit)."""

    def __init__(self, cls, bus: str, timeout: Optional[float], use_numpy: bool) -> None:
        self._args = (cls, bus, timeout, use_numpy)
        self._client: Optional[AsyncClient] = None

    async def _open(self) -> AsyncClient:
        cls, bus, timeout, use_numpy = self._args
        try:
            conn = await open_dbus_connection(wire.bus_address(bus))
        except (OSError, KeyError, ValueError, EOFError) as e:
            raise TransportError(f"cannot connect to the D-Bus bus {bus!r}: {e}") from e
        return cls(conn, DBusRouter(conn), timeout, use_numpy)

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self) -> AsyncClient:
        self._client = await self._open()
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()
