"""The synchronous MQTT client: the same methods as the D-Bus `Client` (management stays on
D-Bus, where callers are authorized), through a broker, to one node or to the pool."""

from __future__ import annotations

import queue
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _mqtt_core as core
from . import tensors
from ._common import Completion, ChatMessage
from .errors import InvalidInput, TransportError
from .streams import Stream


class MqttClient:
    """inferd over MQTT 5, blocking.

    `url`: the broker, `mqtt://host[:1883]` or `mqtts://host[:8883]` (`ca_file` for a private
    CA). `node`: the daemon's `mqtt.node`; None sends to the pool (any daemon sharing `prefix`),
    where `cancel` and `health` are not available. `replies`: the first level of this client's
    reply topic (outside `prefix`; under the daemons' `mqtt.reply_prefix` if they set one).
    `timeout`: seconds to wait for any one answer or stream event (None: no limit).
    """

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        *,
        node: Optional[str] = None,
        prefix: str = "inferd",
        replies: str = "replies",
        client_id: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        ca_file: Optional[str] = None,
        timeout: Optional[float] = None,
        use_numpy: Optional[bool] = None,
    ) -> None:
        self.timeout = timeout
        self.use_numpy = tensors.want_numpy(use_numpy)
        self._conn = core.Connection(
            url,
            node=node,
            prefix=prefix,
            replies=replies,
            client_id=client_id,
            username=username,
            password=password,
            ca_file=ca_file,
        )

    @property
    def node(self) -> Optional[str]:
        return self._conn.node

    @property
    def reply_topic(self) -> str:
        return self._conn.reply_topic

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "MqttClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, model: str, op_input, options: Dict[str, Any]):
        op, input = op_input
        replies: "queue.Queue" = queue.Queue()
        rid = self._conn.send(model, op, input, options, False, replies.put)
        try:
            reply = replies.get(timeout=self.timeout)
        except queue.Empty:
            raise TransportError(f"no answer to {op} on {model} within {self.timeout} s") from None
        finally:
            self._conn.forget(rid)
        return core.result_of(reply)

    def statuses(self) -> Dict[str, Dict[str, Any]]:
        """The retained status of every daemon under `prefix` seen so far, by node."""
        return self._conn.statuses()

    def health(self, node: Optional[str] = None) -> Dict[str, Any]:
        """The node's retained status in `Health()`'s shape (`status`: `ok`, `loading`,
        `degraded`; `models`; `memory`; ...). TransportError when it is offline."""
        node = node or self.node
        if not node:
            raise InvalidInput("health needs a node: give node= here or to the client")
        return core.health(self._conn.status(node, self.timeout or 10.0), node)

    def models(self, node: Optional[str] = None) -> List[Dict[str, Any]]:
        """The node's models, from its retained status."""
        return self.health(node)["models"]

    def embed(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        result, _ = self._request(model, core.req_embed(texts), options)
        return core.embeddings(result, self.use_numpy)

    def classify(self, model: str, texts: Union[str, Sequence[str]], **options: Any):
        result, _ = self._request(model, core.req_classify(texts), options)
        return core.labels(result)

    def complete(self, model: str, prompt: str, **options: Any) -> Completion:
        return core.completion(*self._request(model, core.req_generate(prompt), options))

    def chat_complete(
        self, model: str, messages: Sequence[ChatMessage], **options: Any
    ) -> Completion:
        return core.completion(*self._request(model, core.req_chat(messages), options))

    def generate(self, model: str, prompt: str, **options: Any) -> Stream:
        return self._stream(model, core.req_generate(prompt), options)

    def chat(self, model: str, messages: Sequence[ChatMessage], **options: Any) -> Stream:
        return self._stream(model, core.req_chat(messages), options)

    def infer(self, model: str, inputs: Dict[str, Any]) -> Dict[str, Any]:
        result, _ = self._request(model, core.req_infer(inputs), {})
        return core.outputs(result, self.use_numpy)

    def _stream(self, model: str, op_input, options: Dict[str, Any]) -> Stream:
        op, input = op_input
        events: "queue.Queue" = queue.Queue()
        rid = self._conn.send(model, op, input, options, True, core.Reorder(events.put))

        def next_event():
            try:
                return events.get(timeout=self.timeout)
            except queue.Empty:
                raise TransportError(f"no stream event within {self.timeout} s") from None

        return Stream(next_event, lambda: self._conn.cancel(rid), lambda: self._conn.forget(rid))
