"""inferd over MQTT 5 with paho-mqtt v2: the connection, reply routing, and the payloads,
shared by the sync and asyncio clients. docs/mqtt.md describes the protocol.

Requests go to `{prefix}/{node}/req/{model}/{op}` (or the pool's topic) with this client's
reply topic as the MQTT 5 Response Topic and the request id as Correlation Data; every reply is
routed back by that id. paho runs its network loop on its own thread; a request's replies go to
a "sink" callable, which the sync client points at a queue.Queue and the asyncio client at its
event loop.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import tensors
from ._common import Completion, Delta, Event, Failed, Finished, tool_calls_of
from ._common import message_dicts, texts_list
from .errors import InvalidInput, TransportError, from_mqtt

Sink = Callable[[Dict[str, Any]], None]


def parse_url(url: str) -> Tuple[str, int, bool]:
    """`mqtt://host[:1883]` or `mqtts://host[:8883]`, as inferd's config and inferctl take."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise InvalidInput(f"{url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    tls = u.scheme == "mqtts"
    return u.hostname, u.port or (8883 if tls else 1883), tls


def _topic_level(what: str, value: str) -> str:
    if not value or any(c in value for c in "/+#"):
        raise InvalidInput(f"{what} {value!r} cannot be an MQTT topic level")
    return value


class Connection:
    """One paho client: subscribed to its own reply topic and to the daemons' retained
    statuses, routing replies by correlation id to the sink registered for each request."""

    def __init__(
        self,
        url: str,
        *,
        node: Optional[str],
        prefix: str = "inferd",
        replies: str = "replies",
        client_id: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        ca_file: Optional[str] = None,
        connect_timeout: float = 10.0,
    ) -> None:
        host, port, tls = parse_url(url)
        self.prefix, self.node = prefix, node and _topic_level("node", node)
        cid = client_id or f"inferd-py-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Replies under `replies`, outside inferd's prefix (inferd refuses reply topics there).
        self.reply_topic = f"{replies.rstrip('/')}/{cid}"
        self._lock = threading.Condition()
        self._sinks: Dict[str, Sink] = {}
        self._statuses: Dict[str, Dict[str, Any]] = {}
        self._ready, self._error = threading.Event(), None
        self._sub_mid: Optional[int] = None
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5
        )
        if username is not None:
            c.username_pw_set(username, password)
        if tls:
            c.tls_set(ca_certs=ca_file)
        c.on_connect, c.on_subscribe = self._connected, self._subscribed
        c.on_message = self._message
        self._client = c
        try:
            c.connect(host, port)
        except OSError as e:
            raise TransportError(f"cannot connect to the MQTT broker at {url}: {e}") from e
        c.loop_start()
        if not self._ready.wait(connect_timeout) or self._error:
            self.close()
            raise TransportError(
                f"MQTT broker at {url}: {self._error or 'no CONNACK and SUBACK in time'}"
            )

    # paho callbacks (its network thread)

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._error = f"connection refused: {reason}"
            self._ready.set()
            return
        # Subscribed again on every connection: a clean session keeps nothing.
        _, self._sub_mid = client.subscribe(
            [(self.reply_topic, 1), (f"{self.prefix}/+/status", 1)]
        )

    def _subscribed(self, client, userdata, mid, reasons, properties) -> None:
        if mid == self._sub_mid:
            bad = [str(r) for r in reasons if r.is_failure]
            if bad:
                self._error = f"subscription refused: {', '.join(bad)}"
            self._ready.set()

    def _message(self, client, userdata, msg) -> None:
        try:
            payload = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            return
        if msg.topic == self.reply_topic:
            corr = getattr(msg.properties, "CorrelationData", None)
            key = corr.decode("utf-8", "replace") if corr else str((payload or {}).get("id"))
            with self._lock:
                sink = self._sinks.get(key)
            if sink is not None and isinstance(payload, dict):
                try:
                    sink(payload)
                except Exception:  # an exception here would end paho's network thread
                    pass
            return
        node = msg.topic[len(self.prefix) + 1 : -len("/status")]
        with self._lock:
            if payload is None:  # an empty retained message clears the status
                self._statuses.pop(node, None)
            else:
                self._statuses[node] = payload
            self._lock.notify_all()

    # requests

    def topic(self, model: str, op: str) -> str:
        where = self.node or "pool"
        return f"{self.prefix}/{where}/req/{_topic_level('model', model)}/{op}"

    def send(
        self, model: str, op: str, input: Dict[str, Any], options: Dict[str, Any], stream: bool,
        sink: Sink,
    ) -> str:
        """Publishes a request (QoS 1); its replies go to `sink`. Returns its id."""
        topic = self.topic(model, op)
        rid = uuid.uuid4().hex
        options = {k: v for k, v in options.items() if v is not None}  # as on D-Bus: unset
        body = {"id": rid, "input": input, "options": options, "stream": stream}
        with self._lock:
            self._sinks[rid] = sink
        self._publish(topic, body, rid)
        return rid

    def forget(self, rid: str) -> None:
        with self._lock:
            self._sinks.pop(rid, None)

    def cancel(self, rid: str) -> None:
        """`{prefix}/{node}/cancel` with the request's reply topic: only its requester may."""
        if not self.node:
            raise InvalidInput("cancel needs a node: the pool has no one cancel topic")
        self._publish(f"{self.prefix}/{self.node}/cancel", {"id": rid}, None)

    def _publish(self, topic: str, body: Dict[str, Any], correlation: Optional[str]) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        if correlation is not None:
            props.CorrelationData = correlation.encode()
        info = self._client.publish(topic, json.dumps(body), qos=1, properties=props)
        # Not connected now: paho keeps a QoS 1 message and sends it once reconnected.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise TransportError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")

    # statuses

    def statuses(self) -> Dict[str, Dict[str, Any]]:
        with self._lock:
            return dict(self._statuses)

    def status(self, node: str, timeout: float) -> Dict[str, Any]:
        """`node`'s retained status, waiting up to `timeout` s for it to arrive."""
        with self._lock:
            if not self._lock.wait_for(lambda: node in self._statuses, timeout):
                raise TransportError(f"no status from node {node!r} within {timeout} s")
            return self._statuses[node]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# payloads and results: each `req_*` gives the op and its `input`


def req_embed(texts) -> Tuple[str, Dict[str, Any]]:
    return "embed", {"texts": texts_list(texts)}


def req_classify(texts) -> Tuple[str, Dict[str, Any]]:
    return "classify", {"texts": texts_list(texts)}


def req_generate(prompt: str) -> Tuple[str, Dict[str, Any]]:
    return "generate", {"prompt": prompt}


def req_chat(messages) -> Tuple[str, Dict[str, Any]]:
    return "chat", {"messages": message_dicts(messages)}


def req_infer(inputs: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    return "infer", {"inputs": tensors.to_json(inputs)}


def result_of(reply: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    """`(result, usage)` of a reply, or its mirrored exception."""
    if reply.get("ok") is False:
        raise _error(reply)
    return reply.get("result"), reply.get("usage") or {}


def embeddings(result: Dict[str, Any], use_numpy: bool):
    return tensors.vectors(result["embeddings"], use_numpy)


def labels(result: Dict[str, Any]) -> List[List[Tuple[str, float]]]:
    return [[(x["label"], x["score"]) for x in row] for row in result["labels"]]


def completion(result: Dict[str, Any], usage: Dict[str, Any]) -> Completion:
    return Completion(
        text=result.get("text", ""),
        finish_reason=result.get("finish_reason"),
        reasoning=result.get("reasoning") or None,
        tool_calls=tool_calls_of(result.get("tool_calls")),
        info={"finish_reason": result.get("finish_reason"), **usage},
    )


def outputs(result: Dict[str, Any], use_numpy: bool) -> Dict[str, Any]:
    return {
        k: tensors.output(tensors.from_json(v), use_numpy) for k, v in result["outputs"].items()
    }


def health(doc: Dict[str, Any], node: str) -> Dict[str, Any]:
    """The retained status in D-Bus `Health()`'s shape: `status` is the status's `health`."""
    if doc.get("state") != "online":
        raise TransportError(f"node {node!r} is {doc.get('state', 'unknown')}")
    return {**doc, "status": doc.get("health")}


class Reorder:
    """A stream's replies in `seq` order, as events: a reconnect can reorder or repeat MQTT
    messages, and each carries `seq` so a client can put them back. Repeats are dropped."""

    def __init__(self, deliver: Callable[[Event], None]) -> None:
        self._deliver = deliver
        self._next = 0
        self._held: Dict[int, Dict[str, Any]] = {}
        self._ended = False

    def __call__(self, reply: Dict[str, Any]) -> None:
        if self._ended:
            return
        if reply.get("ok") is False:
            self._end(Failed(_error(reply)))
            return
        seq = reply.get("seq")
        if not isinstance(seq, int) or seq < self._next:
            return
        self._held[seq] = reply
        while self._next in self._held and not self._ended:
            m = self._held.pop(self._next)
            self._next += 1
            if m.get("done"):
                reason = m.get("finish_reason")
                self._end(Finished(reason, {"finish_reason": reason, **(m.get("usage") or {})}))
            else:
                self._deliver(Delta(m.get("delta", ""), m.get("channel", "content")))

    def _end(self, event: Event) -> None:
        self._ended = True
        self._deliver(event)


def _error(reply: Dict[str, Any]):
    e = reply.get("error") or {}
    return from_mqtt(e.get("code", ""), e.get("message", ""))
