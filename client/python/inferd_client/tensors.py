"""Tensors as inferd moves them: `(dtype, shape, little-endian element bytes)`.

That is the D-Bus `(satay)` struct, and MQTT's `{"dtype", "shape", "data_b64"}`. numpy is
optional: with it, `infer` takes and returns `numpy.ndarray`s; without it, `Tensor`s, which
carry the raw bytes and unpack them with `struct`.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import InvalidInput

try:  # optional: the `numpy` extra
    import numpy
except ImportError:  # pragma: no cover - exercised where numpy is absent
    numpy = None

#: Wire dtype -> (struct format of one little-endian element, numpy dtype string).
DTYPES: Dict[str, Tuple[str, str]] = {
    "float32": ("<f", "<f4"),
    "float16": ("<e", "<f2"),
    "int64": ("<q", "<i8"),
    "int32": ("<i", "<i4"),
    "uint8": ("<B", "u1"),
    "bool": ("<?", "?"),
}


def has_numpy() -> bool:
    return numpy is not None


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


class Tensor:
    """One tensor without numpy: `dtype` (a wire name), `shape` (ints), `data` (raw bytes)."""

    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype: str, shape: Sequence[int], data: bytes):
        if dtype not in DTYPES:
            raise InvalidInput(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        self.dtype, self.shape, self.data = dtype, tuple(int(d) for d in shape), bytes(data)
        size = struct.calcsize(DTYPES[dtype][0])
        if len(self.data) != _count(self.shape) * size:
            raise InvalidInput(
                f"shape {list(self.shape)} of {dtype} needs {_count(self.shape) * size} bytes, "
                f"{len(self.data)} given"
            )

    @classmethod
    def from_values(cls, dtype: str, shape: Sequence[int], values: Sequence[Any]) -> "Tensor":
        """Packs a flat list of values (row-major), as MQTT's `"data"` lists carry them."""
        if dtype not in DTYPES:
            raise InvalidInput(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        fmt = "<%d%s" % (len(values), DTYPES[dtype][0][1])
        return cls(dtype, shape, struct.pack(fmt, *values))

    def tolist(self) -> List[Any]:
        """The elements, flat and row-major."""
        fmt = DTYPES[self.dtype][0]
        return [v for (v,) in struct.iter_unpack(fmt, self.data)]

    def numpy(self):
        """As a numpy array (needs numpy); a copy, so it is writable."""
        if numpy is None:
            raise ImportError("numpy is not installed (pip install 'inferd-client[numpy]')")
        return numpy.frombuffer(self.data, dtype=DTYPES[self.dtype][1]).reshape(self.shape).copy()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tensor) and (self.dtype, self.shape, self.data) == (
            other.dtype,
            other.shape,
            other.data,
        )

    def __repr__(self) -> str:
        return f"Tensor({self.dtype!r}, {list(self.shape)}, {self.tolist()!r})"


def to_tensor(name: str, value: Any) -> Tensor:
    """A `Tensor` from what a caller passes to `infer`: a Tensor, a numpy array, or a
    `(dtype, shape, bytes)` tuple. A numpy dtype inferd does not carry (float64, int8, ...) is
    refused rather than cast, so no precision or range is lost silently."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, tuple) and len(value) == 3:
        return Tensor(*value)
    if numpy is not None and isinstance(value, numpy.ndarray):
        for wire, (_, np_dtype) in DTYPES.items():
            if value.dtype == numpy.dtype(np_dtype):
                data = numpy.ascontiguousarray(value, dtype=np_dtype).tobytes()
                return Tensor(wire, value.shape, data)
        raise InvalidInput(
            f"input {name!r}: numpy dtype {value.dtype} is not one inferd carries "
            f"({', '.join(DTYPES)}); convert it with .astype(...)"
        )
    raise InvalidInput(
        f"input {name!r}: expected a numpy array, a Tensor or (dtype, shape, bytes), "
        f"got {type(value).__name__}"
    )


def output(t: Tensor, use_numpy: bool):
    """What `infer` returns for one output tensor."""
    return t.numpy() if use_numpy else t


# D-Bus: a{s(satay)}


def to_dbus(inputs: Dict[str, Any]) -> Dict[str, Tuple[str, List[int], bytes]]:
    out = {}
    for name, v in inputs.items():
        t = to_tensor(name, v)
        out[name] = (t.dtype, list(t.shape), t.data)
    return out


def from_dbus(wire: Tuple[str, Sequence[int], bytes]) -> Tensor:
    dtype, shape, data = wire
    return Tensor(dtype, shape, data)


# MQTT: {"dtype", "shape", "data" | "data_b64"}


def to_json(inputs: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Inputs as MQTT JSON; the bytes go as base64, exact for every dtype (a JSON number list
    would round float16 and lose nothing only by luck)."""
    out = {}
    for name, v in inputs.items():
        t = to_tensor(name, v)
        out[name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_b64": base64.b64encode(t.data).decode("ascii"),
        }
    return out


def from_json(v: Dict[str, Any]) -> Tensor:
    if "data_b64" in v:
        return Tensor(v["dtype"], v["shape"], base64.b64decode(v["data_b64"]))
    return Tensor.from_values(v["dtype"], v["shape"], v["data"])


def vectors(rows: List[List[float]], use_numpy: bool):
    """Embeddings: an (n, dim) float32 array with numpy (the model's own precision: the wire's
    doubles are exact float32 values), else the lists as they came."""
    if use_numpy:
        return numpy.asarray(rows, dtype=numpy.float32)
    return [list(r) for r in rows]


def want_numpy(use_numpy: Optional[bool]) -> bool:
    """A client's `use_numpy` setting: None means "when numpy is importable"."""
    if use_numpy and numpy is None:
        raise ImportError("use_numpy=True but numpy is not installed")
    return has_numpy() if use_numpy is None else bool(use_numpy)
