"""Worker processes' log messages, relayed to the parent's handlers with the worker's name in front.

A worker of ``moprune run --workers`` is a spawned process with no terminal handler of its own: what it would say
(a warning about its device, why it stopped) travels through a multiprocessing queue and is handled in the parent
as if logged there, by the parent's ``moprune`` loggers.
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ROOT = "moprune"


class _Prefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = f"{self.prefix}{record.getMessage()}", None
        return True


def send_to(queue: Any, worker: int) -> None:
    """In a worker: every ``moprune`` message goes to ``queue`` (and nowhere else), as ``worker N: message``."""
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.handlers.QueueHandler(queue)
    handler.addFilter(_Prefix(f"worker {worker}: "))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class _Relay(logging.Handler):
    """In the parent: hand a worker's record to the logger of the same name, so the parent's handlers format it."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


@contextmanager
def relayed(queue: Any) -> Iterator[None]:
    """While open, records that workers put on ``queue`` are logged in this process."""
    listener = logging.handlers.QueueListener(queue, _Relay())
    listener.start()
    try:
        yield
    finally:
        listener.stop()  # handles what is still queued first
