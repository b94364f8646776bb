"""One progress bar per stage (read, convert, quantize, write) on a terminal; one line per
finished stage otherwise, so logs of non-interactive runs still show where time went."""
import sys
import time

from tqdm import tqdm


class _Lines:
    def __init__(self, desc, total):
        self.desc, self.total, self.n, self.t0 = desc, total, 0, time.time()

    def update(self, n=1):
        self.n += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None and self.total:
            print(f"{self.desc}: {self.n}/{self.total} in {time.time() - self.t0:.1f} s", file=sys.stderr)


def stage(desc, total):
    """A context manager with `update(n)`; `total` 0 means the stage does not apply."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=f"{desc:<9}", unit="tensor", file=sys.stderr, disable=not total, dynamic_ncols=True)
    return _Lines(desc, total)
