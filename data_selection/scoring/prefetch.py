"""Produce the next item of an iterator in a background thread while the caller works on the current one.

The scorer uses it to take host work off the GPU's critical path: encoding the next shard with the template
(Python + tokenizer) while the current shard is scored, and collating/pinning the next batch while the current
one runs. The GPU work releases the GIL while the host waits for it, so the two overlap. On a CPU-only machine
the two would compete for the same cores; callers enable it on CUDA only (see ``bench/score_mfu.py``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], enabled: bool = True, depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order, computing up to ``depth`` ahead in a daemon thread when ``enabled``.

    An exception raised while producing an item is re-raised in the caller at that item's turn; a caller that
    stops early (break, exception) stops the producer at its next item.
    """
    if not enabled:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put((x, None)):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            put((_DONE, err))
            return
        put((_DONE, None))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            x, err = q.get()
            if x is _DONE:
                if err is not None:
                    raise err
                return
            yield x
    finally:
        stop.set()
        worker.join(timeout=5)
