"""Reads tensors from .safetensors files one at a time through mmap. Handles BF16, which the
`safetensors` numpy API cannot, because distilled checkpoints (DeepSeek-R1-Distill-Qwen) ship in it."""
import json
import mmap
import struct
from pathlib import Path

import numpy as np

from ..errors import ImportFailed

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


class SafetensorsFile:
    def __init__(self, path):
        self.path = Path(path)
        try:
            self._f = open(self.path, "rb")
            size = self.path.stat().st_size
            (n,) = struct.unpack("<Q", self._f.read(8))
            if n > size - 8:
                raise ValueError(f"header length {n} exceeds the file size {size}")
            header = json.loads(self._f.read(n))
            self._mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError, struct.error) as e:
            raise ImportFailed(f"cannot read {self.path} as safetensors: {e}") from None
        self.base = 8 + n
        header.pop("__metadata__", None)
        self.entries = header
        for name, e in header.items():
            start, end = e["data_offsets"]
            if self.base + end > size:
                raise ImportFailed(f"{self.path} is truncated: tensor {name} ends past the end of the file")

    def names(self):
        return self.entries.keys()

    def get(self, name):
        e = self.entries[name]
        dt = DTYPES.get(e["dtype"])
        if dt is None:
            raise ImportFailed(f"{self.path}: tensor {name} has dtype {e['dtype']}; supported: {', '.join(DTYPES)}")
        start, end = e["data_offsets"]
        raw = np.frombuffer(self._mm, dtype=dt, count=(end - start) // np.dtype(dt).itemsize, offset=self.base + start)
        if e["dtype"] == "BF16":
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.astype(np.float32)
        return arr.reshape(e["shape"])
