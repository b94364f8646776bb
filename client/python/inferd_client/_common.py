"""What both transports share: result types, chat messages, and the state of a streamed
generation. The transports only turn their wire messages into the events below."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import InferdError, InvalidInput

ChatMessage = Union[Tuple[str, str], Dict[str, Any]]


@dataclass(frozen=True)
class Delta:
    """One piece of a streamed generation. `channel` is `content`, `reasoning` (a reasoning
    model's thinking, with option `reasoning = "separate"`) or `tool_call` (one whole call as
    JSON text)."""

    text: str
    channel: str = "content"


@dataclass
class Completion:
    """A whole generation: its text, why it ended (`stop`, `length`, `cancelled`, `timeout`),
    the separate reasoning and tool calls when there are any, and `info` (token counts,
    `time_to_first_token_ms`, `tokens_per_second`, and on D-Bus `request_id`)."""

    text: str
    finish_reason: Optional[str]
    reasoning: Optional[str] = None
    tool_calls: Optional[List[Dict[str, Any]]] = None
    info: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """Event: the stream ended normally."""

    reason: str
    info: Dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """Event: the stream ended with an error."""

    error: InferdError


Event = Union[Delta, Finished, Failed]


def texts_list(texts: Union[str, Sequence[str]]) -> List[str]:
    """`embed`/`classify` take one text or many; one text is a batch of one."""
    if isinstance(texts, str):
        return [texts]
    out = list(texts)
    if not all(isinstance(t, str) for t in out):
        raise InvalidInput("texts must be strings")
    return out


def message_pairs(messages: Iterable[ChatMessage]) -> List[Tuple[str, str]]:
    """D-Bus `a(ss)`: `(role, content)` from tuples or OpenAI-style dicts (their other fields,
    such as `tool_calls`, have no place there; write the call into the content instead)."""
    out = []
    for m in messages:
        if isinstance(m, dict):
            out.append((str(m["role"]), m.get("content") or ""))
        else:
            role, content = m
            out.append((str(role), str(content)))
    return out


def message_dicts(messages: Iterable[ChatMessage]) -> List[Dict[str, Any]]:
    """MQTT `messages`: OpenAI-style dicts, passed as they are; tuples become role/content."""
    return [dict(m) if isinstance(m, dict) else {"role": m[0], "content": m[1]} for m in messages]


def tool_calls_of(value: Any) -> Optional[List[Dict[str, Any]]]:
    """`tool_calls` as a list: D-Bus sends JSON text, MQTT the list itself."""
    if value is None or value == "":
        return None
    return json.loads(value) if isinstance(value, str) else list(value)


class StreamState:
    """The bookkeeping of one streamed generation, whatever carries it: the text so far, and
    once it ended `finish_reason` and `info`. The sync and asyncio streams feed it events."""

    def __init__(self) -> None:
        self.finish_reason: Optional[str] = None
        self.info: Dict[str, Any] = {}
        self.done = False
        self._pieces: Dict[str, List[str]] = {}

    def take(self, event: Event) -> Optional[Delta]:
        """The delta to hand out, or None once the stream ended; raises the stream's error."""
        if self.done:
            return None
        if isinstance(event, Delta):
            self._pieces.setdefault(event.channel, []).append(event.text)
            return event
        self.done = True
        if isinstance(event, Failed):
            self.finish_reason = "failed"
            raise event.error
        self.finish_reason, self.info = event.reason, event.info
        return None

    def abandon(self) -> None:
        """The caller closed the stream before its end: iteration stops, `finish_reason` stays
        None (the daemon's answer to the cancel is not awaited)."""
        self.done = True

    def text(self, channel: str = "content") -> str:
        return "".join(self._pieces.get(channel, []))

    def completion(self) -> Completion:
        tool_calls = [json.loads(c) for c in self._pieces.get("tool_call", [])] or None
        return Completion(
            text=self.text(),
            finish_reason=self.finish_reason,
            reasoning=self.text("reasoning") or None,
            tool_calls=tool_calls,
            info=dict(self.info),
        )
