"""Streamed generations (`generate`, `chat`) as iterators, for both transports.

A transport hands a stream three callables: one that waits for the next event (`Delta`,
`Finished` or `Failed`), one that asks the daemon to cancel, and one that drops the
subscription. Iterating yields `Delta`s; it ends after `Finished` (then `finish_reason` and
`info` are set) and raises the mirrored exception after `Failed`. `cancel()` does not end the
iteration itself: the daemon ends it, within one decode step, with finish reason `cancelled`,
so no text is lost and the counts in `info` stay right.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, Optional

from ._common import Completion, Delta, Event, StreamState
from .errors import InferdError


class Stream:
    """A streamed generation (sync). Use it as an iterator of `Delta`s, and as a context
    manager: leaving the block before the end cancels the generation."""

    def __init__(
        self,
        next_event: Callable[[], Event],
        cancel: Callable[[], None],
        release: Callable[[], None],
    ) -> None:
        self._next_event, self._cancel, self._release = next_event, cancel, release
        self._state = StreamState()
        self._released = False

    @property
    def done(self) -> bool:
        return self._state.done

    @property
    def finish_reason(self) -> Optional[str]:
        """`stop`, `length`, `cancelled` or `timeout` once finished, `failed` after an error."""
        return self._state.finish_reason

    @property
    def info(self) -> Dict[str, Any]:
        return self._state.info

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Delta:
        while not self._state.done:
            try:
                delta = self._state.take(self._next_event())
            except BaseException:
                self._finish()
                raise
            if delta is not None:
                return delta
        self._finish()
        raise StopIteration

    def cancel(self) -> None:
        """Asks the daemon to stop; keep iterating to see the last pieces and `cancelled`."""
        if not self._state.done:
            self._cancel()

    def collect(self) -> Completion:
        """Reads the rest of the stream and returns it whole."""
        for _ in self:
            pass
        return self._state.completion()

    def text(self) -> str:
        """Reads the rest of the stream; the content text (every piece, from the start)."""
        return self.collect().text

    def close(self) -> None:
        """Cancels an unfinished generation (best effort: the pool cannot, a bus that went
        away need not) and drops the subscription; iteration ends."""
        if not self._state.done:
            self._state.abandon()
            try:
                self._cancel()
            except InferdError:
                pass
        self._finish()

    def _finish(self) -> None:
        if not self._released:
            self._released = True
            self._release()

    def __del__(self) -> None:
        # A stream dropped unread would keep its subscription, and its queue would keep filling.
        if not getattr(self, "_released", True):
            try:
                self._finish()
            except Exception:  # the client may be closed already (interpreter exit)
                pass

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncStream:
    """A streamed generation (asyncio): `async for delta in stream`, `await stream.cancel()`,
    `async with` (leaving early cancels)."""

    def __init__(
        self,
        next_event: Callable[[], Awaitable[Event]],
        cancel: Callable[[], Awaitable[None]],
        release: Callable[[], None],
    ) -> None:
        self._next_event, self._cancel, self._release = next_event, cancel, release
        self._state = StreamState()
        self._released = False

    done = Stream.done
    finish_reason = Stream.finish_reason
    info = Stream.info
    _finish = Stream._finish
    __del__ = Stream.__del__

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> Delta:
        while not self._state.done:
            try:
                delta = self._state.take(await self._next_event())
            except BaseException:
                self._finish()
                raise
            if delta is not None:
                return delta
        self._finish()
        raise StopAsyncIteration

    async def cancel(self) -> None:
        if not self._state.done:
            await self._cancel()

    async def collect(self) -> Completion:
        async for _ in self:
            pass
        return self._state.completion()

    async def text(self) -> str:
        return (await self.collect()).text

    async def aclose(self) -> None:
        if not self._state.done:
            self._state.abandon()
            try:
                await self._cancel()
            except InferdError:
                pass
        self._finish()

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
