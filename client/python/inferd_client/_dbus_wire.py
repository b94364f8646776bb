"""inferd's D-Bus API as jeepney messages and decoders, shared by the sync and asyncio clients
(which only differ in how they send and wait). See docs/dbus.md for every method.

Each `op_*` function returns `(message, decode)`: the method call, and a function that turns
the reply's body into what the client method returns.
"""

from __future__ import annotations

import itertools
import json
import numbers
import os
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from jeepney import DBusAddress, HeaderFields, Message, MessageType, new_method_call
from jeepney.bus_messages import MatchRule

from . import tensors
from ._common import Completion, Delta, Event, Failed, Finished, tool_calls_of
from ._common import message_pairs, texts_list
from .errors import InvalidInput, from_dbus

BUS_NAME = "org.inferd.Inferd1"
OBJECT = DBusAddress("/org/inferd/Inferd1", bus_name=BUS_NAME, interface=BUS_NAME)
REQUEST_INTERFACE = "org.inferd.Inferd1.Request"
REQUEST_PATH = "/org/inferd/Inferd1/request"

Op = Tuple[Message, Callable[[tuple], Any]]


def bus_address(bus: str) -> str:
    """`session`, `system` (as inferctl's `--bus` says them) or a D-Bus address."""
    return {"session": "SESSION", "system": "SYSTEM"}.get(bus.lower(), bus)


def variant(key: str, value: Any) -> Tuple[str, Any]:
    """An option as a D-Bus variant. inferd takes any integer type where an integer is meant
    and an integer where a float is, so ints go as `u` (or `t`/`x` when they do not fit).
    Dicts and lists of dicts (`response_format`, `tools`, `tool_choice`) go as JSON text, which
    is how the D-Bus API takes them."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, numbers.Integral):  # numpy's integers too
        value = int(value)
        if value < 0:
            return ("x", value)
        return ("u", value) if value < 2**32 else ("t", value)
    if isinstance(value, numbers.Real):
        return ("d", float(value))
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ("as", list(value))
    if isinstance(value, (dict, list, tuple)):
        return ("s", json.dumps(value))
    raise InvalidInput(f"option {key!r}: cannot send a {type(value).__name__} over D-Bus")


def options(opts: Dict[str, Any]) -> Dict[str, Tuple[str, Any]]:
    return {k: variant(k, v) for k, v in opts.items() if v is not None}


def plain(sig: str, value: Any) -> Any:
    """A reply value without jeepney's `(signature, value)` variant pairs, for the shapes
    inferd returns (`a{sv}`, `aa{sv}` nested in variants)."""
    if sig == "v":
        return plain(*value)
    if sig == "a{sv}":
        return {k: plain(*v) for k, v in value.items()}
    if sig == "aa{sv}":
        return [plain("a{sv}", d) for d in value]
    return value


def unwrap(reply: Message) -> tuple:
    """The reply's body, or the mirrored exception for an error reply."""
    if reply.header.message_type == MessageType.error:
        name = reply.header.fields.get(HeaderFields.error_name, "")
        body = reply.body
        message = body[0] if body and isinstance(body[0], str) else ""
        raise from_dbus(name, message)
    return reply.body


def _call(method: str, signature: Optional[str] = None, body: tuple = ()) -> Message:
    return new_method_call(OBJECT, method, signature, body)


# Streaming requests: the path is known before the call through `handle_token`, so the filter
# is in place before any signal can arrive.

_tokens = itertools.count()


def new_token() -> str:
    return f"py{os.getpid()}_{next(_tokens)}"


def request_path(unique_name: str, token: str) -> str:
    return f"{REQUEST_PATH}/{unique_name.lstrip(':').replace('.', '_')}_{token}"


#: Every request object's signals; one filter for the connection's lifetime.
SIGNALS = MatchRule(type="signal", interface=REQUEST_INTERFACE, path_namespace=REQUEST_PATH)


class Dispatch:
    """Hands each request object's signals to the queue of the stream that owns the path.

    It is registered once, as the "queue" of a single jeepney filter on `SIGNALS`: jeepney's
    threading router iterates its filter dict in the receiver thread without a lock, so adding
    and removing a filter per stream from another thread could break that iteration. Anything
    with `put_nowait` works as a per-stream queue (queue.Queue, asyncio.Queue).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: Dict[str, Any] = {}

    def add(self, path: str, q: Any) -> None:
        with self._lock:
            self._queues[path] = q

    def remove(self, path: str) -> None:
        with self._lock:
            self._queues.pop(path, None)

    def put_nowait(self, msg: Message) -> None:
        with self._lock:
            q = self._queues.get(msg.header.fields.get(HeaderFields.path))
        if q is not None:
            q.put_nowait(msg)


def cancel_call(path: str) -> Message:
    return new_method_call(
        DBusAddress(path, bus_name=BUS_NAME, interface=REQUEST_INTERFACE), "Cancel"
    )


#: Cancel of a request that has just ended: its object is gone, which is not an error.
GONE = ("org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownMethod")


def event_of(msg: Message) -> Optional[Event]:
    """A request object's signal as a stream event."""
    member = msg.header.fields.get(HeaderFields.member)
    if member == "Delta":
        text, channel = msg.body
        return Delta(text, channel)
    if member == "Finished":
        reason, info = msg.body
        return Finished(reason, plain("a{sv}", info))
    if member == "Failed":
        name, message = msg.body
        return Failed(from_dbus(name, message))
    return None


# One function per method: (message, decode).


def op_list_models() -> Op:
    return _call("ListModels"), lambda b: plain("aa{sv}", b[0])


def op_health() -> Op:
    return _call("Health"), lambda b: plain("a{sv}", b[0])


def op_embed(model: str, texts, opts: Dict[str, Any], use_numpy: bool) -> Op:
    msg = _call("Embed", "sasa{sv}", (model, texts_list(texts), options(opts)))
    return msg, lambda b: tensors.vectors(b[0], use_numpy)


def op_classify(model: str, texts, opts: Dict[str, Any]) -> Op:
    msg = _call("Classify", "sasa{sv}", (model, texts_list(texts), options(opts)))
    return msg, lambda b: [[(label, p) for label, p in row] for row in b[0]]


def _completion(body: tuple) -> Completion:
    text, info = body[0], plain("a{sv}", body[1])
    return Completion(
        text=text,
        finish_reason=info.get("finish_reason"),
        reasoning=info.get("reasoning") or None,
        tool_calls=tool_calls_of(info.get("tool_calls")),
        info=info,
    )


def op_complete(model: str, prompt: str, opts: Dict[str, Any]) -> Op:
    return _call("Complete", "ssa{sv}", (model, prompt, options(opts))), _completion


def op_chat_complete(model: str, messages, opts: Dict[str, Any]) -> Op:
    body = (model, message_pairs(messages), options(opts))
    return _call("ChatComplete", "sa(ss)a{sv}", body), _completion


def op_stream(model: str, prompt_or_messages, opts: Dict[str, Any], token: str, chat: bool):
    """`Generate` or `Chat` with `handle_token`; the reply (the path) needs no decoding."""
    opts = {**opts, "handle_token": token}
    if chat:
        body = (model, message_pairs(prompt_or_messages), options(opts))
        return _call("Chat", "sa(ss)a{sv}", body)
    return _call("Generate", "ssa{sv}", (model, prompt_or_messages, options(opts)))


def op_infer(model: str, inputs: Dict[str, Any], use_numpy: bool) -> Op:
    msg = _call("Infer", "sa{s(satay)}", (model, tensors.to_dbus(inputs)))

    def decode(b: tuple) -> Dict[str, Any]:
        return {k: tensors.output(tensors.from_dbus(v), use_numpy) for k, v in b[0].items()}

    return msg, decode


def op_property(name: str) -> Op:
    props = DBusAddress(
        OBJECT.object_path, bus_name=BUS_NAME, interface="org.freedesktop.DBus.Properties"
    )
    msg = new_method_call(props, "Get", "ss", (BUS_NAME, name))
    return msg, lambda b: plain(*b[0])


#: The message flag ALLOW_INTERACTIVE_AUTHORIZATION: polkit may have an agent ask for a password.
ALLOW_INTERACTIVE_AUTHORIZATION = 0x4


def admin_op(method: str, name: Optional[str] = None) -> Op:
    """`LoadModel`, `UnloadModel`, `Reload`, `Warmup` (administrators only: polkit, where it runs,
    may ask the caller's agent for a password, as `inferctl` lets it)."""
    msg = _call(method, "s", (name,)) if name is not None else _call(method)
    msg.header.flags |= ALLOW_INTERACTIVE_AUTHORIZATION
    if method == "Warmup":
        return msg, lambda b: plain("a{sv}", b[0])
    return msg, lambda b: None

