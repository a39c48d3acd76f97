"""Worker processes' log messages, relayed to the parent's handlers with the worker's name in front.

A worker of ``moprune run --workers`` is a spawned process with no terminal handler of its own: what it would say
(a warning about its device, why it stopped) travels to the parent and is handled there as if logged there, by the
parent's ``moprune`` loggers.

Each worker has a pipe of its own rather than one shared ``multiprocessing.Queue``: a queue's writers share a lock,
and a worker killed (SIGKILL, the OOM killer) while its feeder thread holds it leaves that lock taken for good, so
every other worker's messages stop and each of them hangs at exit flushing its queue; the parent then waits for
them forever. A pipe has one writer: a killed worker only ends its own pipe (the parent reads end-of-file).
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Any

ROOT = "moprune"
DRAIN_S = 5.0  # after the workers end, how long the parent keeps reading what they sent last


class _Prefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = f"{self.prefix}{record.getMessage()}", None
        return True


class _PipeHandler(logging.handlers.QueueHandler):
    """Sends each record, formatted and stripped of what cannot be pickled (``QueueHandler.prepare``), down a pipe.

    ``Handler.handle`` holds the handler's lock around ``emit``, so threads of one worker never interleave a message.
    """

    def __init__(self, conn: Connection):
        super().__init__(None)  # type: ignore[arg-type]  # no queue: ``enqueue`` writes to the pipe
        self.conn = conn

    def enqueue(self, record: logging.LogRecord) -> None:
        self.conn.send(record)


def send_to(conn: Connection, worker: int) -> None:
    """In a worker: every ``moprune`` message goes down ``conn`` (and nowhere else), as ``worker N: message``."""
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _PipeHandler(conn)
    handler.addFilter(_Prefix(f"worker {worker}: "))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _relay(record: logging.LogRecord) -> None:
    """Hand a worker's record to the logger of the same name, so the parent's handlers format it."""
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def _pump(readers: Sequence[Connection], stopping: threading.Event) -> None:
    live = list(readers)
    deadline: float | None = None
    while live:
        if stopping.is_set() and deadline is None:
            deadline = time.monotonic() + DRAIN_S
        if deadline is not None and time.monotonic() >= deadline:
            break
        for conn in wait(live, timeout=0.2):
            try:
                record = conn.recv()  # type: ignore[union-attr]
            except Exception:  # end of file: the worker ended (or was killed mid-message); its pipe is done
                live.remove(conn)  # type: ignore[arg-type]
                continue
            _relay(record)
    for conn in readers:
        conn.close()


@contextmanager
def relayed(readers: Sequence[Connection]) -> Iterator[None]:
    """While open, records that workers send down their pipes are logged in this process.

    On leaving, the parent reads on until every worker's pipe has ended (the workers have exited) or ``DRAIN_S``
    have passed, so a worker's last words (why it stopped) are shown, and a worker that never exits cannot hold
    the parent here.
    """
    stopping = threading.Event()
    thread = threading.Thread(target=_pump, args=(readers, stopping), name="moprune-worker-logs", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join()


def pipes(context: Any, n: int) -> list[tuple[Connection, Connection]]:
    """``n`` one-way pipes ``(reader, writer)`` from a multiprocessing context: one per worker."""
    return [context.Pipe(duplex=False) for _ in range(n)]

