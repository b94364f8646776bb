"""Typed errors that mirror inferd's D-Bus error names, `org.inferd.Inferd1.Error.<Name>`.

The Rust enum in client/src/error.rs is the source of truth (a test checks that every variant
has a class here). Callers need to tell an overload (retry later) from a bad input (fix the
request), so nothing is flattened: each name gets its own class, and the MQTT transport maps its
snake_case error codes (`model_not_found`, ...) onto the same classes.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Type

#: The D-Bus error prefix; a class's `dbus_name` is this plus its short name.
PREFIX = "org.inferd.Inferd1.Error"


def _snake(name: str) -> str:
    """`ModelNotFound` -> `model_not_found`: D-Bus names to MQTT codes."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class InferdError(Exception):
    """Base of every error this package raises.

    `message` is the daemon's text (it ends with the request id, `(request d4242-17)`);
    `dbus_name` the full D-Bus error name; `code` the MQTT error code.
    """

    short_name = "Internal"

    def __init__(self, message: str = "", *, name: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self._name = name

    @property
    def dbus_name(self) -> str:
        return self._name or f"{PREFIX}.{self.short_name}"

    @property
    def code(self) -> str:
        return _snake(self.short_name)

    def __str__(self) -> str:
        return f"{self.short_name}: {self.message}"


class ModelNotFound(InferdError):
    """No model of that name is in the repository."""

    short_name = "ModelNotFound"


class ModelNotReady(InferdError):
    """The model exists but is loading, failed or unloaded (the message says which)."""

    short_name = "ModelNotReady"


class InvalidInput(InferdError):
    """The request does not fit the model: names, dtypes, shapes, options, lengths."""

    short_name = "InvalidInput"


class TooLarge(InvalidInput):
    """MQTT only (`too_large`): a request or answer over the broker's or daemon's size limit.

    A subclass of InvalidInput, as the Rust client maps it, so `except InvalidInput` catches it.
    """

    short_name = "TooLarge"

    @property
    def dbus_name(self) -> str:
        return self._name or f"{PREFIX}.InvalidInput"


class Overloaded(InferdError):
    """The model's queue is full (or MQTT's `max_in_flight`); retry later."""

    short_name = "Overloaded"


class Timeout(InferdError):
    """The request's deadline (`timeout_ms`, the manifest's, an MQTT expiry) passed."""

    short_name = "Timeout"


class AccessDenied(InferdError):
    """The caller may not do this: a management method, someone else's cancel, an ungranted
    MQTT priority."""

    short_name = "AccessDenied"


class ShuttingDown(InferdError):
    """The daemon is stopping and takes no new requests."""

    short_name = "ShuttingDown"


class Cancelled(InferdError):
    """The request was cancelled (by its caller, or because the caller left)."""

    short_name = "Cancelled"


class Internal(InferdError):
    """A bug or an ONNX Runtime failure inside the daemon."""

    short_name = "Internal"


class TransportError(InferdError):
    """Not an answer from the daemon: the bus or broker failed, no daemon is there, or no answer
    came within the client's timeout (the Rust client's `ZBus` variant). `dbus_name` is the
    bus's own error name when the bus gave one (`org.freedesktop.DBus.Error.ServiceUnknown`:
    no inferd on that bus), else None."""

    short_name = "TransportError"

    @property
    def dbus_name(self) -> Optional[str]:  # type: ignore[override]
        return self._name

    @property
    def code(self) -> str:
        return "transport"


#: Every daemon error class by its short D-Bus name (TransportError is the client's own).
BY_NAME: Dict[str, Type[InferdError]] = {
    c.short_name: c
    for c in (
        ModelNotFound,
        ModelNotReady,
        InvalidInput,
        Overloaded,
        Timeout,
        AccessDenied,
        ShuttingDown,
        Cancelled,
        Internal,
    )
}

#: The same classes by MQTT error code, plus MQTT's own `too_large`.
BY_CODE: Dict[str, Type[InferdError]] = {
    **{_snake(c.short_name): c for c in BY_NAME.values()},
    "too_large": TooLarge,
}


def from_dbus(name: str, message: str) -> InferdError:
    """The typed error for a D-Bus error reply or a `Failed` signal.

    inferd's own names map to their class (an unknown one to Internal, as the Rust client does);
    the bus refusing the call by its policy (`org.freedesktop.DBus.Error.AccessDenied`: the
    caller is not in `inferd-clients`) is AccessDenied too; other names
    (`org.freedesktop.DBus.Error.ServiceUnknown`: no daemon on the bus) are TransportError
    carrying the name.
    """
    if name.startswith(PREFIX + "."):
        cls = BY_NAME.get(name[len(PREFIX) + 1 :], Internal)
        return cls(message, name=name)
    if name == "org.freedesktop.DBus.Error.AccessDenied":
        return AccessDenied(message, name=name)
    return TransportError(f"{name}: {message}", name=name)


def from_mqtt(code: str, message: str) -> InferdError:
    """The typed error for an MQTT error reply's `{"code", "message"}`."""
    return BY_CODE.get(code, Internal)(message)
