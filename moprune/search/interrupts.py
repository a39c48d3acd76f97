"""Ctrl-C and SIGTERM stop a run only where the storage stays consistent.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Arriving inside a trial's objective it
is recorded as the trial's ``interrupted`` failure; arriving while Optuna asks for a trial (the trial is already
RUNNING in the storage) or tells its result, it would leave the trial RUNNING, or FAIL without a reason (which
reads as a dead worker). ``held_interrupts`` holds a signal that arrives in those windows and raises it as soon as
the objective starts or the trial is stored.

A process stops once: the terminal's Ctrl-C and a parent's forwarded one both arrive, and a second
``KeyboardInterrupt`` would break the bookkeeping of the first, so later signals are ignored (``stop_once`` is the
handler for a whole worker process; ``held_interrupts`` shares its memory of the first signal).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stopping = False  # this process has taken its one interrupt


def stop_once(signum: int, frame: Any) -> None:
    """Signal handler: the first SIGINT/SIGTERM raises ``KeyboardInterrupt``; later ones are ignored."""
    global _stopping
    if not _stopping:
        _stopping = True
        raise KeyboardInterrupt


class Interrupts:
    """While ``held``, a signal waits (``pending``) and is raised by ``raise_pending``; otherwise it raises at once."""

    def __init__(self) -> None:
        self.held = True
        self.pending = False

    def on_signal(self, signum: int, frame: Any) -> None:
        global _stopping
        if not self.held:
            stop_once(signum, frame)
        elif not _stopping:
            _stopping = self.pending = True

    def raise_pending(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextmanager
    def allowed(self) -> Iterator[None]:
        """Inside: a signal raises at once (a pending one, on entry). Outside again: signals are held."""
        self.held = False
        try:
            self.raise_pending()
            yield
        finally:
            self.held = True


@contextmanager
def held_interrupts() -> Iterator[Interrupts]:
    """Hold signals in the block except inside ``allowed()``; on leaving, raise a held one, restore the handlers.

    Only the main thread can take signals: elsewhere the handler is not installed and nothing is ever held.
    """
    global _stopping
    interrupts = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return
    previous = {s: signal.signal(s, interrupts.on_signal) for s in SIGNALS}
    if previous[signal.SIGINT] is not stop_once:
        _stopping = False  # a new run in a long-lived process (a notebook): its Ctrl-C counts again
    try:
        yield interrupts
        interrupts.raise_pending()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
