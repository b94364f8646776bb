"""A Python client of inferd, the on-device ONNX inference daemon.

Four clients with the same methods (models, health, embed, classify, complete, chat_complete,
generate, chat, infer), over two transports:

- `Client` (blocking) and `AsyncClient` (asyncio): D-Bus, through jeepney (pure Python).
- `MqttClient` (blocking) and `AsyncMqttClient` (asyncio): MQTT 5, through paho-mqtt v2.

Errors are typed, mirroring the D-Bus names `org.inferd.Inferd1.Error.<Name>`: `ModelNotFound`,
`InvalidInput`, `Overloaded`, ... all subclasses of `InferdError`. See docs/python.md.
"""

from ._common import Completion, Delta
from .dbus import Client
from .dbus_aio import AsyncClient
from .errors import (
    AccessDenied,
    Cancelled,
    InferdError,
    Internal,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    ShuttingDown,
    Timeout,
    TooLarge,
    TransportError,
)
from .mqtt import MqttClient
from .mqtt_aio import AsyncMqttClient
from .streams import AsyncStream, Stream
from .tensors import Tensor

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AsyncClient",
    "AsyncMqttClient",
    "AsyncStream",
    "Cancelled",
    "Client",
    "Completion",
    "Delta",
    "InferdError",
    "Internal",
    "InvalidInput",
    "ModelNotFound",
    "ModelNotReady",
    "MqttClient",
    "Overloaded",
    "ShuttingDown",
    "Stream",
    "Tensor",
    "Timeout",
    "TooLarge",
    "TransportError",
]
