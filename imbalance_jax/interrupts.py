"""Ctrl-C during training: the first one asks the run to stop at the next safe point, a second one stops it at once.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives; inside a destructor or
a callback called from C it is printed as "Exception ignored" and lost (the run trains on), and inside an orbax save
it cuts the writer threads off. So while :func:`graceful` is active the first SIGINT only sets a flag, and the
training loop calls :func:`check` between steps and phases (KeyboardInterrupt there). A second SIGINT raises
KeyboardInterrupt immediately, for a run stuck somewhere that never checks (a long compilation, data loading).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

_requested = False


def _handler(signum: int, frame: Any) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True


def check() -> None:
    """Raises KeyboardInterrupt when Ctrl-C was pressed since :func:`graceful` began."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """Installs the two-step SIGINT handler for the block (main thread only; elsewhere a no-op)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = False
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        _requested = False
