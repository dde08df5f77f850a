"""Produce the next items of an iterator in a background thread while the caller works on the current one.

The scorer uses it to take host work off the GPU's critical path: encoding shards with the template (Python +
tokenizer) while the model loads and while the previous shard is scored, and collating/pinning the next batch
while the current one runs. GPU work releases the GIL while the host waits for it, so the two overlap. On a
CPU-only machine they would compete for the same cores, so callers enable it on CUDA only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class prefetch(Generic[T]):  # noqa: N801 (used like a function: ``for x in prefetch(items): ...``)
    """Iterate over ``items`` in order; when ``enabled``, a daemon thread starts producing them at once and
    stays up to ``depth`` items ahead.

    An exception raised while producing an item is re-raised in the caller at that item's turn. ``close()``
    (or leaving a ``with`` block, or exhausting the items) stops the producer at its next item.
    """

    def __init__(self, items: Iterable[T], enabled: bool = True, depth: int = 1):
        self._items = iter(items)
        self._thread = None
        if not enabled:
            return
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()

    def _put(self, x) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for x in self._items:
                if not self._put((x, None)):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put((_DONE, err))
            return
        self._put((_DONE, None))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._thread is None:
            return next(self._items)
        if self._stop.is_set():
            raise StopIteration
        x, err = self._queue.get()
        if x is _DONE:
            self.close()
            if err is not None:
                raise err
            raise StopIteration
        return x

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)

    def __enter__(self) -> prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if self._thread is not None:
            self._stop.set()
