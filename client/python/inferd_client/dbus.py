"""The synchronous D-Bus client, on jeepney's thread-safe router (one receiver thread per
connection), so a stream can be cancelled from another thread while one iterates it."""

from __future__ import annotations

import queue
from typing import Any, Dict, List, Optional, Sequence, Union

from jeepney.io.threading import DBusRouter, open_dbus_connection

from . import _dbus_wire as wire
from . import tensors
from ._common import Completion, ChatMessage
from .errors import InferdError, TransportError
from .streams import Stream


class Client:
    """inferd over D-Bus, blocking.

    `bus`: `session` (default), `system`, or a D-Bus address (`unix:path=/run/...`).
    `timeout`: seconds to wait for any one answer or stream event (None: no limit; a
    generation may wait behind others). `use_numpy`: return numpy arrays (default: when numpy
    is importable)."""

    def __init__(
        self,
        bus: str = "session",
        *,
        timeout: Optional[float] = None,
        use_numpy: Optional[bool] = None,
    ) -> None:
        self.timeout = timeout
        self.use_numpy = tensors.want_numpy(use_numpy)
        try:
            self._conn = open_dbus_connection(wire.bus_address(bus))
        except (OSError, KeyError, ValueError) as e:
            raise TransportError(f"cannot connect to the D-Bus bus {bus!r}: {e}") from e
        self._router = DBusRouter(self._conn)
        self._dispatch = wire.Dispatch()
        self._router.filter(wire.SIGNALS, queue=self._dispatch)

    @property
    def unique_name(self) -> str:
        return self._router.unique_name

    def close(self) -> None:
        self._router.close()
        self._conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _send(self, msg):
        try:
            reply = self._router.send_and_get_reply(msg, timeout=self.timeout)
        except TimeoutError as e:
            raise TransportError(f"no answer from inferd within {self.timeout} s") from e
        except Exception as e:  # the router stopped: the bus went away
            raise TransportError(f"D-Bus: {e}") from e
        return wire.unwrap(reply)

    def _run(self, op) -> Any:
        msg, decode = op
        return decode(self._send(msg))

    # Read-only methods, open to everyone.

    def models(self) -> List[Dict[str, Any]]:
        """`ListModels`: one dict per model (`name`, `kind`, `state`, `provider`, ...)."""
        return self._run(wire.op_list_models())

    def health(self) -> Dict[str, Any]:
        """`Health`: `status` (`ok`, `loading`, `degraded`), `version`, `uptime_s`,
        `rss_bytes`, `models`, `memory`."""
        return self._run(wire.op_health())

    def property(self, name: str) -> Any:
        """A property of inferd's object: `Version`, `RuntimeVersion`, `Providers`, ..."""
        return self._run(wire.op_property(name))

    def embed(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        """One vector per text: an (n, dim) float32 array, or lists without numpy. Options:
        `timeout_ms`, `truncate`, `priority`."""
        return self._run(wire.op_embed(model, texts, options, self.use_numpy))

    def classify(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        """Per text, `(label, probability)` pairs, best first. Options: `top_k`, ..."""
        return self._run(wire.op_classify(model, texts, options))

    def complete(self, model: str, prompt: str, **options: Any) -> Completion:
        """The whole generation from a raw prompt (no chat template)."""
        return self._run(wire.op_complete(model, prompt, options))

    def chat_complete(
        self, model: str, messages: Sequence[ChatMessage], **options: Any
    ) -> Completion:
        """The whole answer to chat messages (`(role, content)` or `{"role", "content"}`)."""
        return self._run(wire.op_chat_complete(model, messages, options))

    def generate(self, model: str, prompt: str, **options: Any) -> Stream:
        """A streamed generation from a raw prompt: iterate it for `Delta`s."""
        return self._stream(model, prompt, options, chat=False)

    def chat(self, model: str, messages: Sequence[ChatMessage], **options: Any) -> Stream:
        """A streamed chat answer: iterate it for `Delta`s."""
        return self._stream(model, messages, options, chat=True)

    def infer(self, model: str, inputs: Dict[str, Any]) -> Dict[str, Any]:
        """Named tensors in (numpy arrays, `Tensor`s or `(dtype, shape, bytes)`), named
        tensors out (numpy arrays, or `Tensor`s without numpy)."""
        return self._run(wire.op_infer(model, inputs, self.use_numpy))

    # Management, for administrators (AccessDenied for anyone else).

    def load_model(self, name: str) -> None:
        self._run(wire.admin_op("LoadModel", name))

    def unload_model(self, name: str) -> None:
        self._run(wire.admin_op("UnloadModel", name))

    def reload(self) -> None:
        self._run(wire.admin_op("Reload"))

    def warmup(self, name: str) -> Dict[str, Any]:
        return self._run(wire.admin_op("Warmup", name))

    def _stream(self, model: str, prompt, options: Dict[str, Any], chat: bool) -> Stream:
        token = wire.new_token()
        path = wire.request_path(self.unique_name, token)
        events: "queue.Queue" = queue.Queue()  # unbounded: a full queue would drop signals
        self._dispatch.add(path, events)
        try:
            self._send(wire.op_stream(model, prompt, options, token, chat))
        except TransportError:
            # No reply in time, but the generation may have started: stop it (best effort).
            try:
                self._send(wire.cancel_call(path))
            except InferdError:
                pass
            self._dispatch.remove(path)
            raise
        except BaseException:
            self._dispatch.remove(path)
            raise

        def next_event():
            while True:
                try:
                    msg = events.get(timeout=self.timeout)
                except queue.Empty:
                    raise TransportError(f"no stream event within {self.timeout} s") from None
                event = wire.event_of(msg)
                if event is not None:
                    return event

        def cancel():
            try:
                self._send(wire.cancel_call(path))
            except TransportError as e:
                if e.dbus_name not in wire.GONE:
                    raise

        return Stream(next_event, cancel, lambda: self._dispatch.remove(path))
