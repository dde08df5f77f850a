"""A limit on the CPU time of one call, that survives library code's ``except Exception``.

math-verify guards its own parsing and comparisons with ``signal.alarm`` and turns a timeout into "could not
parse" or "not equal" (its ``except Exception`` catches the ``TimeoutError``), so a timeout cannot be told apart
from a wrong answer; and ``signal`` only works in a process's main thread (in a thread every math-verify call
fails silently). :func:`call_with_timeout` therefore uses a second, independent timer (``ITIMER_PROF``: the
process's CPU time; math-verify's alarm counts wall time) and raises :class:`CallTimeout`, a
``BaseException``, which passes through those handlers. Verification runs in the main thread of worker
processes, where both timers work. CPU time rather than wall time also makes the limit independent of how
busy the machine is.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

HAS_TIMER = hasattr(signal, "setitimer") and hasattr(signal, "SIGPROF")


class CallTimeout(BaseException):  # noqa: N818  (a BaseException on purpose, see the module docstring)
    """The call used up its CPU-time budget."""


def _on_timer(signum: int, frame: Any) -> None:
    raise CallTimeout()


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def call_with_timeout(fn: Callable[..., T], *args: Any, seconds: float, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or :class:`CallTimeout` once it has used ``seconds`` of CPU time (0: no limit).

    Code stuck inside one C call (a huge integer power) is interrupted when the call returns to Python.
    """
    if seconds <= 0 or not HAS_TIMER:
        return fn(*args, **kwargs)
    if not in_main_thread():
        raise RuntimeError("call_with_timeout (and math-verify's own timeouts) use signals, which only work in a "
                           "process's main thread: verify in processes, not threads")
    previous = signal.signal(signal.SIGPROF, _on_timer)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
